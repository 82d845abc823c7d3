import { expect, it } from "vitest";
import { Cache } from "../../src/core/cache/index.ts";
import type { Cost } from "../../src/core/cost.ts";
import type { CacheEntry } from "../../src/core/entries/entry.ts";
import { toPrometheus } from "../../src/core/stats.ts";
import type { Store } from "../../src/core/store.ts";
import { memoryStore } from "../../src/stores/memory.ts";

/** A shared tier that counts one command per call, as a store on a shared server would. */
function countingShared(): Store {
  const inner = memoryStore();
  return {
    name: "counting",
    shared: true,
    get: (key: string, cost?: Cost) => {
      cost?.add(1);
      return inner.get(key);
    },
    set: (key: string, entry: CacheEntry, ttl: number, cost?: Cost) => {
      cost?.add(1);
      return inner.set(key, entry, ttl);
    },
    delete: (keys: readonly string[], cost?: Cost) => {
      cost?.add(1);
      return inner.delete(keys);
    },
  };
}

it("each read counts what it sent by what it turned out to be, a memory hit nothing, and Prometheus shows it by kind", async () => {
  const cache = new Cache({ tiers: [memoryStore(), countingShared()] });
  const load = async () => ({ body: "x" });
  await cache.resolve("a", load); // a miss: the shared tier's get, and the copy's set
  await cache.drain();
  await cache.resolve("a", load); // a hit from memory
  await cache.invalidate({ keys: ["a"] }); // a write (its shared delete is background)
  await cache.drain();
  const { redis } = cache.stats();
  expect(redis.requests).toEqual({ hit: 1, miss: 1, write: 1 });
  expect(redis.commands).toMatchObject({ hit: 0, miss: 2, write: 0, following: 0 });
  expect(redis.commands.background).toBe(1);
  const text = toPrometheus(cache.stats());
  expect(text).toContain('edgecache_redis_commands_total{kind="miss"} 2');
  expect(text).toContain('edgecache_redis_trips_total{kind="hit"} 0');
  expect(text).toContain('edgecache_redis_requests_total{kind="write"} 1');
  await cache.close();
});
