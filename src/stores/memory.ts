import { LRUCache } from "lru-cache";
import type { CacheEntry } from "../core/entries/entry.ts";
import { heldBytes } from "../core/entries/heap-size.ts";
import { badOption, checkOptionNames, type OptionNames } from "../core/errors.ts";
import type {
  EvictingStore,
  ListableStore,
  MeasuredStore,
  StoreSize,
  SyncStore,
} from "../core/store.ts";

export interface MemoryStoreOptions {
  /**
   * Upper bound on the heap the held entries take: each entry's `heldBytes`, which counts its
   * key (a client can make keys long), body, headers, tags, list predicates and meta, plus
   * the objects every entry costs (some 640 bytes). Default 50 MB.
   */
  maxBytes?: number;
  /** Upper bound on the number of held entries. Default 100 000. */
  maxEntries?: number;
  /** Clock in epoch milliseconds, for fake clocks in tests. Default `Date.now`. */
  now?: () => number;
}

const NAME = "memory";

/** The options MemoryStoreOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<MemoryStoreOptions> = {
  maxBytes: true,
  maxEntries: true,
  now: true,
};
const DEFAULT_MAX_BYTES = 50 * 1024 * 1024;
const DEFAULT_MAX_ENTRIES = 100_000;

interface Slot {
  entry: CacheEntry;
  /** Epoch ms at which the entry stops being returned; Infinity for never. */
  expiresAt: number;
}

/**
 * The in-process tier: an LRU bounded by bytes and by entry count, with a per-entry TTL.
 * Entries are held by reference, so callers must not mutate an entry after `set` or
 * after reading it.
 *
 * @example
 * ```ts
 * const store = memoryStore({ maxBytes: 100 * 1024 * 1024 });
 * await store.set("users?id=1", entry, 60_000);
 * const hit = store.peek("users?id=1"); // synchronous, for the hit fast path
 * ```
 */
export function memoryStore(
  options: MemoryStoreOptions = {},
): SyncStore & ListableStore & MeasuredStore & EvictingStore {
  if (typeof options !== "object" || options === null) {
    badOption(NAME, "options", "an object", options);
  }
  checkOptionNames(NAME, options, OPTIONS);
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const now = options.now ?? Date.now;
  if (!isPositiveInteger(maxBytes)) badOption(NAME, "maxBytes", "a positive integer", maxBytes);
  if (!isPositiveInteger(maxEntries)) {
    badOption(NAME, "maxEntries", "a positive integer", maxEntries);
  }
  if (typeof now !== "function") badOption(NAME, "now", "a function", now);

  let evictions = 0;
  const evictListeners: ((key: string) => void)[] = [];
  // Expiry is checked here against `now()` rather than with lru-cache's ttl: its ttl
  // caches the clock for `ttlResolution` ms of real time and treats a start time of 0
  // as "no ttl", both of which break fake clocks. Stale slots simply age out of the LRU.
  const lru = new LRUCache<string, Slot>({
    max: maxEntries,
    maxSize: maxBytes,
    dispose: (_slot, _key, reason) => {
      // Only capacity pressure counts; deletes, overwrites and expiry do not.
      if (reason === "evict") {
        evictions++;
        for (const listener of evictListeners) listener(_key);
      }
    },
  });

  function peek(key: string, at?: number): CacheEntry | undefined {
    const slot = lru.get(key);
    if (slot === undefined) return undefined;
    if ((at ?? now()) >= slot.expiresAt) {
      lru.delete(key);
      return undefined;
    }
    return slot.entry;
  }

  return {
    name: NAME,
    byReference: true,
    onEvict(listener) {
      evictListeners.push(listener);
    },
    peek,

    async get(key) {
      return peek(key);
    },

    async set(key, entry, ttlMs) {
      const size = heldBytes(key, entry);
      // A write replaces whatever was there, so the old entry goes even if the new one
      // is not kept (already expired, or larger than the whole store).
      if (!(ttlMs > 0) || size > maxBytes) {
        lru.delete(key);
        return;
      }
      lru.set(key, { entry, expiresAt: now() + ttlMs }, { size });
    },

    async delete(keys) {
      const at = now();
      let count = 0;
      for (const key of keys) {
        // peek, not get: deleting must not reorder the LRU.
        const slot = lru.peek(key);
        if (slot === undefined) continue;
        if (at < slot.expiresAt) count++;
        lru.delete(key);
      }
      return count;
    },

    async *keys(prefix) {
      // Snapshot first: deleting from the LRU while walking it is not safe, and callers
      // may delete the keys they are handed.
      const at = now();
      const live: string[] = [];
      const expired: string[] = [];
      for (const [key, slot] of lru.entries()) {
        if (!key.startsWith(prefix)) continue;
        (at < slot.expiresAt ? live : expired).push(key);
      }
      for (const key of expired) lru.delete(key);
      yield* live;
    },

    size(): StoreSize {
      // Counts expired entries not yet dropped; they go when read, listed or evicted.
      return { entries: lru.size, bytes: lru.calculatedSize, evictions };
    },
  };
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}
