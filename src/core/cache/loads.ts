import type { ChangeLog, LogPosition } from "../change-log/contract.ts";
import type { Cost } from "../cost.ts";
import { tagTable } from "../deps/planner.ts";
import type { CacheEntry } from "../entries/entry.ts";
import type { WriteFence } from "../fence/fence.ts";
import type { CacheObserver, LatencyRecorder } from "../stats.ts";
import type { Background } from "./background.ts";
import type { Counters } from "./counters.ts";
import { type Entries, markLoadMs } from "./entries.ts";
import type { TierStack } from "./tiers.ts";
import type {
  EntryInit,
  Followed,
  Found,
  Resolved,
  StoredLoad,
  Unstored,
  WriteHooks,
} from "./types.ts";

/** How `storeLoaded` stores (see `Cache.storeLoaded`). */
export interface StoreLoadedOptions {
  memoryOnly?: boolean;
  exact?: boolean;
  later?: boolean;
  /**
   * With `later`: the log's word on exactness may wait for capture's next look at the
   * source but costs no statement on it; not exact where it cannot be told so.
   */
  patient?: boolean;
  /**
   * Where records applied since `since` concern the entry and can be told event by event
   * (in commit order, still retained), the refusal names the first (StoredLoad.followed),
   * so the caller may bring the entry through it rather than lose it: a group patch that
   * finished after the next write.
   */
  follow?: boolean;
}

/** What `Loads` is given when the cache is made. */
export interface LoadsDeps {
  readonly entries: Pick<Entries, "build" | "store" | "storeMany" | "storeIn" | "remove">;
  readonly tiers: Pick<TierStack, "deleteShared">;
  readonly log: Pick<ChangeLog, "trusted" | "shared" | "quietSince">;
  readonly fence: Pick<WriteFence, "position" | "conflicts" | "concerning">;
  readonly background: Pick<Background, "run">;
  readonly counters: Pick<Counters, "loads" | "loadErrors" | "fenced">;
  readonly latency: Pick<LatencyRecorder, "record">;
  readonly observer: CacheObserver | undefined;
  /** false: caching is off, so nothing is stored. */
  readonly enabled: boolean;
  /** The write hooks now (only whether entries are patched matters here). */
  hooks(): WriteHooks;
  /** Tiers [0, end) of a value's `tiers` count (validated already); all by default. */
  end(tiers: number | undefined): number;
  /** Where what a load sends counts when no request's cost is given (see Cost). */
  readonly idle: Cost;
  /** stale-if-error: the entry a failed load may serve instead (`Reads.lookup`). */
  lookup(key: string): Promise<Found | undefined>;
}

/** `Loads.storeLoaded`, as other modules are given it. */
export type StoreLoaded = Loads["storeLoaded"];

/**
 * Loads from the source: single flight (concurrent misses of a key share one load), the
 * write fence on store (a load that overlapped a write that concerns it stores nothing),
 * stale-if-error, and the copy of a patch into the shared tiers.
 */
export class Loads {
  readonly #e: LoadsDeps;
  readonly #inflight = new Map<string, { promise: Promise<Resolved>; since: LogPosition }>();

  constructor(deps: LoadsDeps) {
    this.#e = deps;
  }

