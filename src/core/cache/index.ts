import {
  type ChangeLog,
  type ChangeOp,
  type ChangeRecord,
  type LogPosition,
  type LogStart,
  localChangeLog,
  type WriteTurn,
} from "../change-log.ts";
import { CoarseClock } from "../coarse-clock.ts";
import { entryValue } from "../codec.ts";
import { DependencyIndex, type HitCount, type Registration } from "../deps/index.ts";
import {
  type DependencyLookup,
  type InvalidationPolicy,
  type ListDependency,
  type PlanSchema,
  planWrite,
  type WriteEvent,
} from "../deps/planner.ts";
import { sha256Hex } from "../digest.ts";
import type { CacheEntry } from "../entry.ts";
import { badOption, EdgecacheError } from "../errors.ts";
import { WriteFence } from "../fence.ts";
import { Namespace, type NamespaceOptions } from "../namespace.ts";
import { isNegative, NegativeQuota } from "../negative.ts";
import { type ChangeSummary, RecentChanges } from "../recent-changes.ts";
import { inChunks, PendingRemovals } from "../removal.ts";
import { rateLimited } from "../report.ts";
import { type CacheObserver, type CacheStats, LatencyRecorder } from "../stats.ts";
import { isEvicting } from "../store.ts";
import { type WarmOptions, type WarmResult, warm } from "../warm.ts";
import { Background, ReloadQueue } from "./background.ts";
import { checkValueOptions, settings, tierCount, valueInit } from "./options.ts";
import { planRecord } from "./record-plan.ts";
import { FAILED, TierStack } from "./tiers.ts";
import type {
  AppliedWrite,
  CacheOptions,
  EntryInit,
  Found,
  InvalidateRequest,
  JsonOptions,
  LookupOptions,
  ReadOptions,
  Resolved,
  ResolveStatus,
  WriteHooks,
  WriteResult,
} from "./types.ts";

export { tierCount } from "./options.ts";
export type * from "./types.ts";

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
/** Without a schema every write falls back to its table. */
const NO_SCHEMA: PlanSchema = { primaryKey: () => undefined, joinColumns: () => [] };
/** A lookup that finds nothing: planning against it tells only whether a write is exact. */
const NO_DEPENDENCIES: DependencyLookup = { keysForTag: () => [], listsOn: () => [] };

/**
 * The tiered cache engine. Portable: Web-standard APIs only.
 *
 * @example
 * const cache = createCache({ tiers: [memoryStore()] });
 * const user = await cache.getOrSet("user:1", () => db.user(1), { tags: ["users#1"] });
 * await cache.invalidate({ tags: ["users#1"] });
 */
export class Cache {
  readonly policy: InvalidationPolicy;
  readonly #tiers: TierStack;
  readonly #index = new DependencyIndex();
  #ttl: number;
  #swr: number;
  #schema: PlanSchema | undefined;
  #now: () => number;
  /** The clock of `peek`: `#now`, or a coarse reading of it (CoarseClock). */
  readonly #hitNow: () => number;
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
  /** Keys this node patched after its own write, to load again for the shared tiers. */
  #refilling = new Set<string>();
  #log: ChangeLog;
  #fence: WriteFence;
  #hooks: WriteHooks = {};
  /** What applying each recent record did, for the node that appended it to collect. */
  #results = new Map<number, Promise<WriteResult>>();
  readonly #background: Background;
  #rehydrate: { concurrency: number; minHits: number; lists: boolean } | undefined;
  readonly #reloads: ReloadQueue;
  #report: ReturnType<typeof rateLimited>;
  /** Keys a removal in progress has yet to delete everywhere; reads skip them. */
  #pending = new PendingRemovals();
  #encoder = new TextEncoder();
  #stores = 0;
  /** Tiers whose holding keeps a registration (a bit per tier): the first, and evicting ones. */
  #tracked = 1;
  #negative: NegativeQuota;
  #rules: NonNullable<CacheOptions["invalidateOn"]>;

