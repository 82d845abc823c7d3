import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ListableStore } from "../../src/core/store.ts";
import { type Harness, send, startEdgecache } from "./harness.ts";

// A flood of distinct junk URLs on the data API costs hit rate, never memory beyond the
// configured bounds: the dependency index has a budget of heap of its own (its per-key cost
// is some 2 KB for a list), not only the tiers' entry counts, and what it drops leaves the
// local tiers with it (an entry a local tier holds is always registered, so writes find it).

const N = 15_000;
const INDEX_BYTES = 2_000_000;
const bounds = {
  memory: { maxEntries: 300 },
  // Far more than the index's budget holds: the budget, not the file, must bound the index.
  disk: { maxEntries: 50_000 },
  notFound: { maxEntries: 100 },
  index: { maxBytes: INDEX_BYTES },
};

let h: Harness;
beforeAll(async () => {
  h = await startEdgecache({ ...bounds, demo: { users: 100, orders: 300 }, rehydrate: false });
});
afterAll(() => h.close());

/** One of three kinds of junk: a made-up id (404), a list by a distinct name, by a distinct user. */
const junk = (i: number) =>
  i % 3 === 0
    ? `/v1/users/nope-${i}`
    : i % 3 === 1
      ? `/v1/users?firstName=junk${i}&limit=5`
      : `/v1/orders?userId=${1000 + i}&limit=3`;

describe(`a flood of ${N} distinct junk URLs`, () => {
  it("leaves the index within its byte budget, every local tier's entry registered, and writes still invalidate", async () => {
    const { cache } = h.edgecache;
    const user = h.fresh("SELECT id FROM users ORDER BY id LIMIT 1")[0]!.id;
    const watched = `/v1/users?id=${user}`;
    await send(h.edgecache, "GET", watched);
    for (let i = 0; i < N; i++) await send(h.edgecache, "GET", junk(i));
    await cache.drain();

    const stats = cache.stats();
    // Some 2 KB a list key: about a thousand, where the file alone would allow 50,000.
    expect(stats.indexedKeys).toBeLessThan(2_000);
    expect(stats.index.bytes).toBeLessThanOrEqual(INDEX_BYTES);
    expect(stats.index.maxBytes).toBe(INDEX_BYTES);
    expect(stats.index.evictions).toBeGreaterThan(0);
    expect(stats.notFound.entries).toBeLessThanOrEqual(bounds.notFound.maxEntries);
    expect(stats.tiers[0]!.entries).toBeLessThanOrEqual(bounds.memory.maxEntries);

    // No local tier keeps an entry the index dropped: a write could not find it.
    const registered = new Set(cache.keys());
    const file = h.edgecache.tiers[1] as ListableStore;
    const stored: string[] = [];
    for await (const key of file.keys("")) stored.push(key);
    expect(stored.length).toBeLessThanOrEqual(registered.size);
    expect(stored.filter((k) => !registered.has(k))).toEqual([]);

    // A write after the flood still reaches a list read before it (registered anew or gone).
    const patched = await send(h.edgecache, "PATCH", `/v1/users/${user}`, { lastName: "Flood" });
    expect(patched.status).toBe(200);
    const after = await send(h.edgecache, "GET", watched);
    expect(after.json.data[0].lastName).toBe("Flood");
  }, 120_000);
});
