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
  let quick = false;
  const store: Store = {
    name: "far",
    shared: true,
    async get(key) {
      reads++;
      if (!quick) await new Promise((done) => setTimeout(done, ms));
      quick = false;
      return inner.get(key);
    },
    set: (key, entry, ttl) => inner.set(key, entry, ttl),
    delete: (keys) => inner.delete(keys),
  };
  return {
    store,
    reads: () => reads,
    held: (key: string) => inner.get(key),
    /** The next read answers at once. */
    quick: () => {
      quick = true;
    },
  };
}

/** Reads keys k0 to k(n-1): each a memory miss the first time. */
async function readDistinct(cache: Cache, n: number, load: () => Promise<number>) {
  for (let i = 0; i < n; i++) await cache.getOrSet(`k${i}`, load);
}

describe("a shared tier slower than the source", () => {
  it("is skipped by reads that miss memory, asked one read in 16, and still written", async () => {
    const far = farTier(40);
    const cache = new Cache({ tiers: [memoryStore(), far.store] });
    // Its distance is known after 16 reads: the least of them.
    await readDistinct(cache, 16, async () => 1);
    expect(far.reads()).toBe(16);
    await readDistinct(cache, 48, async () => 1);
    // Of the 32 reads after, two are samples.
    expect(far.reads()).toBe(18);
    expect(cache.stats().tiers[1]).toMatchObject({ name: "far", skipped: 30 });
    await cache.drain();
    expect(await far.held("k40")).toBeDefined();
  });

  it("is near when one of its last 16 reads was quick (the node, not the link, was slow)", async () => {
    const far = farTier(40);
    const cache = new Cache({ tiers: [memoryStore(), far.store] });
    await readDistinct(cache, 15, async () => 1);
    far.quick();
    // The quick read is among the last 16 until 16 slow ones follow it.
    await readDistinct(cache, 32, async () => 1);
    expect(far.reads()).toBe(32);
    expect(cache.stats().tiers[1]!.skipped).toBe(0);
    await readDistinct(cache, 33, async () => 1);
    expect(far.reads()).toBe(32);
    expect(cache.stats().tiers[1]!.skipped).toBe(1);
  });

  it("is asked by every read while the source is slower still", async () => {
    const far = farTier(25);
    const cache = new Cache({ tiers: [memoryStore(), far.store] });
    // More reads than the 16 a distance is judged on: past FAR_TIER_MS, yet nearer than a load.
    await readDistinct(cache, 20, async () => {
      await new Promise((done) => setTimeout(done, 60));
      return 1;
    });
    expect(far.reads()).toBe(20);
    expect(cache.stats().tiers[1]!.skipped).toBe(0);
  });
});