  constructor(options: CacheOptions) {
    const set = settings(options);
    this.#rules = set.rules;
    this.#negative = new NegativeQuota(set.maxNegative);
    this.#ttl = set.ttl;
    this.#swr = set.swr;
    this.policy = set.policy;
    this.#schema = options.schema;
    this.#now = options.now ?? Date.now;
    // The hit path's clock: coarse when the cache reads the real one (see CoarseClock).
    if (options.now === undefined) {
      const clock = new CoarseClock();
      this.#hitNow = () => clock.now();
    } else this.#hitNow = options.now;
    const logger = options.logger ?? { warn: (m, e) => console.warn(m, e ?? "") };
    this.#report = rateLimited(logger, () => performance.now());
    this.#tiers = new TierStack(options.tiers, this.#report);
    this.#background = new Background(options.schedule);
    this.#rehydrate = set.rehydrate;
    this.#reloads = new ReloadQueue(
      this.#background,
      set.rehydrate?.concurrency ?? 1,
      this.#report,
    );
    this.#observer = options.observer;
    this.#fence = new WriteFence(
      set.fenceOps,
      (event, single) => planWrite(event, this.#planSchema(), single, this.policy).keys.size > 0,
      () => this.policy,
    );
    // A registration stays while a tier may hold its entry. The first tier always counts:
    // what it holds is served unchecked. A lower tier counts when it reports its evictions;
    // one that does not (Redis) needs none, since what is read from it is checked against
    // the log. So the index is bounded by the bounds of the tiers that keep one.
    options.tiers.forEach((tier, i) => {
      if (!isEvicting(tier) || i >= MAX_TRACKED_TIERS) return;
      this.#tracked |= 1 << i;
      tier.onEvict((key) => {
        if (this.#index.release(key, 1 << i)) this.#negative.forget(key);
      });
    });
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
    if (!this.#tiers.front || this.#pending.has(key) || this.#tiers.skips(0, key)) {
      return undefined;
    }
    if (!this.#log.trusted()) return undefined;
    const started = this.#observer ? performance.now() : 0;
    const now = this.#hitNow();
    const entry = this.#tiers.front.peek(key, now);
    if (!entry || entry.freshUntil <= now) return undefined;
    this.#tiers.stats(0).hits++;
    this.#observer?.read(this.#tiers.list[0]!.name, (performance.now() - started) / 1000);
    if (options?.count !== false) {
      this.#counters.hits++;
      const count = (entry as Counted)[HIT_COUNT];
      if (count !== undefined) count.hits++;
      else this.#index.touch(key);
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
      this.#index.touch(key);
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
      "tag" in filter ? this.#index.keysForTag(filter.tag) : this.#index.keys(filter.prefix);
    for (const _ of keys) n++;
    return n;
  }

  /**
   * Keys this node has registered, under a key prefix and with a tag where given (all by
   * default). Entries expired everywhere may be listed until the next sweep.
   */
  *keys(filter: { prefix?: string; tag?: string } = {}): Iterable<string> {
    const prefix = filter.prefix ?? "";
    if (filter.tag === undefined) {
      yield* this.#index.keys(prefix);
      return;
    }
    for (const key of this.#index.keysForTag(filter.tag)) if (key.startsWith(prefix)) yield key;
  }

  /** What this node registered for a key: tags, lists, hits and expiry. */
  registration(key: string): Readonly<Registration> | undefined {
    return this.#index.get(key);
  }

  /** The lists registered on a table, with their predicates and windows. */
  listsOn(table: string): Iterable<readonly [key: string, list: ListDependency]> {
    return this.#index.listsOn(table);
  }

  /**
   * Each tier's live copy of a key, fastest tier first: what an operator looks at. Looking
   * is not a read, so no hit or miss is counted; a failing tier counts as a fault.
   */
  inspect(key: string): Promise<{ tier: string; entry?: CacheEntry }[]> {
    return this.#tiers.inspect(key, this.#now());
  }

  /** The tiers' names, fastest first. */
  get tierNames(): string[] {
    return this.#tiers.list.map((t) => t.name);
  }

  /** How many tiers `names` names (the first ones, in order); see JsonOptions.tiers. */
  tierCount(names: unknown, component = "cache"): number {
    return tierCount(this.#tiers.list, names, component);
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
      this.#background.run(this.#load(key, load)); // failures are counted and logged in #load
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
    this.#background.run(work);
  }

  /** Waits until background work has finished (tests, graceful shutdown). */
  async drain(): Promise<void> {
    while (this.#reloads.busy || this.#inflight.size > 0 || this.#background.running.length > 0) {
      await Promise.allSettled([
        ...[...this.#inflight.values()].map((f) => f.promise),
        ...this.#background.running,
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
    await this.#tiers.close();
  }

  stats(): CacheStats {
    const now = this.#now();
    this.#index.sweep(now);
    return {
      ...this.#counters,
      indexedKeys: this.#index.size,
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
      tiers: this.#tiers.summary(),
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
    this.#background.run(result);
    return result;
  }

  async #applyOps(record: ChangeRecord): Promise<WriteResult> {
    const { keys, events, prefixes, fallback, rules, named } = planRecord(
      record,
      this.#planSchema(),
      this.#index,
      this.policy,
    );
    this.#counters.writes += events.length;
    // Patches are computed now, from what the first tier holds before the removal below;
    // they are stored like a load that began after the record, so the fence refuses one
    // that a later record overtakes. They stay in this node's memory: only it knows the
    // entry it patched was current.
    const at = this.#fence.position;
    const { patch, refetch } = this.#hooks;
    // Tiers other nodes read are the writer's to clean and refill: another node's delete
    // could come after a reload stored there, and reads check them against the log anyway.
    const foreign = record.own === false && this.#tiers.shared;
    // What a node patched is reloaded into the shared tiers, by one node for all (a claim on
    // the log), so that nodes whose memory did not hold it find the new version there (a
    // patch stays in one node's memory). Not for a node alone on the log.
    const claim = this.#log.claim?.bind(this.#log);
    const refill =
      claim && this.#tiers.shared && refetch !== undefined && this.#log.nodes?.() !== 1
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
        const dep = this.#index.get(k);
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
      for (const k of await this.#tiers.unindexed(prefix, keys, foreign))
        if (test(k)) unindexed.add(k);
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
        this.#reloads.push(async () => {
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
    const keys = new Set(this.#index.keys());
    for (const k of keys) this.#index.remove(k);
    this.#background.run(this.#tiers.clearFront(keys));
  }

  // --- internals ---------------------------------------------------------------------

  #planSchema(): PlanSchema {
    return this.#schema ?? NO_SCHEMA;
  }

  /** The entry of `key` in the first of tiers [0, end) that holds a servable one. */
  async #lookup(key: string, end = this.#tiers.length): Promise<Found | undefined> {
    if (!this.#log.trusted() || this.#pending.has(key)) return undefined;
    const now = this.#now();
    const started = this.#observer ? performance.now() : 0;
    for (let i = 0; i < end; i++) {
      if (this.#tiers.skips(i, key)) continue;
      const entry = await this.#tiers.get(i, key);
      if (entry === FAILED) continue;
      const accepted = await this.#accept(i, key, entry, now, started);
      if (accepted) return { entry: accepted, tier: this.#tiers.list[i]!.name };
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
      const asked = missing.filter((k) => !this.#tiers.skips(i, k));
      const entries = await this.#tiers.getMany(i, asked);
      if (entries === FAILED) continue;
      const accepted = await Promise.all(
        asked.map((key, j) => this.#accept(i, key, entries[j], now, started)),
      );
      const name = this.#tiers.list[i]!.name;
      asked.forEach((key, j) => {
        if (accepted[j]) found.set(key, { entry: accepted[j], tier: name });
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
    const tier = this.#tiers.list[i]!;
    const stats = this.#tiers.stats(i);
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
            this.#background.run(this.#tiers.deleteIn(i, [key]));
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
        this.#index.hold(key, held) ??
          this.#index.add(key, entry.tags, entry.lists ?? [], entry.staleUntil, held),
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
    if (!this.#tiers.shared || !this.#log.claim || (this.#log.nodes?.() ?? 1) <= 1)
      return undefined;
    if (await this.#log.claim(`${this.#fence.position.seq}:${key}`)) return undefined;
    const deadline = performance.now() + RELOAD_WAIT_MS;
    while (performance.now() < deadline) {
      await new Promise((done) => setTimeout(done, RELOAD_POLL_MS));
      const entry = await this.#tiers.get(i, key);
      if (entry === FAILED) return false;
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
    return tiers === undefined ? this.#tiers.length : Math.min(tiers, this.#tiers.length);
  }

  /** Checks a value's options; returns how many tiers its `tiers` names (undefined: all). */
  #checkValueOptions(options: JsonOptions | ReadOptions): number | undefined {
    checkValueOptions(options);
    return options.tiers === undefined ? undefined : this.tierCount(options.tiers);
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
    const conflicts = () => this.#fence.conflicts(since, key, entry);
    if (!this.#log.trusted() || conflicts()) return { entry, status: "miss", stored: false };
    if (this.#hooks.patch && (await this.#quiet(since))) entry.exact = true;
    const ttl = entry.staleUntil - this.#now();
    await this.#tiers.setShared(key, entry, ttl);
    // A write may have landed meanwhile: its record's removal may have come first.
    if (conflicts()) {
      await this.#tiers.deleteShared([key]);
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
        this.#index.add(key, entry.tags, entry.lists ?? [], entry.staleUntil, this.#held(end)),
      );
      this.#admit(key, entry);
      // Registrations of entries that expired everywhere go now and then, not per request.
      if (++this.#stores % SWEEP_EVERY === 0) this.#index.sweep(this.#now());
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
    if (out !== undefined)
      this.#background.run(this.#remove(new Set([out]), { invalidation: false }));
  }

  /** Writes the entries into tiers [0, end): one batch per tier that has batches. */
  async #storeIn(list: readonly { key: string; entry: CacheEntry }[], end: number): Promise<void> {
    const now = this.#now();
    const writes = list
      .map(({ key, entry }) => ({ key, entry, ttlMs: entry.staleUntil - now }))
      .filter((w) => w.ttlMs > 0);
    await this.#tiers.set(writes, end);
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
      this.#index.remove(k);
      this.#negative.forget(k);
    }
    return this.#tiers.delete(list, local);
  }

  /** What `patch` makes of the planned keys the first tier holds fresh; synchronous. */
  #patches(
    keys: ReadonlySet<string>,
    events: readonly WriteEvent[],
    patch: NonNullable<WriteHooks["patch"]>,
  ): Map<string, { init: EntryInit; exact: boolean }> {
    const out = new Map<string, { init: EntryInit; exact: boolean }>();
    const front = this.#tiers.front;
    if (!front) return out;
    const now = this.#now();
    const peek = (key: string) => {
      if (this.#pending.has(key) || this.#tiers.skips(0, key)) return undefined;
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
    this.#reloads.push(async () => {
      if (claim !== undefined && !(await this.#log.claim!(claim))) return;
      this.#counters.rehydrations++;
      await refetch(key);
    });
  }
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
