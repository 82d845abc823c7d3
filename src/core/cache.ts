import type {
  ChangeLog,
  ChangeOp,
  ChangeRecord,
  LogPosition,
  LogStart,
  WriteTurn,
} from "../log/contract.ts";
import { localChangeLog } from "../log/in-process.ts";
import { CoarseClock } from "./coarse-clock.ts";
import { encodeValue, entryValue } from "./codec.ts";
import { DependencyIndex, type HitCount } from "./deps/index.ts";
import {
  type DependencyLookup,
  type InvalidationPolicy,
  type ListDependency,
  type PlanRule,
  type PlanRules,
  type PlanSchema,
  planWrite,
  type WriteEvent,
} from "./deps/planner.ts";
import { sha256Hex } from "./digest.ts";
import type { CacheEntry } from "./entry.ts";
import { badOption, EdgecacheError } from "./errors.ts";
import { WriteFence } from "./fence.ts";
import { Namespace, type NamespaceOptions } from "./namespace.ts";
import { isNegative, NegativeQuota } from "./negative.ts";
import { type KeyPattern, keyPattern } from "./pattern.ts";
import { type ChangeSummary, RecentChanges } from "./recent-changes.ts";
import { inChunks, PendingRemovals, REMOVE_CHUNK, yieldToLoop } from "./removal.ts";
import { rateLimited } from "./report.ts";
import { type CacheObserver, type CacheStats, LatencyRecorder, type TierStats } from "./stats.ts";
import {
  isBatch,
  isClosable,
  isEvicting,
  isListable,
  isMeasured,
  isSync,
  type Store,
  type SyncStore,
} from "./store.ts";
import { type WarmOptions, type WarmResult, warm } from "./warm.ts";

/** An entry a lookup found, and the tier that held it. */
interface Found {
  entry: CacheEntry;
  tier: string;
}

const HOUR = 3_600_000;
const SWEEP_EVERY = 4096;
/** Results of recent records this node applied, kept for the appender to collect. */
const RECENT_RESULTS = 1024;
/** How long a write waits for the change log to be reachable before it is refused. */
const WRITE_WAIT_MS = 5000;
/**
 * How long a node whose shared-tier copy is refused waits for the node that claimed its
 * reload (another reader, or the rehydration after the write) before loading it itself:
 * a load takes milliseconds, so most waits end with the new copy, and one that does not
 * costs a miss, as without waiting.
 */
const RELOAD_WAIT_MS = 50;
const RELOAD_POLL_MS = 4;
/** Tiers past this many are not tracked for the index (a bit each in a 32-bit mask). */
const MAX_TRACKED_TIERS = 30;
/** Cached 404s and 410s kept at once, by default. */
const DEFAULT_MAX_NEGATIVE = 10_000;
/** Without a schema every write falls back to its table. */
const NO_SCHEMA: PlanSchema = { primaryKey: () => undefined, joinColumns: () => [] };
/** A lookup that finds nothing: planning against it tells only whether a write is exact. */
const NO_DEPENDENCIES: DependencyLookup = { keysForTag: () => [], listsOn: () => [] };

export interface CacheOptions {
  /**
   * Tiers, fastest first. Reads fall through and back-fill the tiers above. The first is
   * this node's own (memory): its entries are trusted, and dropped when the node misses
   * log records. Entries read from any later tier are checked against the log.
   */
  tiers: Store[];
  /** Default time to live in ms (24 hours). */
  ttl?: number;
  /** Default stale-while-revalidate window after the TTL, in ms (0). */
  staleWhileRevalidate?: number;
  /** How writes invalidate: "exact" (default), "table" or "none" (TTL only). */
  policy?: InvalidationPolicy;
  /** What the planner knows of the data API's schema; without it writes fall back to tables. */
  schema?: PlanSchema;
  /**
   * Cached negative results (404 and 410) kept at once, 10 000 by default: past it the least
   * recently used goes from every tier, so made-up URLs cannot crowd out real entries.
   */
  notFound?: { maxEntries?: number };
  /**
   * Background refetch of invalidated hot entries; false turns it off. `lists`: with other
   * nodes on the log and a shared tier, every invalidated list page any node held is
   * reloaded there (by one node), hot or not, so that a node which never held it finds it
   * new: hit rate for database queries (README, "Many nodes").
   */
  rehydrate?: { concurrency?: number; minHits?: number; lists?: boolean } | false;
  /**
   * Operations the write fence remembers (8192): an entry read from a shared tier whose
   * load began before the oldest is judged by its tables' last changes, which refuses more.
   */
  fenceLogSize?: number;
  /**
   * The change log every write and invalidation goes through (in-process by default). A
   * shared log (Redis) keeps several nodes exact; see `ChangeLog`.
   */
  log?: ChangeLog;
  /**
   * Runs background work (rehydration, stale-while-revalidate refreshes, deletes of
   * refused entries): a Worker passes `ctx.waitUntil`. By default the cache tracks it, and
   * `drain()` waits for it.
   */
  schedule?: (work: Promise<unknown>) => void;
  now?: () => number;
  logger?: { warn(message: string, error?: unknown): void };
  /** Told each read's tier and duration and each load's duration (latency histograms). */
  observer?: CacheObserver;
  /**
   * What each application event invalidates, named once: `emit(name, ...args)` runs the
   * rule and invalidates what it returns.
   *
   * @example
   * invalidateOn: { "content.update": (id) => ({ tags: [`content#${id}`], patterns: [`page:*:${id}`] }) }
   */
  // biome-ignore lint/suspicious/noExplicitAny: an event's arguments are the application's own
  invalidateOn?: Record<string, (...args: any[]) => InvalidateRequest>;
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
  /** How many of the cache's tiers keep it, from the first (all by default). */
  tiers?: number;
}

/** Lookup options: `count: false` leaves the hit and miss counters to the caller (`countRead`). */
export interface LookupOptions {
  count?: boolean;
  /** Only the first `tiers` tiers are asked (all by default). */
  tiers?: number;
}

/** What the owner of the entries (the data API) does when a write reaches this node. */
export interface WriteHooks {
  /** Re-runs the read behind a key (rehydration of hot invalidated entries). */
  refetch?: (key: string) => Promise<unknown>;
  /**
   * The entry's value after `events`, computed from its cached value without the source,
   * or undefined when that cannot be told exactly (the entry is then invalidated).
   * Synchronous: it sees the entry as the write found it. Asked only for records in the
   * source's commit order (`ChangeRecord.ordered`).
   *
   * `peek` shows any other fresh entry of the first tier as the write found it (a
   * neighbouring page, say). It is left out when the response may be ahead of the records
   * applied here: on a shared log, another node may have committed writes just before
   * this node loaded it, unless its load saw the source exactly (`CacheEntry.exact`).
   * Without `peek`, the patch must infer nothing from a row's absence.
   */
  patch?: (
    key: string,
    entry: CacheEntry,
    events: readonly WriteEvent[],
    peek: ((key: string) => CacheEntry | undefined) | undefined,
  ) => EntryInit | undefined;
}

/** What applying one record did on this node. */
export interface WriteResult {
  keys: string[];
  fallback: boolean;
  patched: number;
  /** Entries that existed and were removed. */
  removed: number;
}

export type ResolveStatus = "hit" | "stale" | "miss";

export interface Resolved {
  entry: CacheEntry;
  status: ResolveStatus;
  /** The tier that answered a hit. */
  tier?: string;
  /** For a miss: whether the entry was stored (false when the write fence refused it). */
  stored?: boolean;
  /** For a miss: the cache was bypassed, since this node's lease on the log lapsed. */
  bypass?: boolean;
}