  /** The loads in flight now (for drain). */
  get inflight(): Promise<Resolved>[] {
    return [...this.#inflight.values()].map((f) => f.promise);
  }

  /**
   * Runs a source read, counting it in the stats (loads, load errors, source latency).
   * For callers with a single flight of their own; `resolve` does this itself.
   */
  async measureLoad<T>(load: () => Promise<T>): Promise<T> {
    // performance.now: sub-millisecond and monotonic (the TTL clock may be a fake one).
    const started = performance.now();
    this.#e.counters.loads++;
    try {
      const value = await load();
      const ms = performance.now() - started;
      this.#e.latency.record(ms);
      this.#e.observer?.load(ms / 1000, false);
      return value;
    } catch (err) {
      this.#e.counters.loadErrors++;
      this.#e.observer?.load((performance.now() - started) / 1000, true);
      throw err;
    }
  }

  /**
   * Stores what a load read, unless a change since `since` (a `position`) concerns it: the
   * write fence. Returns the entry either way, and whether it was stored. The entry records
   * `since`, so any node that later reads it from a shared tier can check it the same way.
   * `cost`: where what it sends counts, the part done later included. What a write patched
   * is stored by storePatched.
   */
  async storeLoaded(
    key: string,
    init: EntryInit,
    since: LogPosition,
    options?: StoreLoadedOptions,
    cost?: Cost,
  ): Promise<StoredLoad> {
    const entry = await this.#e.entries.build(init, since);
    const refused: Unstored | undefined =
      init.cacheable === false
        ? "uncacheable"
        : !this.#e.enabled
          ? "cache-off"
          : !this.#e.log.trusted()
            ? "lease-expired"
            : undefined;
    if (refused) return { entry, stored: false, unstored: refused };
    // Only patches care whether the load saw the source exactly at `since` (see patch).
    // Asking a shared log costs a round trip: with `later`, the entry is served and kept
    // as not exact (the stricter rules) until the answer comes.
    const asks = options?.exact === undefined && this.#e.log.shared && !!this.#e.hooks().patch;
    const quietSince = (at: LogPosition) =>
      asks
        ? this.quiet(at, tablesRead([entry]), cost, options?.later && options.patient)
        : Promise.resolve(options?.exact === true);
    if (!options?.later && (await quietSince(since))) entry.exact = true;
    if (this.#e.fence.conflicts(since, key, entry)) {
      this.#e.counters.fenced++;
      const followed = options?.follow ? this.#followed(since, key, entry) : undefined;
      return { entry, stored: false, unstored: "invalidated", ...(followed && { followed }) };
    }
    const end = options?.memoryOnly ? 1 : this.#e.end(init.tiers);
    await this.#e.entries.store(key, entry, end, options?.later ? "local" : undefined, cost);
    // A write may have landed while the tiers were being written: check once more.
    const checked = this.#e.fence.position;
    if (this.#e.fence.conflicts(since, key, entry)) {
      this.#e.counters.fenced++;
      await this.#e.entries.remove(new Set([key]));
      const followed = options?.follow ? this.#followed(since, key, entry) : undefined;
      return { entry, stored: false, unstored: "invalidated", ...(followed && { followed }) };
    }
    // No record up to `checked` changed what it shows: it is exact where none came since
    // (a load, or a group patch stored as of an older record, that later records passed by).
    if (options?.later) {
      const quiet = quietSince(checked);
      this.#e.background.run(this.#share(key, entry, since, end, quiet, cost));
    }
    return { entry, stored: true };
  }

  /**
   * The first record since `since` that concerns `entry`: its events and position;
   * undefined where the records cannot be told (see follow). Only the first: a later record
   * that did not concern `entry` may concern what it becomes once brought through that one
   * (a favourite of an article it brings in), so the store after it is checked from its
   * position on, and may be refused for the next.
   */
  #followed(since: LogPosition, key: string, entry: CacheEntry): Followed | undefined {
    const changes = this.#e.fence.concerning(since, key, entry);
    const first = Array.isArray(changes) ? changes[0] : undefined;
    return first && { events: first.events, at: { log: since.log, seq: first.seq } };
  }

