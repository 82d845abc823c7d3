// Bundled by bench/workers-tiers.ts: a Worker that reads one key from one read tier per
// request, so that a request's time is a hit's in that tier. The bindings are wrapped at the
// distance the request names (test/adapter/cloudflare/distance.ts): the Durable Object tier `tier` ms
// away, KV `kv` ms away; the Cache API is the data centre's own and is not wrapped, nor is
// isolate memory.

import { cacheTierObject } from "../src/adapter/cloudflare/cache-tier-object.ts";
import type { CacheEntry } from "../src/core/entries/entry.ts";
import type { Store } from "../src/core/store.ts";
import { cacheApiStore } from "../src/stores/cache-api.ts";
import { durableObjectStore, type TierNamespaceLike } from "../src/stores/durable-object.ts";
import { type KvNamespaceLike, kvStore } from "../src/stores/kv.ts";
import { memoryStore } from "../src/stores/memory.ts";
import { atDistance, calls } from "../test/adapter/cloudflare/distance.ts";

export const CacheTierObject = cacheTierObject();

interface Env {
  CACHE: KvNamespaceLike;
  CACHE_TIER: TierNamespaceLike;
}

export const TIERS = ["memory", "cache-api", "kv", "durable-object"] as const;
type Tier = (typeof TIERS)[number];

const memory = memoryStore();

function storeOf(tier: Tier, env: Env): Store {
  switch (tier) {
    case "memory":
      return memory;
    case "cache-api":
      return cacheApiStore({ cacheName: "edgecache-bench" });
    case "kv":
      return kvStore({ namespace: env.CACHE });
    case "durable-object":
      return durableObjectStore({ namespace: env.CACHE_TIER });
  }
}

function entryOf(bytes: number): CacheEntry {
  const now = Date.now();
  return {
    body: new TextEncoder().encode(JSON.stringify({ pad: "x".repeat(Math.max(0, bytes - 10)) })),
    headers: { "content-type": "application/json" },
    status: 200,
    createdAt: now,
    freshUntil: now + 3_600_000,
    staleUntil: now + 3_600_000,
    etag: '"bench"',
    tags: ["bench#1"],
  };
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const tier = url.searchParams.get("tier") as Tier;
    if (!TIERS.includes(tier)) return new Response(`no tier ${tier}`, { status: 400 });
    if (url.pathname === "/fill") {
      const keys = Number(url.searchParams.get("keys"));
      const entry = entryOf(Number(url.searchParams.get("bytes")));
      const store = storeOf(tier, env);
      for (let i = 0; i < keys; i++) await store.set(`k${i}`, entry, 3_600_000);
      return Response.json({ ok: true });
    }
    if (url.pathname === "/read") {
      const rtt = Number(url.searchParams.get("rtt"));
      const kv = Number(url.searchParams.get("kv"));
      const far = atDistance(env, {
        object: rtt,
        tier: rtt,
        kv,
        primary: 0,
        replica: 0,
        follower: 0,
      });
      const before = { tier: calls.tier, kv: calls.kv };
      const started = performance.now();
      const entry = await storeOf(tier, far).get(url.searchParams.get("key") ?? "");
      const ms = performance.now() - started;
      return Response.json({
        hit: entry !== undefined,
        ms,
        calls: calls.tier - before.tier + calls.kv - before.kv,
      });
    }
    return new Response("no such path", { status: 404 });
  },
};
