import { DependencyIndex } from "./deps/index.ts";
import {
  type InvalidationPolicy,
  type ListDependency,
  type PlanSchema,
  planWrite,
  type WriteEvent,
} from "./deps/planner.ts";
import type { CacheEntry } from "./entry.ts";
import { badOption } from "./errors.ts";
import { type CacheStats, LatencyRecorder, type TierStats } from "./stats.ts";
import { isEvicting, isListable, isMeasured, isSync, type Store, type SyncStore } from "./store.ts";

const HOUR = 3_600_000;
const SWEEP_EVERY = 4096;
/** Without a schema every write falls back to its table. */
const NO_SCHEMA: PlanSchema = { primaryKey: () => undefined, joinColumns: () => [] };

export interface CacheOptions {
  /** Tiers, fastest first. Reads fall through and back-fill the tiers above. */
  tiers: Store[];
  /** Default time to live in ms (24 hours). */
  ttl?: number;
  /** Default stale-while-revalidate window after the TTL, in ms (0). */
  staleWhileRevalidate?: number;
  /** How writes invalidate: "exact" (default), "table" or "none" (TTL only). */
  policy?: InvalidationPolicy;
  /** What the planner knows of the data API's schema; without it writes fall back to tables. */
  schema?: PlanSchema;
  /** Background refetch of invalidated hot entries; false turns it off. */
  rehydrate?: { concurrency?: number; minHits?: number } | false;
  /** Overlapping operations the write fence remembers (1024). */
  fenceLogSize?: number;
  now?: () => number;
  logger?: { warn(message: string, error?: unknown): void };
}

/** What a loader returns: the body and what it depends on. */
export interface EntryInit {
  body: Uint8Array | string;
  headers?: Record<string, string>;
  status?: number;
  tags?: string[];
  lists?: ListDependency[];
  meta?: unknown;
  /** ms; overrides the cache's default. */
  ttl?: number;
  staleWhileRevalidate?: number;
  /** False keeps the response out of the cache (it is still returned). */
  cacheable?: boolean;
  /**
   * ms the response had already aged when it arrived (an HTTP origin's `Age`): `createdAt`
   * is set that far back, so a later `Age` header counts it (RFC 9111 4.2.3). Default 0.
   */
  age?: number;
  /** The entry's ETag as given ("" for none) instead of a hash of the body. */
  etag?: string;
}

/** Lookup options: `count: false` leaves the hit and miss counters to the caller (`countRead`). */
export interface LookupOptions {
  count?: boolean;
}

export interface ApplyWriteOptions {
  /** Re-runs the read behind a key (rehydration of hot invalidated entries). */
  refetch?: (key: string) => Promise<unknown>;
  /**
   * The entry's value after `events`, computed from its cached value without the source,
   * or undefined when that cannot be told exactly (the entry is then invalidated).
   * Synchronous: it sees the entry as the write found it, and through `peek` any other
   * fresh entry of the first tier as the write found it (a neighbouring page, say).
   */
  patch?: (
    key: string,
    entry: CacheEntry,
    events: readonly WriteEvent[],
    peek: (key: string) => CacheEntry | undefined,
  ) => EntryInit | undefined;
}

export type ResolveStatus = "hit" | "stale" | "miss";

export interface Resolved {
  entry: CacheEntry;
  status: ResolveStatus;
  /** The tier that answered a hit. */
  tier?: string;
  /** For a miss: whether the entry was stored (false when the write fence refused it). */
  stored?: boolean;
}

export interface InvalidateRequest {
  keys?: string[];
  prefix?: string;
  tags?: string[];
}

/** An operation the write fence checks loads against. */
type FenceBody =
  | { event: WriteEvent }
  | { keys: ReadonlySet<string> }
  | { prefix: string }
  | { tags: ReadonlySet<string> };
type FenceOp = { seq: number } & FenceBody;

/**
 * The tiered cache engine. Portable: Web-standard APIs only.
 *
 * @example
 * const cache = createCache({ tiers: [memoryStore()] });
 * const user = await cache.getOrSet("user:1", () => db.user(1), { tags: ["users#1"] });
 * await cache.invalidate({ tags: ["users#1"] });
 */
