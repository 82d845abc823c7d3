import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CacheEntry } from "../../src/core/entries/entry.ts";
import { decodeEntry, encodeEntry } from "../../src/core/entries/entry.ts";
import type { BatchStore, ListableStore, Store } from "../../src/core/store.ts";
import { DURABLE_OBJECT_MAX_VALUE_BYTES } from "../../src/stores/durable-object.ts";
import { decodeFrames, encodeFrames } from "../../src/stores/frames.ts";
import { KV_MAX_KEY_BYTES, KV_MAX_VALUE_BYTES, KV_MIN_TTL_SECONDS } from "../../src/stores/kv.ts";
import { type ConformanceClock, storeConformance } from "../../src/testing/index.ts";
import { startWorker } from "../helpers/workerd.ts";

let mf: Miniflare;

beforeAll(async () => {
  mf = await startWorker(new URL("./workerd-entry.ts", import.meta.url), {
    kvNamespaces: ["KV"],
    durableObjects: { TIER: { className: "CacheTierObject", useSQLite: true } },
  });
}, 60_000);

afterAll(async () => {
  await mf?.dispose();
});

let made = 0;

/**
 * A store whose every call runs inside workerd (see workerd-entry.ts): the real KV or
 * Cache API store over Miniflare's local bindings, on the suite's clock. Each make is a
 * fresh key prefix (KV) or cache name (Cache API), so tests do not see each other's keys.
 */
function remoteStore(kind: "kv" | "cache" | "do", clock: ConformanceClock): Store {
  const id = String(++made);
  async function call(op: string, params: Record<string, string>, body?: string | Uint8Array) {
    const query = new URLSearchParams({ id, now: String(clock.now()), ...params });
    const res = await mf.dispatchFetch(`http://store/${kind}/${op}?${query}`, {
      method: "POST",
      ...(body === undefined ? {} : { body }),
    });
    if (res.status === 500) {
      const { code, message } = (await res.json()) as { code: string; message: string };
      throw Object.assign(new Error(message), { code });
    }
    return res;
  }
  const store: Store = {
    name: kind,
    async get(key) {
      const res = await call("get", { key });
      if (res.status === 404) return undefined;
      return decodeEntry(new Uint8Array(await res.arrayBuffer()));
    },
    async set(key, entry, ttlMs) {
      await call("set", { key, ttl: String(ttlMs) }, encodeEntry(entry));
    },
    async delete(keys) {
      return (await (await call("delete", {}, JSON.stringify(keys))).json()) as number;
    },
  };
  if (kind === "cache") return store;
  const listable: ListableStore = {
    ...store,
    async *keys(prefix) {
      yield* (await (await call("keys", { prefix })).json()) as string[];
    },
  };
  if (kind === "kv") return listable;
  const batch: ListableStore & BatchStore = {
    ...listable,
    async getMany(keys) {
      const res = await call("getMany", {}, encodeFrames(keys));
      return decodeFrames(new Uint8Array(await res.arrayBuffer())).map((bytes) =>
        bytes.byteLength === 0 ? undefined : decodeEntry(bytes),
      );
    },
    async setMany(writes) {
      const frames = writes.flatMap((w) => [w.key, String(w.ttlMs), encodeEntry(w.entry)]);
      await call("setMany", {}, encodeFrames(frames));
    },
  };
  return batch;
}

// Relaxations: the Cache API cannot be listed and neither store can tell its size, so the
// listing and size tests do not apply to the Cache API store and size to neither. Expiry
// is exact on the suite's fake clock for both (each value records when it expires; KV's
// own 60 s minimum only collects it later).
storeConformance("kv (in workerd)", (clock) => remoteStore("kv", clock));
storeConformance("cache-api (in workerd)", (clock) => remoteStore("cache", clock));
// The Durable Object tier over three shards: listing and batches span the objects.
storeConformance("durable-object (in workerd)", (clock) => remoteStore("do", clock));

function entry(body: Uint8Array): CacheEntry {
  return {
    body,
    headers: {},
    status: 200,
    createdAt: 0,
    freshUntil: 0,
    staleUntil: 0,
    etag: '"x"',
    tags: [],
  };
}

describe("KV store platform limits (in workerd)", () => {
  const clock = { now: () => Date.now(), advance() {} };

  it("a key longer than KV's 512 bytes is stored under a digest, read, listed and deleted by its own name", async () => {
    const store = remoteStore("kv", clock) as ListableStore;
    const long = `long/${"é".repeat(KV_MAX_KEY_BYTES)}`;
    const sibling = `${long.slice(0, -1)}x`;
    await store.set(long, entry(new Uint8Array([1])), 60_000);
    await store.set(sibling, entry(new Uint8Array([2])), 60_000);
    expect((await store.get(long))?.body).toEqual(new Uint8Array([1]));
    expect((await store.get(sibling))?.body).toEqual(new Uint8Array([2]));
    const listed: string[] = [];
    for await (const key of store.keys("long/")) listed.push(key);
    expect(listed.sort()).toEqual([long, sibling].sort());
    expect(await store.delete([long])).toBe(1);
    expect(await store.get(long)).toBeUndefined();
    expect((await store.get(sibling))?.body).toEqual(new Uint8Array([2]));
  });

  it("a ttl below KV's 60 s minimum is stored (KV keeps it 60 s) yet expires on time", async () => {
    expect(KV_MIN_TTL_SECONDS).toBe(60);
    const store = remoteStore("kv", clock);
    await store.set("short", entry(new Uint8Array([1])), 150);
    expect(await store.get("short")).toBeDefined();
    await new Promise((r) => setTimeout(r, 250));
    expect(await store.get("short")).toBeUndefined();
  });

  it("an entry over KV's 25 MiB value limit is refused as unavailable and the old one removed", async () => {
    const store = remoteStore("kv", clock);
    await store.set("big", entry(new Uint8Array([1])), 60_000);
    await expect(
      store.set("big", entry(new Uint8Array(KV_MAX_VALUE_BYTES)), 60_000),
    ).rejects.toMatchObject({ code: "E_STORE_UNAVAILABLE" });
    expect(await store.get("big")).toBeUndefined();
  }, 30_000);
});

describe("Durable Object store platform limits (in workerd)", () => {
  const clock = { now: () => Date.now(), advance() {} };

  it("an entry over a Durable Object row's 2 MB is refused as unavailable and the old one removed", async () => {
    const store = remoteStore("do", clock);
    await store.set("big", entry(new Uint8Array([1])), 60_000);
    await expect(
      store.set("big", entry(new Uint8Array(DURABLE_OBJECT_MAX_VALUE_BYTES)), 60_000),
    ).rejects.toMatchObject({ code: "E_STORE_UNAVAILABLE" });
    expect(await store.get("big")).toBeUndefined();
  });
});
