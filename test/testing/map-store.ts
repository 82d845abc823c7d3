import type { CacheEntry, ListableStore } from "../../src/index.ts";

/**
 * A store over a Map, as small as the contract allows: the guide's example of a backend run
 * through `storeConformance` (docs/guides/conformance.md shows this file, its imports as a
 * user writes them).
 */
export function mapStore(options: { now?: () => number } = {}): ListableStore {
  const now = options.now ?? Date.now;
  const entries = new Map<string, { entry: CacheEntry; expiresAt: number }>();

  /** The live entry of `key`; an expired one is dropped on the way. */
  function live(key: string): CacheEntry | undefined {
    const held = entries.get(key);
    if (held === undefined) return undefined;
    if (held.expiresAt > now()) return held.entry;
    entries.delete(key);
    return undefined;
  }

  return {
    name: "map",
    async get(key) {
      return live(key);
    },
    async set(key, entry, ttlMs) {
      // A ttl that is not positive (0, negative, NaN) removes the key: `!(ttlMs > 0)`.
      if (!(ttlMs > 0)) entries.delete(key);
      else entries.set(key, { entry, expiresAt: now() + ttlMs });
    },
    async delete(keys) {
      let existed = 0;
      for (const key of keys) {
        if (live(key)) existed++;
        entries.delete(key);
      }
      return existed;
    },
    async *keys(prefix) {
      for (const key of [...entries.keys()]) if (key.startsWith(prefix) && live(key)) yield key;
    },
  };
}