export class Cache {
  readonly tiers: readonly Store[];
  readonly index = new DependencyIndex();
  readonly policy: InvalidationPolicy;
  #ttl: number;
  #swr: number;
  #schema: PlanSchema | undefined;
  #now: () => number;
  #logger: NonNullable<CacheOptions["logger"]>;
  #tierStats: TierStats[];
  #counters = {
    hits: 0,
    staleHits: 0,
    misses: 0,
    loads: 0,
    loadErrors: 0,
    fenced: 0,
    writes: 0,
    invalidations: 0,
    rehydrations: 0,
    patches: 0,
  };
  #latency = new LatencyRecorder();
  #inflight = new Map<string, { promise: Promise<Resolved>; seq: number }>();
  #front: SyncStore | undefined;
  // The write fence: a sequence number bumped by every invalidation, and the recent ones.
  #seq = 0;
  #fence: FenceOp[] = [];
  #fenceSize: number;
  #rehydrate: { concurrency: number; minHits: number } | undefined;
  #rehydrateQueue: (() => Promise<void>)[] = [];
  #rehydrating = 0;
  #warned = new Set<string>();
  /** Per tier: keys whose delete failed there; reads skip that tier for them. */
  #undeleted = new Map<number, Set<string>>();
  /** Tiers that may hold entries the index does not know (a failed restore): not read. */
  #untrusted = new Set<number>();
  #encoder = new TextEncoder();
  #stores = 0;

  constructor(options: CacheOptions) {
    const c = "cache";
    if (!Array.isArray(options?.tiers) || options.tiers.length === 0) {
      badOption(c, "tiers", "a non-empty array of stores", options?.tiers);
    }
    const ttl = options.ttl ?? 24 * HOUR;
    if (!(ttl > 0)) badOption(c, "ttl", "a positive number of ms", ttl);
    const swr = options.staleWhileRevalidate ?? 0;
    if (!(swr >= 0)) badOption(c, "staleWhileRevalidate", "a number of ms >= 0", swr);
    const policy = options.policy ?? "exact";
    if (!["exact", "table", "none"].includes(policy)) {
      badOption(c, "policy", '"exact", "table" or "none"', policy);
    }
    this.tiers = options.tiers;
    this.#ttl = ttl;
    this.#swr = swr;
    this.policy = policy;
    this.#schema = options.schema;
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger ?? { warn: (m, e) => console.warn(m, e ?? "") };
    this.#fenceSize = options.fenceLogSize ?? 1024;
    this.#tierStats = options.tiers.map((t) => ({ name: t.name, hits: 0, misses: 0, errors: 0 }));
    // An entry the last tier evicts is gone from the cache: drop its registration (and any
    // copy above, which would otherwise be served without one).
    const last = options.tiers[options.tiers.length - 1];
    if (last && isEvicting(last)) {
      last.onEvict((key) => {
        if (this.tiers.length === 1) this.index.remove(key);
        else void this.#remove(new Set([key])); // faults are handled (and counted) there
      });
    }
    const first = options.tiers[0];
    this.#front = first && isSync(first) ? first : undefined;
    if (options.rehydrate !== false) {
      this.#rehydrate = {
        concurrency: options.rehydrate?.concurrency ?? 4,
        minHits: options.rehydrate?.minHits ?? 2,
      };
    }
  }

  /** Sets the schema the planner uses (the data API knows it only after connecting). */
  setSchema(schema: PlanSchema): void {
    this.#schema = schema;
  }

  /**
   * The synchronous hit path: the first tier's entry if it is fresh, else undefined.
   * Only when the first tier is a SyncStore (memory).
   */
  peek(key: string, options?: LookupOptions): CacheEntry | undefined {
    if (!this.#front || (this.#undeleted.size > 0 && this.#undeleted.get(0)?.has(key))) {
      return undefined;
    }
    const entry = this.#front.peek(key);
    if (!entry || entry.freshUntil <= this.#now()) return undefined;
    this.#tierStats[0]!.hits++;
    if (options?.count !== false) this.countRead(key, "hit");
    return entry;
  }

  /** Looks a key up through the tiers; fresh or stale-but-servable entries only. */
  async getEntry(key: string, options?: LookupOptions): Promise<CacheEntry | undefined> {
    const found = await this.#lookup(key);
    if (!found) return undefined;
    if (options?.count !== false) {
      this.countRead(key, found.entry.freshUntil > this.#now() ? "hit" : "stale");
    }
    return found.entry;
  }

  /**
   * Counts a read its caller answered itself (after a lookup with `count: false`): an
   * HTTP proxy decides hit, stale or miss from the request as well as the entry.
   */
  countRead(key: string, status: ResolveStatus): void {
    if (status === "hit") {
      this.#counters.hits++;
      this.index.touch(key);
    } else if (status === "stale") this.#counters.staleHits++;
    else this.#counters.misses++;
  }

  /**
   * The write fence's position. A loader that takes it before reading its source and
   * passes it to `storeLoaded` never stores what an invalidation since then may have made
   * stale.
   */
  get sequence(): number {
    return this.#seq;
  }

  /**
   * Runs a source read, counting it in the stats (loads, load errors, source latency).
   * For callers with a single flight of their own; `resolve` does this itself.
   */
  async measureLoad<T>(load: () => Promise<T>): Promise<T> {
    // performance.now: sub-millisecond and monotonic (the TTL clock may be a fake one).
    const started = performance.now();
    this.#counters.loads++;
    try {
      const value = await load();
      this.#latency.record(performance.now() - started);
      return value;
    } catch (err) {
      this.#counters.loadErrors++;
      throw err;
    }
  }

  /**
   * Stores what a load read, unless an invalidation since `since` (a `sequence`) concerns
   * it: the write fence. Returns the entry either way, and whether it was stored.
   */
  async storeLoaded(
    key: string,
    init: EntryInit,
    since: number,
  ): Promise<{ entry: CacheEntry; stored: boolean }> {
    const entry = await this.#build(init);
    if (init.cacheable === false) return { entry, stored: false };
    if (this.#conflicts(since, key, entry)) {
      this.#counters.fenced++;
      return { entry, stored: false };
    }
    await this.#store(key, entry);
    // A write may have landed while the tiers were being written: check once more.
    if (this.#conflicts(since, key, entry)) {
      this.#counters.fenced++;
      await this.#remove(new Set([key]));
      return { entry, stored: false };
    }
    return { entry, stored: true };
  }

  /** Stores an entry in every tier and registers its dependencies. */
  async setEntry(key: string, init: EntryInit): Promise<CacheEntry> {
    const entry = await this.#build(init);
    await this.#store(key, entry);
    return entry;
  }

  /**
   * Returns the cached entry for `key`, or loads, stores and returns it. Concurrent misses
   * for one key share one load (single flight). A stale entry within its
   * stale-while-revalidate window is returned at once and refreshed in the background; if
   * the load fails, a stale entry is served instead of the error (stale-if-error).
   */
  async resolve(key: string, load: () => Promise<EntryInit>): Promise<Resolved> {
    const seq = this.#seq;
    const found = await this.#lookup(key, seq);
    const now = this.#now();
    if (found && found.entry.freshUntil > now) {
      this.#counters.hits++;
      this.index.touch(key);
      return { entry: found.entry, status: "hit", tier: found.tier };
    }
    if (found) {
      this.#counters.staleHits++;
      this.#load(key, load).catch(() => {}); // counted and logged in #load
      return { entry: found.entry, status: "stale", tier: found.tier };
    }
    this.#counters.misses++;
    return this.#load(key, load);
  }

  /**
   * JSON values through the cache.
   *
   * @example
   * const n = await cache.getOrSet("count", async () => 42, { ttl: 60_000, tags: ["counts"] });
   */
  async getOrSet<T>(
    key: string,
    load: () => T | Promise<T>,
    options: JsonOptions = {},
  ): Promise<T> {
    const { entry } = await this.resolve(key, async () => jsonInit(await load(), options));
    return jsonValue(entry);
  }

  async get<T>(key: string): Promise<T | undefined> {
    const entry = await this.getEntry(key);
    return entry ? jsonValue(entry) : undefined;
  }

  async set(key: string, value: unknown, options: JsonOptions = {}): Promise<void> {
    this.#fenceOp({ keys: new Set([key]) });
    await this.setEntry(key, jsonInit(value, options));
  }

  async delete(key: string): Promise<boolean> {
    return (await this.invalidate({ keys: [key] })) > 0;
  }

  /** Removes keys by key, prefix or tag from every tier; resolves with how many existed. */
  async invalidate(request: InvalidateRequest): Promise<number> {
    const keys = new Set<string>(request.keys ?? []);
    if (request.keys?.length) this.#fenceOp({ keys: new Set(request.keys) });
    if (request.tags?.length) {
      this.#fenceOp({ tags: new Set(request.tags) });
      for (const tag of request.tags) for (const k of this.index.keysForTag(tag)) keys.add(k);
    }
    if (request.prefix !== undefined) {
      this.#fenceOp({ prefix: request.prefix });
      for (const k of this.index.keys(request.prefix)) keys.add(k);
      // Tiers may hold keys the index never saw (another process's SQLite file).
      for (const tier of this.tiers) {
        if (!isListable(tier)) continue;
        try {
          for await (const k of tier.keys(request.prefix)) keys.add(k);
        } catch (err) {
          this.#fault(this.tiers.indexOf(tier), "keys", err);
        }
      }
    }
    return this.#remove(keys);
  }

  /**
   * Applies a write the source has committed (one row change, or several made by one
   * statement): plans the affected keys and removes them from every tier before
   * resolving, so the write can be acknowledged after this.
   *
   * `refetch` re-runs the read behind a key; hot invalidated keys are rehydrated with it.
   * `patch` computes an entry's value after the write from its cached value, without the
   * source (a row changed in place in a list that keeps its order): such entries are put
   * back at once, so the next read is a hit that cost no query. It is only asked of
   * entries in the first tier, and returns undefined where it cannot tell.
   */
  async applyWrite(
    events: WriteEvent | readonly WriteEvent[],
    options?: ApplyWriteOptions | ((key: string) => Promise<unknown>),
  ): Promise<{ keys: string[]; fallback: boolean; patched: number }> {
    const { refetch, patch } =
      typeof options === "function" ? { refetch: options } : (options ?? {});
    const list = Array.isArray(events) ? events : [events as WriteEvent];
    const schema = this.#schema ?? NO_SCHEMA;
    const keys = new Set<string>();
    let fallback = false;
    for (const event of list) {
      this.#counters.writes++;
      // Logged before anything awaits, so a load that read the pre-write row sees it.
      this.#fenceOp({ event });
      const plan = planWrite(event, schema, this.index, this.policy);
      for (const k of plan.keys) keys.add(k);
      fallback ||= plan.fallback;
    }
    // Patches are computed now, from what the first tier holds before the removal below;
    // they are stored like a load that began after the write, so the fence refuses one
    // that a later write overtakes.
    const seq = this.#seq;
    const patches =
      patch && !fallback && this.policy === "exact"
        ? this.#patches(keys, list, patch)
        : new Map<string, EntryInit>();
    const hot: string[] = [];
    if (refetch && this.#rehydrate) {
      for (const k of keys) {
        if (patches.has(k)) continue;
        if ((this.index.get(k)?.hits ?? 0) >= this.#rehydrate.minHits) hot.push(k);
      }
    }
    await this.#remove(keys);
    let patched = 0;
    for (const [k, init] of patches) {
      if ((await this.storeLoaded(k, init, seq)).stored) {
        this.#counters.patches++;
        patched++;
      }
    }
    for (const k of hot) this.#scheduleRehydrate(k, refetch!);
    return { keys: [...keys], fallback, patched };
  }

  /** Waits until queued rehydrations have finished (tests, graceful shutdown). */
  async drain(): Promise<void> {
    while (this.#rehydrating > 0 || this.#rehydrateQueue.length > 0 || this.#inflight.size > 0) {
      await Promise.allSettled([...this.#inflight.values()].map((f) => f.promise));
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /**
   * Rebuilds the dependency index from the listable tiers (after a restart, the SQLite
   * tier holds entries the new process has never seen).
   */
  async restore(): Promise<number> {
    let n = 0;
    for (let i = 0; i < this.tiers.length; i++) {
      const tier = this.tiers[i]!;
      if (!isListable(tier)) continue;
      try {
        for await (const key of tier.keys("")) {
          if (this.index.has(key)) continue;
          const entry = await tier.get(key).catch(() => undefined);
          if (entry) {
            this.index.add(key, entry.tags, entry.lists ?? [], entry.staleUntil);
            n++;
          } else {
            // Unreadable (or just expired): it must not be served unregistered.
            await tier.delete([key]);
          }
        }
      } catch (err) {
        // Entries the index could not learn of may remain: never read this tier again.
        this.#untrusted.add(i);
        this.#fault(i, "restore", err);
      }
    }
    return n;
  }

  stats(): CacheStats {
    const now = this.#now();
    this.index.sweep(now);
    return {
      ...this.#counters,
      indexedKeys: this.index.size,
      sourceLatencyMs: this.#latency.summary(),
      tiers: this.tiers.map((tier, i) => {
        const s = { ...this.#tierStats[i]! };
        if (!isMeasured(tier)) return s;
        try {
          return { ...s, ...tier.size() };
        } catch (err) {
          this.#fault(i, "size", err);
          return s;
        }
      }),
    };
  }

  // --- internals ---------------------------------------------------------------------

  async #lookup(
    key: string,
    seq = this.#seq,
  ): Promise<{ entry: CacheEntry; tier: string } | undefined> {
    const now = this.#now();
    for (let i = 0; i < this.tiers.length; i++) {
      const tier = this.tiers[i]!;
      const stats = this.#tierStats[i]!;
      if (this.#untrusted.has(i)) continue;
      if (this.#undeleted.size > 0 && this.#undeleted.get(i)?.has(key)) continue;
      let entry: CacheEntry | undefined;
      try {
        entry = await tier.get(key);
      } catch (err) {
        this.#fault(i, "get", err);
        continue;
      }
      if (!entry || entry.staleUntil <= now) {
        stats.misses++;
        continue;
      }
      stats.hits++;
      if (i > 0) {
        if (!this.index.has(key)) {
          this.index.add(key, entry.tags, entry.lists ?? [], entry.staleUntil);
        }
        // Back-fill the tiers above, unless an invalidation overlapped the read; and check
        // again after, since a write may land while an asynchronous tier is being written.
        if (!this.#conflicts(seq, key, entry)) {
          await this.#storeIn(key, entry, i);
          if (this.#conflicts(seq, key, entry)) await this.#remove(new Set([key]));
        }
      }
      return { entry, tier: tier.name };
    }
    return undefined;
  }

  async #load(key: string, load: () => Promise<EntryInit>): Promise<Resolved> {
    const running = this.#inflight.get(key);
    if (running) {
      const result = await running.promise;
      // Joining a load that began before an invalidation could hand this reader data older
      // than a write it already saw acknowledged: check, and load again if so.
      if (!this.#conflicts(running.seq, key, result.entry)) return result;
      return this.#load(key, load);
    }
    const promise = this.#runLoad(key, load).finally(() => {
      if (this.#inflight.get(key)?.promise === promise) this.#inflight.delete(key);
    });
    this.#inflight.set(key, { promise, seq: this.#seq });
    return promise;
  }

  async #runLoad(key: string, load: () => Promise<EntryInit>): Promise<Resolved> {
    const seq = this.#seq;
    let init: EntryInit;
    try {
      init = await this.measureLoad(load);
    } catch (err) {
      // stale-if-error: an entry still inside its stale window beats an error.
      const stale = await this.#lookup(key, seq).catch(() => undefined);
      if (stale) return { entry: stale.entry, status: "stale", tier: stale.tier };
      throw err;
    }
    const { entry, stored } = await this.storeLoaded(key, init, seq);
    return { entry, status: "miss", stored };
  }

  async #build(init: EntryInit): Promise<CacheEntry> {
    const now = this.#now();
    const body = typeof init.body === "string" ? this.#encoder.encode(init.body) : init.body;
    const ttl = init.ttl ?? this.#ttl;
    const swr = init.staleWhileRevalidate ?? this.#swr;
    const entry: CacheEntry = {
      body,
      headers: init.headers ?? {},
      status: init.status ?? 200,
      createdAt: now - (init.age ?? 0),
      freshUntil: now + ttl,
      staleUntil: now + ttl + swr,
      etag: init.etag ?? (await strongEtag(body)),
      tags: init.tags ?? [],
    };
    if (init.lists?.length) entry.lists = init.lists;
    if (init.meta !== undefined) entry.meta = init.meta;
    return entry;
  }

  async #store(key: string, entry: CacheEntry): Promise<void> {
    this.index.add(key, entry.tags, entry.lists ?? [], entry.staleUntil);
    // Registrations of entries that expired everywhere go now and then, not per request.
    if (++this.#stores % SWEEP_EVERY === 0) this.index.sweep(this.#now());
    await this.#storeIn(key, entry, this.tiers.length);
  }

  /** Writes the entry into tiers [0, end). */
  async #storeIn(key: string, entry: CacheEntry, end: number): Promise<void> {
    const ttl = entry.staleUntil - this.#now();
    if (ttl <= 0) return;
    await Promise.all(
      this.tiers.slice(0, end).map(async (tier, i) => {
        try {
          await tier.set(key, entry, ttl);
        } catch (err) {
          this.#fault(i, "set", err);
        }
      }),
    );
  }

  async #remove(keys: ReadonlySet<string>): Promise<number> {
    if (keys.size === 0) return 0;
    const list = [...keys];
    for (const k of list) this.index.remove(k);
    const counts = await Promise.all(
      this.tiers.map(async (tier, i) => {
        const pending = this.#undeleted.get(i);
        const batch = pending ? [...new Set([...list, ...pending])] : list;
        try {
          const n = await tier.delete(batch);
          // Only the keys this batch deleted are cleared: others may have failed meanwhile.
          const skip = this.#undeleted.get(i);
          if (skip) {
            for (const k of batch) skip.delete(k);
            if (skip.size === 0) this.#undeleted.delete(i);
          }
          return n;
        } catch (err) {
          // The tier may still hold what was invalidated: reads skip it for these keys
          // until a later delete succeeds, so a fault costs hits, never a stale read.
          this.#fault(i, "delete", err);
          const skip = this.#undeleted.get(i) ?? new Set<string>();
          for (const k of list) skip.add(k);
          this.#undeleted.set(i, skip);
          return 0;
        }
      }),
    );
    const removed = Math.max(...counts);
    this.#counters.invalidations += removed;
    return removed;
  }

  #fenceOp(op: FenceBody): void {
    this.#seq++;
    this.#fence.push({ ...op, seq: this.#seq });
    if (this.#fence.length > this.#fenceSize) this.#fence.splice(0, this.#fence.length / 2);
  }

  /** Whether an invalidation since `seq` may have made `entry` (read under `key`) stale. */
  #conflicts(seq: number, key: string, entry: CacheEntry): boolean {
    if (seq === this.#seq) return false;
    const oldest = this.#fence[0]?.seq ?? this.#seq + 1;
    if (oldest > seq + 1) return true; // the log no longer reaches back that far
    const tags = new Set(entry.tags);
    const lists = entry.lists ?? [];
    const single = {
      keysForTag: (tag: string) => (tags.has(tag) ? [key] : []),
      listsOn: (table: string) =>
        lists.filter((l) => l.table === table).map((l) => [key, l] as const),
    };
    const schema = this.#schema ?? NO_SCHEMA;
    for (const op of this.#fence) {
      if (op.seq <= seq) continue;
      if ("keys" in op && op.keys.has(key)) return true;
      if ("prefix" in op && key.startsWith(op.prefix)) return true;
      if ("tags" in op && entry.tags.some((t) => op.tags.has(t))) return true;
      if ("event" in op && planWrite(op.event, schema, single, this.policy).keys.size > 0) {
        return true;
      }
    }
    return false;
  }

  /** What `patch` makes of the planned keys the first tier holds fresh; synchronous. */
  #patches(
    keys: ReadonlySet<string>,
    events: readonly WriteEvent[],
    patch: NonNullable<ApplyWriteOptions["patch"]>,
  ): Map<string, EntryInit> {
    const out = new Map<string, EntryInit>();
    const front = this.#front;
    if (!front) return out;
    const now = this.#now();
    const peek = (key: string) => {
      if (this.#undeleted.get(0)?.has(key)) return undefined;
      const entry = front.peek(key);
      return entry && entry.freshUntil > now ? entry : undefined;
    };
    for (const key of keys) {
      const current = peek(key);
      if (!current) continue;
      let init: EntryInit | undefined;
      try {
        init = patch(key, current, events, peek);
      } catch (err) {
        this.#warnOnce("patch", "[edgecache] [cache] patch failed; the entry is invalidated", err);
      }
      if (!init) continue;
      // A patched entry keeps the expiry of the one it came from: the TTL still bounds how
      // long a change that bypassed edgecache can go unseen.
      out.set(key, {
        ...init,
        ttl: current.freshUntil - now,
        staleWhileRevalidate: current.staleUntil - current.freshUntil,
      });
    }
    return out;
  }

  #scheduleRehydrate(key: string, refetch: (key: string) => Promise<unknown>): void {
    this.#rehydrateQueue.push(async () => {
      this.#counters.rehydrations++;
      await refetch(key);
    });
    this.#pump();
  }

  #pump(): void {
    const limit = this.#rehydrate?.concurrency ?? 1;
    while (this.#rehydrating < limit && this.#rehydrateQueue.length > 0) {
      const job = this.#rehydrateQueue.shift()!;
      this.#rehydrating++;
      job()
        .catch((err) => this.#warnOnce("rehydrate", "[edgecache] [cache] rehydration failed", err))
        .finally(() => {
          this.#rehydrating--;
          this.#pump();
        });
    }
  }

  #fault(tierIndex: number, op: string, err: unknown): void {
    const stats = this.#tierStats[tierIndex];
    if (stats) stats.errors++;
    const name = this.tiers[tierIndex]?.name ?? "tier";
    this.#warnOnce(`${name}:${op}`, `[edgecache] [${name}] ${op} failed; counted in stats`, err);
  }

  #warnOnce(id: string, message: string, err: unknown): void {
    if (this.#warned.has(id)) return;
    this.#warned.add(id);
    this.#logger.warn(message, err);
  }
}

/** Options of the JSON helpers (get, set, getOrSet). */
export interface JsonOptions {
  ttl?: number;
  staleWhileRevalidate?: number;
  tags?: string[];
}

const JSON_TYPE = { "content-type": "application/json" };
const decoder = new TextDecoder();

function jsonInit(value: unknown, options: JsonOptions): EntryInit {
  return { ...options, body: JSON.stringify(value ?? null), headers: JSON_TYPE };
}

function jsonValue<T>(entry: CacheEntry): T {
  return JSON.parse(decoder.decode(entry.body)) as T;
}

export function createCache(options: CacheOptions): Cache {
  return new Cache(options);
}

/** A strong ETag from the body's SHA-256 (RFC 9110 8.8.3: same bytes, same tag). */
export async function strongEtag(body: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
  let hex = "";
  for (let i = 0; i < 12; i++) hex += digest[i]!.toString(16).padStart(2, "0");
  return `"${hex}"`;
}
