import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundle, COMPATIBILITY_DATE } from "../helpers/workerd.ts";

/**
 * Four Workers, so four isolates, each with its own memory tier: a writer and a reader
 * per mode, following one Durable Object log per mode (the object's name is the mode).
 */
let mf: Miniflare;
const LEASE_MS = 1000;

beforeAll(async () => {
  const script = await bundle(new URL("./durable-isolates-entry.ts", import.meta.url));
  const worker = (name: string, mode: string, kv = false) => ({
    name,
    modules: true,
    script,
    compatibilityDate: COMPATIBILITY_DATE,
    bindings: { MODE: mode, LEASE_MS: String(LEASE_MS), ...(kv ? { LOG_NAME: "kv" } : {}) },
    ...(kv ? { kvNamespaces: { CACHE: "shared-kv" } } : {}),
    durableObjects: { LOG: { className: "ChangeLogObject", scriptName: "strict-a" } },
  });
  mf = new Miniflare({
    workers: [
      worker("strict-a", "strict"),
      worker("strict-b", "strict"),
      worker("lease-a", "lease"),
      worker("lease-b", "lease"),
      worker("kv-a", "strict", true),
      worker("kv-b", "strict", true),
      worker("kv-c", "strict", true),
    ],
  });
  await mf.ready;
}, 60_000);

afterAll(async () => {
  await mf?.dispose();
});

async function call<T>(worker: string, path: string): Promise<T> {
  const fetcher = (await mf.getWorker(worker)) as unknown as { fetch: typeof fetch };
  const res = await fetcher.fetch(`http://x${path}`);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as T;
}

interface Read {
  value: { id: string; name: string };
  loaded: boolean;
  trusted: boolean;
}

describe("the Durable Object change log, strict mode", () => {
  it("a write through one isolate is never read stale through another, and waits for no one", async () => {
    const first = await call<Read>("strict-b", "/read?id=1&name=Ann");
    expect(first).toMatchObject({ value: { name: "Ann" }, loaded: true });
    expect(await call<Read>("strict-b", "/read?id=1&name=ignored")).toMatchObject({
      value: { name: "Ann" },
      loaded: false,
    });
    const write = await call<{ ms: number }>("strict-a", "/write?id=1&old=Ann&name=Bea");
    // strict-b holds no lease: the object acknowledges at once.
    expect(write.ms).toBeLessThan(LEASE_MS / 2);
    expect(await call<Read>("strict-b", "/read?id=1&name=Bea")).toMatchObject({
      value: { name: "Bea" },
      loaded: true,
    });
  });

  it("concurrent writes through two isolates get distinct, gap-free sequence numbers in one order", async () => {
    const before = await call<{ seq: number; log: string }>("strict-a", "/position");
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        call(`strict-${i % 2 ? "a" : "b"}`, `/write?id=w${i}&old=x&name=y`),
      ),
    );
    const a = await call<{ seq: number; log: string }>("strict-a", "/position");
    const b = await call<{ seq: number; log: string }>("strict-b", "/position");
    expect(a).toEqual(b);
    expect(a.log).toBe(before.log);
    expect(a.seq).toBe(before.seq + 20);
  });
});

describe("the Durable Object change log, lease mode", () => {
  it("an idle isolate's lease holds a write back until it runs out; then that isolate reads the new row", async () => {
    await call<Read>("lease-b", "/read?id=1&name=Ann");
    const cached = await call<Read>("lease-b", "/read?id=1&name=ignored");
    expect(cached).toMatchObject({ value: { name: "Ann" }, loaded: false, trusted: true });
    const write = await call<{ ms: number }>("lease-a", "/write?id=1&old=Ann&name=Bea");
    // lease-b neither synced nor left: the object waited for its lease to end.
    expect(write.ms).toBeGreaterThanOrEqual(LEASE_MS / 2);
    expect(write.ms).toBeLessThan(LEASE_MS * 3);
    expect(await call<Read>("lease-b", "/read?id=1&name=Bea")).toMatchObject({
      value: { name: "Bea" },
      loaded: true,
    });
  });

  it("a write is not acknowledged before a reader that is still trusted could see it", async () => {
    await call<Read>("lease-b", "/read?id=2&name=Ann");
    const writing = call<{ ms: number }>("lease-a", "/write?id=2&old=Ann&name=Bea");
    let acknowledged = false;
    void writing.then(() => {
      acknowledged = true;
    });
    // While the write waits, every read lease-b serves is either the old row from a lease
    // taken before the write, or the new one; once acknowledged, only the new one.
    for (let i = 0; i < 40 && !acknowledged; i++) {
      const read = await call<Read>("lease-b", "/read?id=2&name=Bea");
      expect(["Ann", "Bea"]).toContain(read.value.name);
      await new Promise((r) => setTimeout(r, 25));
    }
    await writing;
    expect((await call<Read>("lease-b", "/read?id=2&name=Bea")).value.name).toBe("Bea");
  });
});

describe("KV behind the Durable Object log", () => {
  it("an entry another isolate left in KV before a write is not served after it", async () => {
    // kv-b loads the row and stores it in its memory and in KV.
    expect(await call<Read>("kv-b", "/read?id=3&name=Ann")).toMatchObject({ loaded: true });
    // kv-a writes; kv-a never cached the key, so nobody deletes it from KV yet (kv-b
    // would on its next request).
    await call("kv-a", "/write?id=3&old=Ann&name=Bea");
    // kv-c has nothing in memory: KV still holds Ann, older than the write it synced.
    expect(await call<Read>("kv-c", "/read?id=3&name=Bea")).toMatchObject({
      value: { name: "Bea" },
      loaded: true,
    });
  });

  it("an entry in KV from before no write is served to another isolate without a load", async () => {
    expect(await call<Read>("kv-b", "/read?id=4&name=Cy")).toMatchObject({ loaded: true });
    expect(await call<Read>("kv-c", "/read?id=4&name=ignored")).toMatchObject({
      value: { name: "Cy" },
      loaded: false,
    });
  });
});
