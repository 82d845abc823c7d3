import { describe, expect, it } from "vitest";
import { createCache } from "../../src/core/cache/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { sqliteStore } from "../../src/stores/sqlite.ts";

/**
 * Each key's hits, as the index reports them (the keys listing, and which invalidated keys
 * are hot enough to reload): counted by memory hits through the entry's own count, for an
 * entry stored here, one back-filled from a lower tier, and one stored again.
 */
describe("hits per key", () => {
  it("counts every memory hit of an entry stored here, from 0 again for a new value", async () => {
    const cache = createCache({ tiers: [memoryStore()] });
    await cache.set("a", 1);
    for (let i = 0; i < 3; i++) expect(await cache.get("a")).toBe(1);
    expect(await cache.getOrSet("a", () => 2)).toBe(1);
    expect(cache.registration("a")?.hits).toBe(4);
    await cache.set("a", 5); // a set invalidates the key first
    expect(await cache.get("a")).toBe(5);
    expect(cache.registration("a")?.hits).toBe(1);
    await cache.close();
  });

  it("counts the hits of an entry back-filled from a lower tier", async () => {
    const memory = memoryStore();
    const cache = createCache({ tiers: [memory, sqliteStore({ path: ":memory:" })] });
    await cache.set("b", "from below");
    await memory.delete(["b"]); // as if evicted
    expect(await cache.get("b")).toBe("from below"); // from SQLite, into memory
    expect(await cache.get("b")).toBe("from below");
    expect(await cache.get("b")).toBe("from below");
    expect(cache.registration("b")?.hits).toBe(3); // the one from SQLite, two from memory
    await cache.close();
  });
});