/** What a write's record did on the node that made it. */
export interface AppliedWrite {
  keys: string[];
  fallback: boolean;
  patched: number;
}

export interface InvalidateRequest {
  keys?: string[];
  prefix?: string;
  tags?: string[];
  /** Key globs: `*` any run of characters, `?` one (`content:*:123:*`). */
  patterns?: string[];
}

/**
 * The tiered cache engine. Portable: Web-standard APIs only.
 *
 * @example
 * const cache = createCache({ tiers: [memoryStore()] });
 * const user = await cache.getOrSet("user:1", () => db.user(1), { tags: ["users#1"] });
 * await cache.invalidate({ tags: ["users#1"] });
 */
/** The write fence's default size, in operations (see CacheOptions.fenceLogSize). */
const DEFAULT_FENCE_OPS = 8192;

export class Cache {
  readonly tiers: readonly Store[];
  readonly index = new DependencyIndex();
  readonly policy: InvalidationPolicy;
  #ttl: number;
  #swr: number;
  #schema: PlanSchema | undefined;
  #now: () => number;
  /** The clock of `peek`: `#now`, or a coarse reading of it (CoarseClock). */
  readonly #hitNow: () => number;
  #tierStats: TierStats[];
  #counters = {
    hits: 0,
    staleHits: 0,
    misses: 0,
    bypasses: 0,
    loads: 0,
    loadErrors: 0,
    fenced: 0,
    refused: 0,
    replayed: 0,
    awaited: 0,
    writes: 0,
    invalidations: 0,
    rehydrations: 0,
    patches: 0,
    resets: 0,
  };
  #latency = new LatencyRecorder();
  readonly #recent = new RecentChanges();
  readonly #observer: CacheObserver | undefined;
  #inflight = new Map<string, { promise: Promise<Resolved>; since: LogPosition }>();
  #front: SyncStore | undefined;
  /** Whether a tier is shared with other nodes (see `Store.shared`). */
  #shared: boolean;
  /** Keys this node patched after its own write, to load again for the shared tiers. */
  #refilling = new Set<string>();
  #log: ChangeLog;
  #fence: WriteFence;
  #hooks: WriteHooks = {};
  /** What applying each recent record did, for the node that appended it to collect. */
  #results = new Map<number, Promise<WriteResult>>();
  #schedule: ((work: Promise<unknown>) => void) | undefined;
  #background = new Set<Promise<unknown>>();
  #rehydrate: { concurrency: number; minHits: number; lists: boolean } | undefined;
  #rehydrateQueue: (() => Promise<void>)[] = [];
  #rehydrating = 0;
  #report: ReturnType<typeof rateLimited>;
  /** Per tier: keys whose delete failed there; reads skip that tier for them. */
  #undeleted = new Map<number, Set<string>>();
  /** Keys a removal in progress has yet to delete everywhere; reads skip them. */
  #pending = new PendingRemovals();
  #encoder = new TextEncoder();
  #stores = 0;
  /** Tiers whose holding keeps a registration (a bit per tier): the first, and evicting ones. */
  #tracked = 1;
  #negative: NegativeQuota;
  #rules: NonNullable<CacheOptions["invalidateOn"]>;

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
    if (options.schedule !== undefined && typeof options.schedule !== "function") {
      badOption(c, "schedule", "a function", options.schedule);
    }
    const maxNegative = options.notFound?.maxEntries ?? DEFAULT_MAX_NEGATIVE;
    if (!Number.isSafeInteger(maxNegative) || maxNegative < 1) {
      badOption(c, "notFound.maxEntries", "a positive integer", maxNegative);
    }
    const rules = options.invalidateOn ?? {};
    if (typeof rules !== "object" || rules === null) {
      badOption(c, "invalidateOn", "an object of functions", rules);
    }
    for (const [name, rule] of Object.entries(rules)) {
      if (typeof rule !== "function") badOption(c, `invalidateOn.${name}`, "a function", rule);
    }
    this.#rules = rules;
    this.#negative = new NegativeQuota(maxNegative);
    this.tiers = options.tiers;
    this.#ttl = ttl;
    this.#swr = swr;
    this.policy = policy;
    this.#schema = options.schema;
    this.#now = options.now ?? Date.now;
    // The hit path's clock: coarse when the cache reads the real one (see CoarseClock).
    if (options.now === undefined) {
      const clock = new CoarseClock();
      this.#hitNow = () => clock.now();
    } else this.#hitNow = options.now;
    const logger = options.logger ?? { warn: (m, e) => console.warn(m, e ?? "") };
    this.#report = rateLimited(logger, () => performance.now());
    this.#schedule = options.schedule;
    this.#observer = options.observer;
    this.#fence = new WriteFence(
      options.fenceLogSize ?? DEFAULT_FENCE_OPS,
      (event, single) => planWrite(event, this.#planSchema(), single, this.policy).keys.size > 0,
      () => this.policy,
    );
    this.#tierStats = options.tiers.map((t) => ({ name: t.name, hits: 0, misses: 0, errors: 0 }));
    // A registration stays while a tier may hold its entry. The first tier always counts:
    // what it holds is served unchecked. A lower tier counts when it reports its evictions;
    // one that does not (Redis) needs none, since what is read from it is checked against
    // the log. So the index is bounded by the bounds of the tiers that keep one.
    options.tiers.forEach((tier, i) => {
      if (!isEvicting(tier) || i >= MAX_TRACKED_TIERS) return;
      this.#tracked |= 1 << i;
      tier.onEvict((key) => {
        if (this.index.release(key, 1 << i)) this.#negative.forget(key);
      });
    });
    const first = options.tiers[0];
    this.#front = first && isSync(first) ? first : undefined;
    this.#shared = options.tiers.some((t) => t.shared === true);
    if (options.rehydrate !== false) {
      this.#rehydrate = {
        concurrency: options.rehydrate?.concurrency ?? 4,
        minHits: options.rehydrate?.minHits ?? 2,
        lists: options.rehydrate?.lists === true,
      };
    }
    this.#log = options.log ?? localChangeLog();
    this.#log.follow({
      apply: (record) => this.#applyRecord(record),
      reset: (start) => this.#reset(start),
    });
  }

  /** Sets the schema the planner uses (the data API knows it only after connecting). */
  setSchema(schema: PlanSchema): void {
    this.#schema = schema;
  }

  /**
   * Sets what happens when a write reaches this node, whichever node made it: patches of
   * cached responses, and the refetch that rehydrates hot ones.
   */
  setWriteHooks(hooks: WriteHooks): void {
    this.#hooks = hooks;
  }

  /** The last changes this node applied (writes and invalidations), newest first. */
  recentChanges(): readonly ChangeSummary[] {
    return this.#recent.list();
  }

  /** The change log this cache follows. */
  get log(): ChangeLog {
    return this.#log;
  }

  /**
   * The synchronous hit path: the first tier's entry if it is fresh, else undefined.
   * Only when the first tier is a SyncStore (memory), and only while the lease holds.
   */
  peek(key: string, options?: LookupOptions): CacheEntry | undefined {
    if (
      !this.#front ||
      this.#pending.has(key) ||
      (this.#undeleted.size > 0 && this.#undeleted.get(0)?.has(key))
    ) {
      return undefined;
    }
    if (!this.#log.trusted()) return undefined;
    const started = this.#observer ? performance.now() : 0;
    const now = this.#hitNow();
    const entry = this.#front.peek(key, now);
    if (!entry || entry.freshUntil <= now) return undefined;
    this.#tierStats[0]!.hits++;
    this.#observer?.read(this.tiers[0]!.name, (performance.now() - started) / 1000);
    if (options?.count !== false) {
      this.#counters.hits++;
      const count = (entry as Counted)[HIT_COUNT];
      if (count !== undefined) count.hits++;
      else this.index.touch(key);
      // Only a negative result has a place in the negative quota's order.
      if (isNegative(entry.status)) this.#negative.touch(key);
    }
    return entry;
  }

  /** Looks a key up through the tiers; fresh or stale-but-servable entries only. */
  async getEntry(key: string, options?: LookupOptions): Promise<CacheEntry | undefined> {
    const found = await this.#lookup(key, this.#end(options?.tiers));
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
      this.#negative.touch(key);
    } else if (status === "stale") this.#counters.staleHits++;
    else this.#counters.misses++;
  }

  /**
   * The write fence's position: the last log record this node applied. A loader that takes
   * it before reading its source and passes it to `storeLoaded` never stores what a change
   * since then may have made stale. A new object after each record (compare by identity).
   */
  get position(): LogPosition {
    return this.#fence.position;
  }

  /**
   * How many entries this node has registered under a key prefix, or with a tag (entries
   * expired everywhere may count until the next sweep).
   */
  registered(filter: { prefix: string } | { tag: string }): number {
    let n = 0;
    const keys =
      "tag" in filter ? this.index.keysForTag(filter.tag) : this.index.keys(filter.prefix);
    for (const _ of keys) n++;
    return n;
  }

  /** Whether this node may serve from cache now (its lease on the change log holds). */
  get trusted(): boolean {
    return this.#log.trusted();
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
      const ms = performance.now() - started;
      this.#latency.record(ms);
      this.#observer?.load(ms / 1000, false);
      return value;
    } catch (err) {
      this.#counters.loadErrors++;
      this.#observer?.load((performance.now() - started) / 1000, true);
      throw err;
    }
  }

  /**
   * Stores what a load read, unless a change since `since` (a `position`) concerns it: the
   * write fence. Returns the entry either way, and whether it was stored. The entry records
   * `since`, so any node that later reads it from a shared tier can check it the same way.
   */
  async storeLoaded(
    key: string,
    init: EntryInit,
    since: LogPosition,
    options?: { memoryOnly?: boolean; exact?: boolean },
  ): Promise<{ entry: CacheEntry; stored: boolean }> {
    const entry = await this.#build(init, since);
    if (init.cacheable === false || !this.#log.trusted()) return { entry, stored: false };
    // Only patches care whether the load saw the source exactly at `since` (see patch).
    const exact =
      options?.exact ?? (this.#log.shared && this.#hooks.patch && (await this.#quiet(since)));
    if (exact) entry.exact = true;
    if (this.#fence.conflicts(since, key, entry)) {
      this.#counters.fenced++;
      return { entry, stored: false };
    }
    await this.#store(key, entry, options?.memoryOnly ? 1 : this.#end(init.tiers));
    // A write may have landed while the tiers were being written: check once more.
    if (this.#fence.conflicts(since, key, entry)) {
      this.#counters.fenced++;
      await this.#remove(new Set([key]));
      return { entry, stored: false };
    }
    return { entry, stored: true };
  }

  async #quiet(since: LogPosition): Promise<boolean> {
    try {
      return await this.#log.quietSince(since);
    } catch {
      return false; // counted by the log; the entry is merely patched by the strict rules
    }
  }

  /** Stores an entry in every tier and registers its dependencies. */
  async setEntry(key: string, init: EntryInit): Promise<CacheEntry> {
    const entry = await this.#build(init, this.#fence.position);
    await this.#store(key, entry, this.#end(init.tiers));
    return entry;
  }

  /**
   * Returns the cached entry for `key`, or loads, stores and returns it. Concurrent misses
   * for one key share one load (single flight). A stale entry within its
   * stale-while-revalidate window is returned at once and refreshed in the background; if
   * the load fails, a stale entry is served instead of the error (stale-if-error). While
   * the lease on the log has lapsed, every read goes to the source and nothing is stored.
   */
  async resolve(
    key: string,
    load: () => Promise<EntryInit>,
    options?: Pick<LookupOptions, "tiers">,
  ): Promise<Resolved> {
    if (!this.#log.trusted()) {
      this.#counters.bypasses++;
      const entry = await this.#build(await this.measureLoad(load), this.#fence.position);
      return { entry, status: "miss", stored: false, bypass: true };
    }
    // A refill (see #applyOps) loads even though this node's memory holds a patch.
    if (this.#refilling.size > 0 && this.#refilling.delete(key)) return this.#refill(key, load);
    const found = await this.#lookup(key, this.#end(options?.tiers));
    const now = this.#now();
    if (found && found.entry.freshUntil > now) {
      this.countRead(key, "hit");
      return { entry: found.entry, status: "hit", tier: found.tier };
    }
    if (found) {
      this.#counters.staleHits++;
      this.#run(this.#load(key, load)); // failures are counted and logged in #load
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
  getOrSet<T>(key: string, load: () => T | Promise<T>, options: JsonOptions = {}): Promise<T> {
    // The hit path: this node's memory, synchronously, and the value decoded once per entry
    // (not an async function: see get).
    const hit = this.peek(key);
    return hit ? resolvedValue<T>(hit) : this.#loadValue<T>(key, load, options);
  }

  async #loadValue<T>(key: string, load: () => T | Promise<T>, options: JsonOptions): Promise<T> {
    const tiers = this.#checkValueOptions(options);
    const { entry } = await this.resolve(
      key,
      async () => valueInit(key, await load(), options, tiers),
      { tiers },
    );
    return entryValue<T>(entry);
  }

  /** `tiers`: only these of the cache's tiers are asked, by name (the first ones, in order). */
  get<T>(key: string, options?: ReadOptions): Promise<T | undefined> {
    // Not an async function: a memory hit returns a resolved promise without the frame and
    // the extra promise an async function costs (about a tenth of a hit's time).
    const hit = this.peek(key);
    return hit ? resolvedValue<T>(hit) : this.#getBelow<T>(key, options);
  }

  async #getBelow<T>(key: string, options?: ReadOptions): Promise<T | undefined> {
    const tiers = options && this.#checkValueOptions(options);
    const entry = await this.getEntry(key, { tiers });
    return entry ? entryValue<T>(entry) : undefined;
  }

  /**
   * Sets a value; other nodes drop their copy of the key first (through the log). Stored
   * like a load that began after its own record, so a later set of the key on another
   * node, applied meanwhile, wins on every node.
   */
  async set(key: string, value: unknown, options: JsonOptions = {}): Promise<void> {
    const tiers = this.#checkValueOptions(options);
    const init = valueInit(key, value, options, tiers);
    const { seq } = await this.#append([{ keys: [key] }]);
    const at = this.#fence.position;
    await this.storeLoaded(key, init, { log: at.log, seq });
  }

  /**
   * A view of this cache with its own keys, tags and defaults, cleared in O(1); see Namespace.
   *
   * @example
   * const content = cache.namespace("content", { ttl: 60_000 });
   * await content.clear(); // on deploy
   */
  namespace(name: string, options?: NamespaceOptions): Namespace {
    return new Namespace(this, name, options);
  }

  async delete(key: string): Promise<boolean> {
    return (await this.invalidate({ keys: [key] })) > 0;
  }

  /**
   * Loads `keys` that are not cached yet (all of them with `refresh`), `concurrency` at a
   * time, reporting progress; failures are counted in the result, not thrown. See `warm`.
   *
   * @example
   * await cache.warm(["page:home", "page:about"], (key) => cms.page(key), { concurrency: 8 });
   */
  warm<T>(
    keys: Iterable<string>,
    load: (key: string) => T | Promise<T>,
    options?: WarmOptions,
  ): Promise<WarmResult> {
    return warm(this, keys, load, options);
  }

  /**
   * Values of several keys, in order (undefined where none is cached). Memory answers what
   * it holds; the rest is asked of each lower tier at once, in one batch where the tier has
   * one (Redis MGET, one SQLite transaction).
   */
  async getMany<T>(keys: readonly string[], options?: ReadOptions): Promise<(T | undefined)[]> {
    const tiers = options && this.#checkValueOptions(options);
    const values: (T | undefined)[] = new Array(keys.length).fill(undefined);
    const rest: number[] = [];
    keys.forEach((key, i) => {
      const hit = this.peek(key);
      if (hit) values[i] = entryValue<T>(hit);
      else rest.push(i);
    });
    if (rest.length === 0) return values;
    const found = await this.#lookupMany(
      rest.map((i) => keys[i]!),
      this.#end(tiers),
    );
    const now = this.#now();
    rest.forEach((i, j) => {
      const entry = found[j]?.entry;
      if (!entry) return;
      this.countRead(keys[i]!, entry.freshUntil > now ? "hit" : "stale");
      values[i] = entryValue<T>(entry);
    });
    return values;
  }

  /**
   * Sets several values under one change-log record: other nodes drop their copies of all
   * of them at once. Every value is checked before anything is written.
   */
  async setMany(items: readonly ({ key: string; value: unknown } & JsonOptions)[]): Promise<void> {
    const inits = items.map(({ key, value, ...options }) => {
      const tiers = this.#checkValueOptions(options);
      return { key, init: valueInit(key, value, options, tiers) };
    });
    if (inits.length === 0) return;
    const { seq } = await this.#append([{ keys: inits.map((i) => i.key) }]);
    await this.#storeLoadedMany(inits, { log: this.#fence.position.log, seq });
  }

  /** storeLoaded for several keys loaded since one position: each tier written in one batch. */
  async #storeLoadedMany(
    loaded: readonly { key: string; init: EntryInit }[],
    since: LogPosition,
  ): Promise<void> {
    const entries = await Promise.all(loaded.map(({ init }) => this.#build(init, since)));
    if (!this.#log.trusted()) return;
    const exact = this.#log.shared && this.#hooks.patch && (await this.#quiet(since));
    type Item = { key: string; entry: CacheEntry; end: number };
    const unfenced = (list: readonly Item[]) =>
      list.filter(({ key, entry }) => {
        if (!this.#fence.conflicts(since, key, entry)) return true;
        this.#counters.fenced++;
        return false;
      });
    const keep = unfenced(
      loaded.flatMap(({ key, init }, i) => {
        const entry = entries[i]!;
        if (exact) entry.exact = true;
        return init.cacheable === false ? [] : [{ key, entry, end: this.#end(init.tiers) }];
      }),
    );
    // Grouped by how many tiers keep them (one group unless the items chose tiers).
    const ends = new Map<number, Item[]>();
    for (const item of keep) {
      const group = ends.get(item.end);
      if (group) group.push(item);
      else ends.set(item.end, [item]);
    }
    await Promise.all([...ends].map(([end, list]) => this.#storeMany(list, end)));
    // A write may have landed while the tiers were being written: check once more.
    const kept = new Set(unfenced(keep));
    const fenced = keep.filter((item) => !kept.has(item)).map(({ key }) => key);
    if (fenced.length > 0) await this.#remove(new Set(fenced));
  }

  /** Deletes several keys in one record, each tier deleting them in one call; how many existed. */
  async deleteMany(keys: readonly string[]): Promise<number> {
    return this.invalidate({ keys: [...keys] });
  }

  /**
   * Invalidates what the `invalidateOn` rule for `event` returns for `args`; how many
   * entries existed here. An event without a rule is an error (a misspelt name would
   * otherwise invalidate nothing, silently).
   */
  async emit(event: string, ...args: unknown[]): Promise<number> {
    const rule = Object.hasOwn(this.#rules, event) ? this.#rules[event] : undefined;
    if (!rule) {
      const known = Object.keys(this.#rules).join(", ") || "none";
      badOption("cache", "event", `an event named in invalidateOn (${known})`, event);
    }
    return this.invalidate(rule(...args));
  }

  /**
   * Removes keys by key, prefix or tag from every tier, on every node following the log;
   * resolves with how many existed here.
   */
  async invalidate(request: InvalidateRequest): Promise<number> {
    const ops: ChangeOp[] = [];
    if (request.keys?.length) ops.push({ keys: [...request.keys] });
    if (request.tags?.length) ops.push({ tags: [...request.tags] });
    if (request.prefix !== undefined) ops.push({ prefix: request.prefix });
    for (const pattern of request.patterns ?? []) ops.push({ pattern });
    if (ops.length === 0) return 0;
    return (await this.#append(ops)).removed;
  }

  /**
   * Applies a write the source has committed (one row change, or several made by one
   * statement): appends it to the change log, and resolves once every node that may serve
   * an affected entry has removed it (or patched it, see `setWriteHooks`), so the write can
   * be acknowledged after this.
   */
  async applyWrite(events: WriteEvent | readonly WriteEvent[]): Promise<AppliedWrite> {
    const list: readonly WriteEvent[] = Array.isArray(events) ? events : [events as WriteEvent];
    const { keys, fallback, patched } = await this.#append(list.map((event) => ({ event })));
    return { keys, fallback, patched };
  }

  /**
   * Makes a write and records it: `make` runs the source's statement and, once it has
   * committed, hands its events to `record`, which resolves as `applyWrite` does. The
   * write holds the log's write turn from before the statement until its record is in, so
   * its record follows the source's commit order and may patch cached responses (a record
   * from `applyWrite` is ordered only on the in-process log). Fails with E_LOG_UNAVAILABLE,
   * before `make` runs, while the log cannot be reached.
   *
   * @example
   * const row = await cache.write(async (record) => {
   *   const { old, row } = await db.updateUser(id, values); // committed
   *   await record([{ table: "users", op: "update", old, new: row }]);
   *   return row;
   * });
   */
  async write<T>(
    make: (record: (events: readonly WriteEvent[]) => Promise<AppliedWrite>) => Promise<T>,
  ): Promise<T> {
    await this.writable();
    const turn = await this.#log.turn();
    let used = false;
    try {
      return await make(async (events) => {
        // A second record of one write has no turn left: it is appended unordered.
        const given = used ? undefined : turn;
        used = true;
        const ops = events.map((event) => ({ event }));
        const { keys, fallback, patched } = await this.#append(ops, given);
        return { keys, fallback, patched };
      });
    } finally {
      if (!used) turn?.release();
    }
  }

  /**
   * Resolves once a write may start: this node hears the change log (its lease holds).
   * A write the source commits while the log is out of reach could not be acknowledged
   * safely, so callers ask before they write; fails with E_LOG_UNAVAILABLE after `waitMs`.
   */
  async writable(waitMs = WRITE_WAIT_MS): Promise<void> {
    const until = performance.now() + waitMs;
    while (!this.#log.trusted()) {
      if (performance.now() >= until) {
        throw new EdgecacheError(
          "E_LOG_UNAVAILABLE",
          "cache",
          `the change log (${this.#log.name}) cannot be reached; the write was not made`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Runs work off the request's path through the same hook as the cache's own background
   * work (a Worker's `waitUntil`, or tracked for `drain`). Its failure is swallowed: the
   * work reports its own errors.
   */
  background(work: Promise<unknown>): void {
    this.#run(work);
  }

  /** Waits until background work has finished (tests, graceful shutdown). */
  async drain(): Promise<void> {
    while (
      this.#rehydrating > 0 ||
      this.#rehydrateQueue.length > 0 ||
      this.#inflight.size > 0 ||
      this.#background.size > 0
    ) {
      await Promise.allSettled([
        ...[...this.#inflight.values()].map((f) => f.promise),
        ...this.#background,
      ]);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /**
   * Waits for background work, then closes the change log and every tier that holds
   * resources (SQLite handles, Redis connections the stores opened). The cache is not used
   * after this.
   */
  async close(): Promise<void> {
    await this.drain();
    await this.#log.close();
    await Promise.all(
      this.tiers.map((tier, i) =>
        isClosable(tier) ? tier.close().catch((err) => this.#fault(i, "close", err)) : undefined,
      ),
    );
  }

  stats(): CacheStats {
    const now = this.#now();
    this.index.sweep(now);
    return {
      ...this.#counters,
      indexedKeys: this.index.size,
      notFound: {
        entries: this.#negative.size,
        maxEntries: this.#negative.max,
        evictions: this.#negative.evictions,
      },
      log: {
        name: this.#log.name,
        seq: this.#fence.position.seq,
        lease: this.#log.trusted(),
        failures: this.#log.failures,
      },
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

  // --- the change log ----------------------------------------------------------------

  /** Appends ops and collects what applying them did here. */
  async #append(
    ops: readonly ChangeOp[],
    turn?: WriteTurn,
  ): Promise<WriteResult & { seq: number }> {
    const seq = await this.#log.append(ops, turn);
    const result = await this.#results.get(seq);
    this.#results.delete(seq);
    return { keys: [], fallback: false, patched: 0, removed: 0, ...result, seq };
  }

  /**
   * Applies one record, in log order. Everything up to the removal from the first tier
   * happens before this returns (the memory tier deletes synchronously), so a read on this
   * node after it never sees what the record invalidated.
   */
  #applyRecord(record: ChangeRecord): Promise<unknown> {
    // Logged before anything awaits, so a load that read the pre-write row sees it.
    this.#fence.record(record);
    const result = this.#applyOps(record);
    this.#results.set(record.seq, result);
    if (this.#results.size > RECENT_RESULTS) {
      const oldest = this.#results.keys().next().value!;
      this.#results.delete(oldest);
    }
    this.#run(result);
    return result;
  }

  async #applyOps(record: ChangeRecord): Promise<WriteResult> {
    const schema = this.#planSchema();
    const keys = new Set<string>();
    const events: WriteEvent[] = [];
    const prefixes: KeyPattern[] = [];
    let fallback = false;
    const rules: PlanRules = { row: 0, predicate: 0, window: 0, table: 0 };
    const named: NonNullable<ChangeSummary["named"]> = {};
    for (const op of record.ops) {
      if ("event" in op) {
        this.#counters.writes++;
        events.push(op.event);
        const plan = planWrite(op.event, schema, this.index, this.policy);
        for (const k of plan.keys) keys.add(k);
        fallback ||= plan.fallback;
        for (const rule of Object.keys(rules) as PlanRule[]) rules[rule] += plan.rules[rule];
      } else if ("keys" in op) {
        for (const k of op.keys) keys.add(k);
        named.keys = (named.keys ?? 0) + op.keys.length;
      } else if ("tags" in op) {
        for (const tag of op.tags) for (const k of this.index.keysForTag(tag)) keys.add(k);
        named.tags = [...(named.tags ?? []), ...op.tags];
      } else {
        const match = "pattern" in op ? keyPattern(op.pattern) : undefined;
        const prefix = match?.prefix ?? (op as { prefix: string }).prefix;
        named.prefix = [...(named.prefix ?? []), "pattern" in op ? op.pattern : prefix];
        for (const k of this.index.keys(prefix)) if (!match || match.test(k)) keys.add(k);
        prefixes.push(match ?? { prefix, test: () => true });
      }
    }
    // Patches are computed now, from what the first tier holds before the removal below;
    // they are stored like a load that began after the record, so the fence refuses one
    // that a later record overtakes. They stay in this node's memory: only it knows the
    // entry it patched was current.
    const at = this.#fence.position;
    const { patch, refetch } = this.#hooks;
    // Tiers other nodes read are the writer's to clean and refill: another node's delete
    // could come after a reload stored there, and reads check them against the log anyway.
    const foreign = record.own === false && this.#shared;
    // What a node patched is reloaded into the shared tiers, by one node for all (a claim on
    // the log), so that nodes whose memory did not hold it find the new version there (a
    // patch stays in one node's memory). Not for a node alone on the log.
    const claim = this.#log.claim?.bind(this.#log);
    const refill =
      claim && this.#shared && refetch !== undefined && this.#log.nodes?.() !== 1
        ? claim
        : undefined;
    // Only with records in commit order: out of order, a patch could bring back a value a
    // later write had already replaced (a row changed and changed back).
    const patches =
      patch && record.ordered && events.length > 0 && !fallback && this.policy === "exact"
        ? this.#patches(keys, events, patch)
        : new Map<string, { init: EntryInit; exact: boolean }>();
    // Hot keys the record invalidated are loaded again. With other nodes on the log and a
    // shared tier, every node that held one hot may reload it (the writer's index does not
    // know what only other nodes read) and one claims it for all: its load goes to the
    // shared tier, where the others find it. Otherwise only the writer reloads. A node sees
    // its share of a key's reads: with n nodes, 1/n of the hits that make a key hot.
    const hot: string[] = [];
    if (refetch && this.#rehydrate && (!foreign || refill)) {
      const nodes = refill ? Math.max(1, this.#log.nodes?.() ?? 1) : 1;
      const minHits = Math.max(1, Math.ceil(this.#rehydrate.minHits / nodes));
      for (const k of keys) {
        if (patches.has(k)) continue;
        const dep = this.index.get(k);
        // A list page another node reads is one it could not patch up from the shared
        // tier (the rows that slide in are on pages it may not hold): all are reloaded.
        const list = this.#rehydrate.lists && refill && (dep?.lists.length ?? 0) > 0;
        if (list || (dep?.hits ?? 0) >= minHits) hot.push(k);
      }
    }
    const removing = this.#remove(keys, { local: foreign });
    // Tiers may hold keys the index never saw (another process wrote them): list them too.
    const unindexed = new Set<string>();
    for (const { prefix, test } of prefixes)
      for (const k of await this.#unindexed(prefix, keys, foreign)) if (test(k)) unindexed.add(k);
    let removed = await removing;
    removed += await this.#remove(unindexed, { local: foreign });
    let patched = 0;
    for (const [k, { init, exact }] of patches) {
      if ((await this.storeLoaded(k, init, at, { memoryOnly: true, exact })).stored) {
        this.#counters.patches++;
        patched++;
      }
    }
    for (const k of hot) this.#scheduleRehydrate(k, refetch!, refill && `${record.seq}:${k}`);
    if (refill) {
      for (const k of patches.keys()) {
        this.#queueReload(async () => {
          if (!(await refill(`${record.seq}:${k}`))) return;
          this.#counters.rehydrations++;
          this.#refilling.add(k);
          try {
            await refetch!(k);
          } finally {
            this.#refilling.delete(k); // when the refetch did not come through resolve
          }
        });
      }
    }
    this.#recent.push({
      at: this.#now(),
      seq: record.seq,
      cause: events.length > 0 ? "write" : "invalidate",
      ...(events.length > 0 && {
        writes: events.slice(0, 10).map((e) => ({ table: e.table, op: e.op })),
      }),
      ...(events.length === 0 && { named }),
      removed,
      patched,
      rules,
      fallback,
    });
    return { keys: [...keys, ...unindexed], fallback, patched, removed };
  }

  /**
   * The node missed records (a new log, or more than the log retains): whatever its memory
   * holds may be stale and is dropped; entries in other tiers are checked on read against
   * each table's last change.
   */
  #reset(start: LogStart): void {
    this.#counters.resets++;
    this.#fence.reset(start);
    this.#results.clear();
    const keys = new Set(this.index.keys());
    for (const k of keys) this.index.remove(k);
    const front = this.tiers[0];
    if (!front) return;
    this.#run(
      (async () => {
        if (isListable(front)) for await (const k of front.keys("")) keys.add(k);
        await front.delete([...keys]);
      })().catch((err) => this.#fault(0, "delete", err)),
    );
  }

  // --- internals ---------------------------------------------------------------------

  #planSchema(): PlanSchema {
    return this.#schema ?? NO_SCHEMA;
  }

  /** Hands background work to the scheduling hook, or tracks it for `drain`. */
  #run(work: Promise<unknown>): void {
    const settled = work.then(
      () => {},
      () => {},
    );
    if (this.#schedule) {
      this.#schedule(settled);
      return;
    }
    this.#background.add(settled);
    void settled.then(() => this.#background.delete(settled));
  }

  /**
   * Keys under `prefix` that tiers below the first hold and `known` lacks: entries another
   * process (or an earlier one) stored. The first tier is not listed: whatever it holds was
   * registered here first, and listing 100,000 keys of it would hold up every request.
   */
  async #unindexed(prefix: string, known: ReadonlySet<string>, local = false): Promise<string[]> {
    const keys: string[] = [];
    let seen = 0;
    for (let i = 1; i < this.tiers.length; i++) {
      const tier = this.tiers[i]!;
      if (!isListable(tier) || (local && tier.shared)) continue;
      try {
        for await (const k of tier.keys(prefix)) {
          if (!known.has(k)) keys.push(k);
          // A tier's pages follow one another without a turn of the event loop otherwise.
          if (++seen % REMOVE_CHUNK === 0) await yieldToLoop();
        }
      } catch (err) {
        this.#fault(i, "keys", err);
      }
    }
    return keys;
  }

  /** The entry of `key` in the first of tiers [0, end) that holds a servable one. */
  async #lookup(key: string, end = this.tiers.length): Promise<Found | undefined> {
    if (!this.#log.trusted() || this.#pending.has(key)) return undefined;
    const now = this.#now();
    const started = this.#observer ? performance.now() : 0;
    for (let i = 0; i < end; i++) {
      const tier = this.tiers[i]!;
      if (this.#undeleted.size > 0 && this.#undeleted.get(i)?.has(key)) continue;
      let entry: CacheEntry | undefined;
      try {
        entry = await tier.get(key);
      } catch (err) {
        this.#fault(i, "get", err);
        continue;
      }
      const accepted = await this.#accept(i, key, entry, now, started);
      if (accepted) return { entry: accepted, tier: tier.name };
    }
    return undefined;
  }

  /** #lookup for several keys: each tier is asked for all the keys still missing at once. */
  async #lookupMany(keys: readonly string[], end: number): Promise<(Found | undefined)[]> {
    const found = new Map<string, Found>();
    let missing = this.#log.trusted()
      ? [...new Set(keys)].filter((k) => !this.#pending.has(k))
      : [];
    const now = this.#now();
    const started = this.#observer ? performance.now() : 0;
    for (let i = 0; i < end && missing.length > 0; i++) {
      const tier = this.tiers[i]!;
      const undeleted = this.#undeleted.size > 0 ? this.#undeleted.get(i) : undefined;
      const asked = undeleted ? missing.filter((k) => !undeleted.has(k)) : missing;
      let entries: (CacheEntry | undefined)[];
      try {
        entries =
          asked.length > 1 && isBatch(tier)
            ? await tier.getMany(asked)
            : await Promise.all(asked.map((key) => tier.get(key)));
      } catch (err) {
        this.#fault(i, "get", err);
        continue;
      }
      const accepted = await Promise.all(
        asked.map((key, j) => this.#accept(i, key, entries[j], now, started)),
      );
      asked.forEach((key, j) => {
        if (accepted[j]) found.set(key, { entry: accepted[j], tier: tier.name });
      });
      missing = missing.filter((key) => !found.has(key));
    }
    return keys.map((key) => found.get(key));
  }

  /**
   * What of tier `i`'s answer for `key` may be served, counted in the tier's stats: a live
   * entry and, from below this node's memory, one valid against the log (brought up to date
   * by the write events since its position where they can patch it) and copied into the
   * tiers above.
   */
  async #accept(
    i: number,
    key: string,
    entry: CacheEntry | undefined,
    now: number,
    started: number,
    wait = true,
  ): Promise<CacheEntry | undefined> {
    const tier = this.tiers[i]!;
    const stats = this.#tierStats[i]!;
    if (!entry || entry.staleUntil <= now) {
      stats.misses++;
      return undefined;
    }
    if (i > 0) {
      // Not this node's memory: another node (or an earlier process) may have written
      // it, so it is checked against the log since the position its load began at.
      const changes =
        entry.position === undefined
          ? "unknown"
          : this.#fence.changesFor(entry.position, key, entry);
      if (changes !== "none") {
        const replayed =
          changes === "unknown" ? undefined : await this.#replay(key, entry, changes);
        if (!replayed) {
          const reloaded = wait ? await this.#awaitReload(i, key, now, started) : undefined;
          if (reloaded) return reloaded;
          stats.misses++;
          this.#counters.refused++;
          // Not when another node loads it: this delete could land after its new copy.
          if (reloaded === undefined) {
            this.#run(tier.delete([key]).catch((err) => this.#fault(i, "delete", err)));
          }
          return undefined;
        }
        this.#counters.replayed++;
        stats.hits++;
        this.#observer?.read(tier.name, (performance.now() - started) / 1000);
        return replayed;
      }
      // This tier holds it, and the back-fill below writes the tiers above.
      const held = this.#held(i + 1);
      counted(
        entry,
        this.index.hold(key, held) ??
          this.index.add(key, entry.tags, entry.lists ?? [], entry.staleUntil, held),
      );
      this.#admit(key, entry);
      // Back-fill the tiers above; check again after, since a write may land while an
      // asynchronous tier is being written.
      await this.#storeIn([{ key, entry }], i);
      if (!this.#valid(key, entry)) {
        await this.#remove(new Set([key]));
        stats.misses++;
        return undefined;
      }
    }
    stats.hits++;
    this.#observer?.read(tier.name, (performance.now() - started) / 1000);
    return entry;
  }

  /**
   * After shared tier `i`'s copy of `key` was refused: with other nodes on the log, one
   * load for all (the cluster's request coalescing). This node claims the key's reload at
   * its log position, the name the rehydration after a write claims it by too: winning,
   * it loads it itself (undefined: a miss, whose load goes to the shared tier); losing, it
   * waits up to RELOAD_WAIT_MS for the winner's copy there, and serves it if the log
   * accepts it (false when none came: a miss, but the winner's copy is not deleted).
   */
  async #awaitReload(
    i: number,
    key: string,
    now: number,
    started: number,
  ): Promise<CacheEntry | false | undefined> {
    if (!this.#shared || !this.#log.claim || (this.#log.nodes?.() ?? 1) <= 1) return undefined;
    if (await this.#log.claim(`${this.#fence.position.seq}:${key}`)) return undefined;
    const tier = this.tiers[i]!;
    const deadline = performance.now() + RELOAD_WAIT_MS;
    while (performance.now() < deadline) {
      await new Promise((done) => setTimeout(done, RELOAD_POLL_MS));
      let entry: CacheEntry | undefined;
      try {
        entry = await tier.get(key);
      } catch (err) {
        this.#fault(i, "get", err);
        return false;
      }
      if (!entry || entry.position === undefined) continue;
      if (this.#fence.changesFor(entry.position, key, entry, true) !== "none") continue;
      const accepted = await this.#accept(i, key, entry, now, started, false);
      if (accepted) {
        this.#counters.awaited++;
        return accepted;
      }
    }
    return false;
  }

  /**
   * An entry read from a shared tier, brought up to date by patching it with the write
   * events of each record since its position (`records`, in log order), as this node's
   * memory would have been patched had it held the entry all along: the same patch, without
   * `peek`, on records in commit order. The result stays in this node's memory, like every
   * patch. Undefined when a patch cannot tell, or a record applied meanwhile concerns it.
   */
  async #replay(
    key: string,
    entry: CacheEntry,
    records: readonly (readonly WriteEvent[])[],
  ): Promise<CacheEntry | undefined> {
    const { patch } = this.#hooks;
    if (!patch || this.policy !== "exact") return undefined;
    const at = this.#fence.position;
    const schema = this.#planSchema();
    const now = this.#now();
    let current = entry;
    let init: EntryInit | undefined;
    for (const events of records) {
      // A write without the rows to plan it exactly is applied by table: no patch either.
      if (events.some((e) => planWrite(e, schema, NO_DEPENDENCIES, this.policy).fallback)) {
        return undefined;
      }
      try {
        init = patch(key, current, events, undefined);
      } catch (err) {
        this.#report("patch", "[edgecache] [cache] patch failed; the entry is invalidated", err);
        return undefined;
      }
      if (!init) return undefined;
      // The patched entry keeps the expiry of the one it came from, as a patch in memory does.
      init = {
        ...init,
        ttl: entry.freshUntil - now,
        staleWhileRevalidate: entry.staleUntil - entry.freshUntil,
      };
      current = await this.#build(init, at);
    }
    const { entry: patched, stored } = await this.storeLoaded(key, init!, at, {
      memoryOnly: true,
      exact: false,
    });
    return stored ? patched : undefined;
  }

  /** Tiers [0, end) of a value's `tiers` (a count, validated already); all by default. */
  #end(tiers: number | undefined): number {
    return tiers === undefined ? this.tiers.length : Math.min(tiers, this.tiers.length);
  }

  /** Checks a value's options; returns how many tiers its `tiers` names (undefined: all). */
  #checkValueOptions(options: JsonOptions | ReadOptions): number | undefined {
    checkValueOptions(options);
    return options.tiers === undefined ? undefined : tierCount(this.tiers, options.tiers, "cache");
  }

  #valid(key: string, entry: CacheEntry): boolean {
    return entry.position !== undefined && !this.#fence.conflicts(entry.position, key, entry);
  }

  async #load(key: string, load: () => Promise<EntryInit>): Promise<Resolved> {
    const running = this.#inflight.get(key);
    if (running) {
      const result = await running.promise;
      // Joining a load that began before an invalidation could hand this reader data older
      // than a write it already saw acknowledged: check, and load again if so.
      if (!this.#fence.conflicts(running.since, key, result.entry)) return result;
      return this.#load(key, load);
    }
    const since = this.#fence.position;
    const promise = this.#runLoad(key, load, since).finally(() => {
      if (this.#inflight.get(key)?.promise === promise) this.#inflight.delete(key);
    });
    this.#inflight.set(key, { promise, since });
    return promise;
  }

  /**
   * Loads a key this node patched after its own write and stores the result in the shared
   * tiers only: this node's memory keeps the patch (exact, where the load may not be), and
   * other nodes find the new version instead of a miss.
   */
  async #refill(key: string, load: () => Promise<EntryInit>): Promise<Resolved> {
    const since = this.#fence.position;
    const entry = await this.#build(await this.measureLoad(load), since);
    const shared = this.tiers.flatMap((tier, i) => (tier.shared ? [i] : []));
    const conflicts = () => this.#fence.conflicts(since, key, entry);
    if (!this.#log.trusted() || conflicts()) return { entry, status: "miss", stored: false };
    if (this.#hooks.patch && (await this.#quiet(since))) entry.exact = true;
    const ttl = entry.staleUntil - this.#now();
    await Promise.all(
      shared.map((i) =>
        this.tiers[i]!.set(key, entry, ttl).catch((err) => this.#fault(i, "set", err)),
      ),
    );
    // A write may have landed meanwhile: its record's removal may have come first.
    if (conflicts()) {
      await Promise.all(
        shared.map((i) =>
          this.tiers[i]!.delete([key]).catch((err) => this.#fault(i, "delete", err)),
        ),
      );
      return { entry, status: "miss", stored: false };
    }
    return { entry, status: "miss", stored: true };
  }

  async #runLoad(
    key: string,
    load: () => Promise<EntryInit>,
    since: LogPosition,
  ): Promise<Resolved> {
    let init: EntryInit;
    try {
      init = await this.measureLoad(load);
    } catch (err) {
      // stale-if-error: an entry still inside its stale window beats an error.
      const stale = await this.#lookup(key).catch(() => undefined);
      if (stale) return { entry: stale.entry, status: "stale", tier: stale.tier };
      throw err;
    }
    const { entry, stored } = await this.storeLoaded(key, init, since);
    return { entry, status: "miss", stored };
  }

  async #build(init: EntryInit, position: LogPosition): Promise<CacheEntry> {
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
      position,
    };
    if (init.lists?.length) entry.lists = init.lists;
    if (init.meta !== undefined) entry.meta = init.meta;
    return entry;
  }

  /** The tracked tiers among [0, end), as `index.add` takes them. */
  #held(end: number): number {
    return this.#tracked & (2 ** Math.min(end, MAX_TRACKED_TIERS) - 1);
  }

  /** Registers the entry and writes it into tiers [0, end). */
  async #store(key: string, entry: CacheEntry, end: number): Promise<void> {
    await this.#storeMany([{ key, entry }], end);
  }

  /** Registers the entries and writes them into tiers [0, end), a batch per tier. */
  async #storeMany(
    list: readonly { key: string; entry: CacheEntry }[],
    end: number,
  ): Promise<void> {
    for (const { key, entry } of list) {
      counted(
        entry,
        this.index.add(key, entry.tags, entry.lists ?? [], entry.staleUntil, this.#held(end)),
      );
      this.#admit(key, entry);
      // Registrations of entries that expired everywhere go now and then, not per request.
      if (++this.#stores % SWEEP_EVERY === 0) this.index.sweep(this.#now());
    }
    await this.#storeIn(list, end);
  }

  /** Counts a negative result against its quota; the least recently used past it goes. */
  #admit(key: string, entry: CacheEntry): void {
    if (!isNegative(entry.status)) {
      this.#negative.forget(key);
      return;
    }
    const out = this.#negative.admit(key);
    if (out !== undefined) this.#run(this.#remove(new Set([out]), { invalidation: false }));
  }

  /** Writes the entries into tiers [0, end): one batch per tier that has batches. */
  async #storeIn(list: readonly { key: string; entry: CacheEntry }[], end: number): Promise<void> {
    const now = this.#now();
    const writes = list
      .map(({ key, entry }) => ({ key, entry, ttlMs: entry.staleUntil - now }))
      .filter((w) => w.ttlMs > 0);
    if (writes.length === 0) return;
    await Promise.all(
      this.tiers.slice(0, end).map(async (tier, i) => {
        try {
          if (writes.length > 1 && isBatch(tier)) await tier.setMany(writes);
          else await Promise.all(writes.map((w) => tier.set(w.key, w.entry, w.ttlMs)));
        } catch (err) {
          this.#fault(i, "set", err);
        }
      }),
    );
  }

  /**
   * Removes keys from the index and every tier; resolves with how many existed (counted as
   * invalidations unless told otherwise). Reads skip the keys from the call on, and many
   * keys go a chunk at a time, so other requests run meanwhile. `keys` must not change
   * until it resolves.
   */
  async #remove(
    keys: ReadonlySet<string>,
    options?: { invalidation?: boolean; local?: boolean },
  ): Promise<number> {
    if (keys.size === 0) return 0;
    this.#pending.add(keys);
    let removed = 0;
    try {
      await inChunks([...keys], async (chunk) => {
        removed += await this.#removeNow(chunk, options?.local);
      });
    } finally {
      this.#pending.delete(keys);
    }
    if (options?.invalidation !== false) this.#counters.invalidations += removed;
    return removed;
  }

  /**
   * Removes keys from the index and every tier (`local`: but the shared ones); resolves
   * with how many existed.
   */
  async #removeNow(list: readonly string[], local = false): Promise<number> {
    for (const k of list) {
      this.index.remove(k);
      this.#negative.forget(k);
    }
    const counts = await Promise.all(
      this.tiers.map(async (tier, i) => {
        if (local && tier.shared) return 0;
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
    return Math.max(...counts);
  }

  /** What `patch` makes of the planned keys the first tier holds fresh; synchronous. */
  #patches(
    keys: ReadonlySet<string>,
    events: readonly WriteEvent[],
    patch: NonNullable<WriteHooks["patch"]>,
  ): Map<string, { init: EntryInit; exact: boolean }> {
    const out = new Map<string, { init: EntryInit; exact: boolean }>();
    const front = this.#front;
    if (!front) return out;
    const now = this.#now();
    const peek = (key: string) => {
      if (this.#pending.has(key) || this.#undeleted.get(0)?.has(key)) return undefined;
      const entry = front.peek(key);
      return entry && entry.freshUntil > now ? entry : undefined;
    };
    // On a shared log a response may be ahead of the records applied here, unless its load
    // saw the source exactly (see CacheEntry.exact): only then, and only among such
    // responses, may a patch look at other entries.
    const shared = this.#log.shared;
    const exactPeek = (key: string) => {
      const entry = peek(key);
      return entry?.exact ? entry : undefined;
    };
    for (const key of keys) {
      const current = peek(key);
      if (!current) continue;
      const exact = !shared || current.exact === true;
      let init: EntryInit | undefined;
      try {
        init = patch(key, current, events, exact ? (shared ? exactPeek : peek) : undefined);
      } catch (err) {
        this.#report("patch", "[edgecache] [cache] patch failed; the entry is invalidated", err);
      }
      if (!init) continue;
      // A patched entry keeps the expiry of the one it came from: the TTL still bounds how
      // long a change that bypassed edgecache can go unseen.
      out.set(key, {
        init: {
          ...init,
          ttl: current.freshUntil - now,
          staleWhileRevalidate: current.staleUntil - current.freshUntil,
        },
        exact: shared && exact,
      });
    }
    return out;
  }

  /** Queues a reload of `key`; with `claim`, only if this node wins that claim on the log. */
  #scheduleRehydrate(
    key: string,
    refetch: (key: string) => Promise<unknown>,
    claim?: string,
  ): void {
    this.#queueReload(async () => {
      if (claim !== undefined && !(await this.#log.claim!(claim))) return;
      this.#counters.rehydrations++;
      await refetch(key);
    });
  }

  /** Queues a reload behind earlier ones, `rehydrate.concurrency` at a time. */
  #queueReload(job: () => Promise<void>): void {
    this.#rehydrateQueue.push(job);
    this.#pump();
  }

  #pump(): void {
    const limit = this.#rehydrate?.concurrency ?? 1;
    while (this.#rehydrating < limit && this.#rehydrateQueue.length > 0) {
      const job = this.#rehydrateQueue.shift()!;
      this.#rehydrating++;
      this.#run(
        job()
          .catch((err) => this.#report("rehydrate", "[edgecache] [cache] rehydration failed", err))
          .finally(() => {
            this.#rehydrating--;
            this.#pump();
          }),
      );
    }
  }

  #fault(tierIndex: number, op: string, err: unknown): void {
    const stats = this.#tierStats[tierIndex];
    if (stats) stats.errors++;
    const name = this.tiers[tierIndex]?.name ?? "tier";
    this.#report(`${name}:${op}`, `[edgecache] [${name}] ${op} failed; counted in stats`, err);
  }
}

/** Options of the value helpers (get, set, getOrSet). */
export interface JsonOptions {
  /** ms; the cache's default otherwise. */
  ttl?: number;
  staleWhileRevalidate?: number;
  tags?: string[];
  /**
   * The tiers that keep the value, by name: the first ones of the cache, in order
   * (`["memory"]`: this node's memory only; `["memory", "kv"]` of memory, KV, D1). All by
   * default. Reads with the same `tiers` ask only those.
   */
  tiers?: readonly string[];
}

/** Options of a read: the tiers asked (see `JsonOptions.tiers`). */
export type ReadOptions = Pick<JsonOptions, "tiers">;

function checkValueOptions(options: JsonOptions): void {
  const c = "cache";
  if (typeof options !== "object" || options === null)
    badOption(c, "options", "an object", options);
  const { ttl, staleWhileRevalidate: swr, tags } = options;
  if (ttl !== undefined && !(ttl > 0)) badOption(c, "ttl", "a positive number of ms", ttl);
  if (swr !== undefined && !(swr >= 0)) {
    badOption(c, "staleWhileRevalidate", "a number of ms >= 0", swr);
  }
  if (tags !== undefined && !(Array.isArray(tags) && tags.every((t) => typeof t === "string"))) {
    badOption(c, "tags", "an array of strings", tags);
  }
}

/**
 * How many tiers `names` names: they must be the first tiers of the cache, in order, since
 * a tier below one left out would be written without the one above it, which every read
 * passes first.
 */
export function tierCount(tiers: readonly Store[], names: unknown, component: string): number {
  const all = tiers.map((t) => t.name);
  const ok =
    Array.isArray(names) &&
    names.length > 0 &&
    names.length <= all.length &&
    names.every((t, i) => t === all[i]);
  if (!ok) {
    badOption(
      component,
      "tiers",
      `the first tiers of the cache, in order (${all.join(", ")})`,
      names,
    );
  }
  return names.length;
}

/** `tiers`: the count #checkValueOptions made of the options' tier names. */
function valueInit(
  key: string,
  value: unknown,
  options: JsonOptions,
  tiers: number | undefined,
): EntryInit {
  const { tiers: _names, ...rest } = options;
  return { ...rest, ...encodeValue(key, value), tiers };
}

export function createCache(options: CacheOptions): Cache {
  return new Cache(options);
}

/** A strong ETag from the body's SHA-256 (RFC 9110 8.8.3: same bytes, same tag). */
export async function strongEtag(body: Uint8Array): Promise<string> {
  return `"${(await sha256Hex(body)).slice(0, 24)}"`;
}

/** A memory hit's value as a promise; a value that cannot be decoded rejects it. */
function resolvedValue<T>(hit: CacheEntry): Promise<T> {
  try {
    return Promise.resolve(entryValue<T>(hit));
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * An entry this node stored carries its registration's hit count under a symbol, so a
 * memory hit counts itself without looking the key up in the index again (that lookup was
 * a fifth of a hit's time). Symbol-keyed, it is never serialized with the entry. Should the
 * key be registered anew while memory still holds this entry, its hits go to the old count:
 * they only decide which invalidated keys are hot enough to reload.
 */
const HIT_COUNT = Symbol("hitCount");
type Counted = CacheEntry & { [HIT_COUNT]?: HitCount };

function counted(entry: CacheEntry, count: HitCount): void {
  Object.defineProperty(entry, HIT_COUNT, { value: count, configurable: true, writable: true });
}