  /**
   * The rest of a `later` store, once the answer has been sent: the entry becomes exact if
   * the log was quiet, and goes into the shared tiers (unless a change concerned it
   * meanwhile: nodes reading it there check it against the log all the same).
   */
  async #share(
    key: string,
    entry: CacheEntry,
    since: LogPosition,
    end: number,
    quiet: Promise<boolean>,
    cost?: Cost,
  ): Promise<boolean> {
    if (await quiet) entry.exact = true;
    if (this.#e.fence.conflicts(since, key, entry)) return false;
    await this.#e.entries.storeIn([{ key, entry }], end, "shared", cost);
    // A write may have landed meanwhile: its record's removal may have come first.
    if (!this.#e.fence.conflicts(since, key, entry)) return true;
    await this.#e.tiers.deleteShared([key], cost);
    return false;
  }

  /**
   * Copies entries this node holds (patches, stored as loads that began at `since`) into the
   * shared tiers, in one batch, each unless a change since concerns it; resolves with how
   * many were copied.
   */
  async shareMany(
    items: readonly { key: string; entry: CacheEntry }[],
    since: LogPosition,
  ): Promise<number> {
    if (!this.#e.log.trusted()) return 0;
    const current = (list: readonly { key: string; entry: CacheEntry }[]) =>
      list.filter(({ key, entry }) => !this.#e.fence.conflicts(since, key, entry));
    const copies = current(items);
    await this.#e.entries.storeIn(copies, this.#e.end(undefined), "shared");
    // A write may have landed meanwhile: its record's removal may have come first.
    const kept = current(copies);
    if (kept.length < copies.length) {
      const stays = new Set(kept);
      await this.#e.tiers.deleteShared(copies.filter((c) => !stays.has(c)).map((c) => c.key));
    }
    return kept.length;
  }

  /** Whether the log was quiet since `since` for `tables` (see ChangeLog.quietSince). */
  async quiet(
    since: LogPosition,
    tables?: readonly string[],
    cost?: Cost,
    patient?: boolean,
  ): Promise<boolean> {
    try {
      return await this.#e.log.quietSince(since, tables, cost ?? this.#e.idle, patient);
    } catch {
      return false; // counted by the log; the entry is merely patched by the strict rules
    }
  }

  /** storeLoaded for several keys loaded since one position: each tier written in one batch. */
  async storeLoadedMany(
    loaded: readonly { key: string; init: EntryInit }[],
    since: LogPosition,
    cost?: Cost,
  ): Promise<void> {
    const entries = await Promise.all(loaded.map(({ init }) => this.#e.entries.build(init, since)));
    if (!this.#e.enabled || !this.#e.log.trusted()) return;
    const exact =
      this.#e.log.shared &&
      this.#e.hooks().patch &&
      (await this.quiet(since, tablesRead(entries), cost));
    await this.#storeUnfenced(
      loaded.flatMap(({ key, init }, i) => {
        const entry = entries[i]!;
        if (exact) entry.exact = true;
        return init.cacheable === false ? [] : [{ key, entry, end: this.#e.end(init.tiers) }];
      }),
      since,
      cost,
    );
  }

  /**
   * Stores what a write patched (see Applier), into memory alone and in one batch: each
   * unless a change since `since` concerns it (the fence, before and after, as storeLoaded
   * checks it), `exact` as the patch says. Whatever the lease: memory keeps its other entries
   * through a lapse (nothing reads them until a sync brings the node up to the head), and
   * the sync that brings a record after a quiet spell is the one that renews the lease
   * (issue 42). Returns what was stored.
   */
  async storePatched(
    patched: readonly { key: string; init: EntryInit; exact: boolean }[],
    since: LogPosition,
  ): Promise<{ key: string; entry: CacheEntry }[]> {
    const entries = await Promise.all(
      patched.map(({ init }) => this.#e.entries.build(init, since)),
    );
    if (!this.#e.enabled) return [];
    return this.#storeUnfenced(
      patched.flatMap(({ key, init, exact }, i) => {
        const entry = entries[i]!;
        if (exact) entry.exact = true;
        return init.cacheable === false ? [] : [{ key, entry, end: 1 }];
      }),
      since,
    );
  }

  /**
   * Writes the items no change since `since` concerns (the write fence), a batch per number
   * of tiers that keep them, and takes out any that a write which landed meanwhile concerns.
   * Returns the items kept.
   */
  async #storeUnfenced<T extends { key: string; entry: CacheEntry; end: number }>(
    items: readonly T[],
    since: LogPosition,
    cost?: Cost,
  ): Promise<T[]> {
    const unfenced = (list: readonly T[]) =>
      list.filter(({ key, entry }) => {
        if (!this.#e.fence.conflicts(since, key, entry)) return true;
        this.#e.counters.fenced++;
        return false;
      });
    const keep = unfenced(items);
    // Grouped by how many tiers keep them (one group unless the items chose tiers).
    const ends = new Map<number, T[]>();
    for (const item of keep) {
      const group = ends.get(item.end);
      if (group) group.push(item);
      else ends.set(item.end, [item]);
    }
    await Promise.all(
      [...ends].map(([end, list]) => this.#e.entries.storeMany(list, end, undefined, cost)),
    );
    // A write may have landed while the tiers were being written: check once more.
    const kept = unfenced(keep);
    if (kept.length < keep.length) {
      const stays = new Set(kept);
      await this.#e.entries.remove(new Set(keep.filter((i) => !stays.has(i)).map((i) => i.key)));
    }
    return kept;
  }

  /** A miss (or a refresh): `cost` counts what the load stores, if this call makes it. */
  async load(key: string, load: () => Promise<EntryInit>, cost?: Cost): Promise<Resolved> {
    const running = this.#inflight.get(key);
    if (running) {
      const result = await running.promise;
      // Joining a load that began before an invalidation could hand this reader data older
      // than a write it already saw acknowledged: check, and load again if so.
      if (!this.#e.fence.conflicts(running.since, key, result.entry)) return result;
      return this.load(key, load, cost);
    }
    const since = this.#e.fence.position;
    const promise = this.#runLoad(key, load, since, cost).finally(() => {
      if (this.#inflight.get(key)?.promise === promise) this.#inflight.delete(key);
    });
    this.#inflight.set(key, { promise, since });
    return promise;
  }

  async #runLoad(
    key: string,
    load: () => Promise<EntryInit>,
    since: LogPosition,
    cost: Cost | undefined,
  ): Promise<Resolved> {
    let init: EntryInit;
    const started = performance.now();
    try {
      init = await this.measureLoad(load);
    } catch (err) {
      // stale-if-error: an entry still inside its stale window beats an error.
      const stale = await this.#e.lookup(key).catch(() => undefined);
      if (stale) return { entry: stale.entry, status: "stale", tier: stale.tier };
      throw err;
    }
    // The answer does not wait for the shared tiers or the log's word on exactness.
    const { entry, stored, unstored } = await this.storeLoaded(
      key,
      init,
      since,
      { later: true },
      cost,
    );
    // What a read pays when the entry goes (its load and store): writes keep it current up
    // to that much with no read (see Apply).
    markLoadMs(entry, performance.now() - started);
    return { entry, status: "miss", stored, ...(unstored && { unstored }) };
  }
}

/**
 * The tables entries depend on, as their tags and lists name them (`users`, `users#1`,
 * `users@orderId=5`): only changes to those could make a load show more than its position.
 */
function tablesRead(entries: readonly CacheEntry[]): string[] {
  const tables = new Set<string>();
  for (const entry of entries) {
    for (const tag of entry.tags) tables.add(tagTable(tag));
    for (const list of entry.lists ?? []) tables.add(list.table);
  }
  return [...tables];
}
