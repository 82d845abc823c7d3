import type { LogPosition } from "../change-log/contract.ts";
import { Cost } from "../cost.ts";
import { type CacheEntry, madeEntry } from "../entries/entry.ts";
import { isNegative } from "../entries/negative.ts";
import { hitCount } from "./entries.ts";
import type { StoreLoadedOptions } from "./loads.ts";
import type { Parts } from "./parts.ts";
import type { EntryInit, LookupOptions, Resolved, ResolveStatus, StoredLoad } from "./types.ts";

export type { StoreLoadedOptions };

/**
 * The cache's reads by key: the synchronous hit path (`peek`), a lookup through the tiers
 * (`getEntry`), a read with its load (`resolve`), and the counting of each. The facade's
 * methods of those names, and the JSON values' reads, are these; and the stores of what a
 * caller loaded itself (`storeLoaded`, `setEntry`).
 */
export class Serving {
  readonly #e: Parts;
  /** The clock of `peek`: the cache's, or a coarse reading of it (CoarseClock). */
  readonly #hitNow: () => number;

  constructor(parts: Parts, hitNow: () => number) {
    this.#e = parts;
    this.#hitNow = hitNow;
  }

  peek(key: string, options?: LookupOptions): CacheEntry | undefined {
    const { front } = this.#e.tiers;
    const hits = this.#e.hits;
    if (!front || !hits.open(key) || !hits.asks(0, key)) return undefined;
    const started = this.#e.observer ? performance.now() : 0;
    const now = this.#hitNow();
    const entry = front.peek(key, now);
    if (!hits.live(entry, now, "fresh")) return undefined;
    this.#e.tiers.stats(0).hits++;
    this.#e.observer?.read(this.#e.tiers.list[0]!.name, (performance.now() - started) / 1000);
    if (options?.count !== false) {
      this.#e.counters.hits++;
      const count = hitCount(entry);
      if (count !== undefined) count.hits++;
      else this.#e.index.touch(key);
      // Only a negative result has a place in the negative quota's order.
      if (isNegative(entry.status)) this.#e.negative.touch(key);
    }
    return madeEntry(entry);
  }

  /** Looks a key up through the tiers; fresh or stale-but-servable entries only. */
  async getEntry(key: string, options?: LookupOptions): Promise<CacheEntry | undefined> {
    const cost = new Cost();
    const found = await this.#e.reads.lookup(key, this.#e.end(options?.tiers), cost);
    // A lookup that finds nothing is the start of a miss (its caller loads it, or not).
    this.#e.costs[found ? "hit" : "miss"].merge(cost);
    if (!found) return undefined;
    if (options?.count !== false) {
      this.countRead(key, found.entry.freshUntil > this.#e.now() ? "hit" : "stale");
    }
    return found.entry;
  }

  /**
   * Counts a read its caller answered itself (after a lookup with `count: false`): an
   * HTTP proxy decides hit, stale or miss from the request as well as the entry, and
   * counts a read it sent around the cache (caching off) as a bypass.
   */
  countRead(key: string, status: ResolveStatus | "bypass"): void {
    if (status === "bypass") this.#e.counters.bypasses++;
    else if (status === "hit") {
      this.#e.counters.hits++;
      this.#e.index.touch(key);
      this.#e.negative.touch(key);
    } else if (status === "stale") this.#e.counters.staleHits++;
    else this.#e.counters.misses++;
  }

  /**
   * Returns the cached entry for `key`, or loads, stores and returns it. Concurrent misses
   * for one key share one load (single flight). A stale entry within its
   * stale-while-revalidate window is returned at once and refreshed in the background; if
   * the load fails, a stale entry is served instead of the error (stale-if-error). While
   * the lease on the log has lapsed, or with caching off, every read goes to the source
   * and nothing is stored (a bypass).
   */
  async resolve(
    key: string,
    load: () => Promise<EntryInit>,
    options?: Pick<LookupOptions, "tiers">,
  ): Promise<Resolved> {
    if (!this.#e.enabled || !this.#e.log.trusted()) {
      this.#e.counters.bypasses++;
      const entry = await this.#e.entries.build(
        await this.#e.loads.measureLoad(load),
        this.#e.fence.position,
      );
      return {
        entry: madeEntry(entry),
        status: "miss",
        stored: false,
        bypass: true,
        unstored: this.#e.enabled ? "lease-expired" : "cache-off",
      };
    }
    const cost = new Cost();
    const found = await this.#e.reads.lookup(key, this.#e.end(options?.tiers), cost);
    const { costs } = this.#e;
    costs[found ? "hit" : "miss"].merge(cost);
    const now = this.#e.now();
    if (found && found.entry.freshUntil > now) {
      this.countRead(key, "hit");
      return { entry: found.entry, status: "hit", tier: found.tier };
    }
    if (found) {
      this.#e.counters.staleHits++;
      this.#e.background.run(this.#e.loads.load(key, load)); // failures are counted and logged there
      return { entry: found.entry, status: "stale", tier: found.tier };
    }
    this.#e.counters.misses++;
    // Out of the log's reach the node stops trusting its cache: the load is not stored.
    await this.#e.log.freshen?.(costs.miss).catch(() => {});
    const loaded = await this.#e.loads.load(key, load, costs.miss);
    madeEntry(loaded.entry);
    return loaded;
  }

  async storeLoaded(
    key: string,
    init: EntryInit,
    since: LogPosition,
    options?: StoreLoadedOptions,
  ): Promise<StoredLoad> {
    const stored = await this.#e.loads.storeLoaded(key, init, since, options);
    madeEntry(stored.entry);
    return stored;
  }

  async setEntry(key: string, init: EntryInit): Promise<CacheEntry> {
    const entry = await this.#e.entries.build(init, this.#e.fence.position);
    await this.#e.entries.store(key, entry, this.#e.end(init.tiers));
    return madeEntry(entry);
  }
}
