// Bundled by test/stores/in-workerd.test.ts and run inside workerd: the KV, Cache
// API and Durable Object stores run here, against Miniflare's local KV, Cache API and
// Durable Objects, and each store call of the conformance suite (in Node) arrives as one
// request.
import { decodeEntry, encodeEntry } from "../../src/core/entries/entry.ts";
import { type BatchStore, isBatch, type ListableStore, type Store } from "../../src/core/store.ts";
import { cacheApiStore } from "../../src/stores/cache-api.ts";
import { durableObjectStore, type TierNamespaceLike } from "../../src/stores/durable-object.ts";
import { decodeFrames, encodeFrames } from "../../src/stores/frames.ts";
import type { KvNamespaceLike } from "../../src/stores/kv.ts";
import { kvStore } from "../../src/stores/kv.ts";

export { CacheTierObject } from "../../src/adapter/cloudflare/cache-tier-object.ts";

type Env = { KV: KvNamespaceLike; TIER: TierNamespaceLike };

/** The Durable Object tier's shards in the suite: keys spread over several objects. */
const SHARDS = 3;

/** The store `kind` for test `id` on the clock the suite sent (`now`). */
function storeFor(kind: string, id: string, now: number, env: Env): Store {
  const clock = () => now;
  if (kind === "kv") return kvStore({ namespace: env.KV, prefix: `t${id}:`, now: clock });
  if (kind === "cache") return cacheApiStore({ cacheName: `t${id}`, now: clock });
  if (kind === "do") {
    return durableObjectStore({
      namespace: env.TIER,
      shards: SHARDS,
      prefix: `t${id}:`,
      now: clock,
    });
  }
  throw new Error(`no store ${kind}`);
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const [, kind = "", op = ""] = url.pathname.split("/");
    const param = (name: string) => url.searchParams.get(name) ?? "";
    const store = storeFor(kind, param("id"), Number(param("now")), env);
    try {
      if (op === "get") {
        const entry = await store.get(param("key"));
        return entry === undefined
          ? new Response(null, { status: 404 })
          : new Response(encodeEntry(entry));
      }
      if (op === "set") {
        const entry = decodeEntry(new Uint8Array(await request.arrayBuffer()));
        await store.set(param("key"), entry, Number(param("ttl")));
        return new Response(null, { status: 204 });
      }
      if (op === "delete") {
        return Response.json(await store.delete((await request.json()) as string[]));
      }
      // Batches as frames: keys in; entries out, an empty frame where there is none (the
      // store's undefined: anything else, null included, fails the call here, where the
      // frames would hide it).
      if (op === "getMany" && isBatch(store)) {
        const keys = decodeFrames(new Uint8Array(await request.arrayBuffer())).map((k) =>
          new TextDecoder().decode(k),
        );
        const found = await store.getMany(keys);
        const odd = found.findIndex(
          (e) => e === null || (e !== undefined && typeof e !== "object"),
        );
        if (odd >= 0) throw new Error(`getMany answered ${String(found[odd])} for ${keys[odd]}`);
        return new Response(
          encodeFrames(found.map((e) => (e ? encodeEntry(e) : new Uint8Array()))),
        );
      }
      if (op === "setMany" && isBatch(store)) {
        const frames = decodeFrames(new Uint8Array(await request.arrayBuffer()));
        const writes: Parameters<BatchStore["setMany"]>[0][number][] = [];
        for (let i = 0; i < frames.length; i += 3) {
          writes.push({
            key: new TextDecoder().decode(frames[i]),
            ttlMs: Number(new TextDecoder().decode(frames[i + 1])),
            entry: decodeEntry(frames[i + 2]!),
          });
        }
        await store.setMany(writes);
        return new Response(null, { status: 204 });
      }
      if (op === "keys") {
        const keys: string[] = [];
        for await (const key of (store as ListableStore).keys(param("prefix"))) keys.push(key);
        return Response.json(keys);
      }
      return new Response(`no op ${op}`, { status: 400 });
    } catch (error) {
      const { code, message } = error as { code?: string; message: string };
      return Response.json({ code, message }, { status: 500 });
    }
  },
};
