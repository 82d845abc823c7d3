import { describe, expect, it } from "vitest";
import { Cache } from "../../src/core/cache/index.ts";
import type { Store } from "../../src/core/store.ts";
import { memoryStore } from "../../src/stores/memory.ts";

// A node far from its shared tier (another region's Redis) and near its source: a read
// that misses memory goes to the source instead of waiting on the tier, which is asked one
// read in 16 so the node notices when it comes close again; what it loads still goes there.

/** A shared tier whose reads take `ms` (a far link); counts them. */
function farTier(ms: number) {
  const inner = memoryStore();
  let reads = 0;
  const store: Store = {
    name: "far",
    shared: true,
    async get(key) {
      reads++;
      await new Promise((done) => setTimeout(done, ms));
      return inner.get(key);
    },
    set: (key, entry, ttl) => inner.set(key, entry, ttl),
    delete: (keys) => inner.delete(keys),
  };
  return { store, reads: () => reads, held: (key: string) => inner.get(key) };
}

async function readDistinct(cache: Cache, n: number, load: () => Promise<number>) {
  for (let i = 0; i < n; i++) await cache.getOrSet(`k${i}`, load);
}

describe("a shared tier slower than the source", () => {
  it("is skipped by reads that miss memory, asked one read in 16, and still written", async () => {
    const far = farTier(60);
    const cache = new Cache({ tiers: [memoryStore(), far.store] });
    await readDistinct(cache, 33, async () => 1);
    // The first read asks it (nothing is known yet); of the 32 after, two are samples.
    expect(far.reads()).toBe(3);
    expect(cache.stats().tiers[1]).toMatchObject({ name: "far", skipped: 30 });
    await cache.drain();
    expect(await far.held("k20")).toBeDefined();
  });

  it("is asked by every read while the source is slower still", async () => {
    const far = farTier(30);
    const cache = new Cache({ tiers: [memoryStore(), far.store] });
    await readDistinct(cache, 5, async () => {
      await new Promise((done) => setTimeout(done, 90));
      return 1;
    });
    expect(far.reads()).toBe(5);
    expect(cache.stats().tiers[1]!.skipped).toBe(0);
  });
});
