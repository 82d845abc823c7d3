import type {
  ChangeLog,
  ChangeOp,
  LogHistory,
  LogPosition,
  WriteTurn,
} from "../../log/contract.ts";
import { decodeLogStart, encodeLogStart, localChangeLog } from "../../log/in-process.ts";
import { CoarseClock } from "../coarse-clock.ts";
import { entryValue } from "../codec.ts";
import { COST_KINDS, Cost, type Costs, newCosts } from "../cost.ts";
import { DependencyIndex, type Registration } from "../deps/index.ts";
import {
  type InvalidationPolicy,
  type ListDependency,
  type PlanSchema,
  planWrite,
  type WriteEvent,
} from "../deps/planner.ts";
import { type CacheEntry, madeEntry } from "../entry.ts";
import { badOption, EdgecacheError } from "../errors.ts";
import { extend } from "../extend.ts";
import { WriteFence } from "../fence.ts";
import { buildKey, type KeyPart } from "../keys.ts";
import { Namespace, type NamespaceOptions } from "../namespace.ts";
import { isNegative, NegativeQuota } from "../negative.ts";
import { type ChangeSummary, RecentChanges } from "../recent-changes.ts";
import { PendingRemovals } from "../removal.ts";
import { rateLimited } from "../report.ts";
import { type CacheObserver, type CacheStats, LatencyRecorder, readHitRate } from "../stats.ts";
import { isEvicting, isLogKeeping, type LogKeepingStore, type Store } from "../store.ts";
import { type WarmOptions, type WarmResult, warm } from "../warm.ts";
import { type AppendOptions, Applier } from "./apply.ts";
import { Background, ReloadQueue } from "./background.ts";
import { type Counters, newCounters } from "./counters.ts";
import { Entries, hitCount, MAX_TRACKED_TIERS, strongEtag, syncEtag } from "./entries.ts";
import { HitCheck } from "./hit-check.ts";
import { Loads } from "./loads.ts";
import {
  checkKey,
  checkKeys,
  checkNoOptions,
  checkValueOptions,
  checkWriteHooks,
  joinedWriteHooks,
  READ_OPTIONS,
  settings,
  tierCount,
  valueInit,
} from "./options.ts";
import { Reads } from "./reads.ts";
import { ReloadClaims } from "./reload-claims.ts";
import { FAILED, TierStack } from "./tiers.ts";
import type {
  AppliedWrite,
  CacheOptions,
  EntryInit,
  InvalidateRequest,
  JsonOptions,
  LookupOptions,
  ReadOptions,
  Resolved,
  ResolveStatus,
  Unstored,
  WriteHooks,
} from "./types.ts";

export { strongEtag } from "./entries.ts";
export { tierCount } from "./options.ts";
export type * from "./types.ts";

/** How long a write waits for the change log to be reachable before it is refused. */
const WRITE_WAIT_MS = 5000;
/** The key a health probe reads (whether an entry is there does not matter: only an error does). */
const PROBE_KEY = "edgecache:health-probe";
/** Without a schema every write falls back to its table. */
const NO_SCHEMA: PlanSchema = { primaryKey: () => undefined, joinColumns: () => [] };

/**
 * The default size of a summary a shared log keeps (each array folded to at most this
 * many buckets): what a log stores and sends to every starting node stays under about
 * 0.5 MB however much this node keeps for itself.
 */
const SHARED_HISTORY_BUCKETS = 1 << 14;

/**
 * What the facade holds: the cache's state and its modules. Only the facade sees it; each
 * module is given what it uses when the cache is made (see its `...Deps`).
 */
interface Parts {
  readonly tiers: TierStack;
  readonly index: DependencyIndex;
  readonly indexBytes: { readonly max: number; evictions: number };
  readonly negative: NegativeQuota;
  readonly fence: WriteFence;
  readonly log: ChangeLog;
  readonly counters: Counters;
  /** What requests cost the shared server, by kind, and the writes this node made. */
  readonly costs: Costs;
  readonly written: { count: number };
  readonly latency: LatencyRecorder;
  readonly observer: CacheObserver | undefined;
  readonly recent: RecentChanges;
  readonly background: Background;
  readonly reloads: ReloadQueue;
  readonly report: ReturnType<typeof rateLimited>;
  readonly enabled: boolean;
  now(): number;
  /** Tiers [0, end) of a value's `tiers` count (validated already); all by default. */
  end(tiers: number | undefined): number;
  readonly entries: Entries;
  readonly loads: Loads;
  readonly reads: Reads;
  readonly applier: Applier;
}

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
  readonly #e: Parts;
  /** The one hit check, shared with the reads through the tiers. */
  readonly #hits: HitCheck;
  /** What a write that reaches this node does to cached entries (see setWriteHooks). */
  #hooks: WriteHooks;
  /** The sets `#hooks` joins, in the order they were given. */
  #hookSets: readonly WriteHooks[];
  /** The clock of `peek`: the cache's, or a coarse reading of it (CoarseClock). */
  readonly #hitNow: () => number;
  readonly #rules: NonNullable<CacheOptions["invalidateOn"]>;
  #schema: PlanSchema | undefined;
  /** The tier the default log was resumed from, and the log: left there at close. */
  #keeper: { store: LogKeepingStore; log: ReturnType<typeof localChangeLog> } | undefined;

  constructor(options: CacheOptions) {
    const set = settings(options);
    this.#rules = set.rules;
    this.policy = set.policy;
    this.#schema = options.schema;
    const now = options.now ?? Date.now;
    // The hit path's clock: coarse when the cache reads the real one (see CoarseClock).
    if (options.now === undefined) {
      const clock = new CoarseClock();
      this.#hitNow = () => clock.now();
    } else this.#hitNow = options.now;
    const logger = options.logger ?? { warn: (m, e) => console.warn(m, e ?? "") };
    const report = rateLimited(logger, () => performance.now());
    const background = new Background(options.schedule);
    // A registration stays while a tier may hold its entry. The first tier always counts:
    // what it holds is served unchecked. A lower tier counts when it reports its evictions;
    // one that does not (Redis) needs none, since what is read from it is checked against
    // the log. So the index is bounded by the bounds of the tiers that keep one.
    let tracked = 1;
    options.tiers.forEach((tier, i) => {
      if (isEvicting(tier) && i < MAX_TRACKED_TIERS) tracked |= 1 << i;
    });
    const costs = newCosts();
    const idle = costs.background;
    const tiers = new TierStack(options.tiers, report, idle);
    const index = new DependencyIndex();
    const negative = new NegativeQuota(set.maxNegative);
    const fence = new WriteFence(
      set.fenceOps,
      (event, lookup) => planWrite(event, this.#planSchema(), lookup, this.policy),
      () => this.policy,
    );
    const log = options.log ?? this.#resumedLog(options.tiers);
    const counters = newCounters();
    const latency = new LatencyRecorder();
    const { observer } = options;
    const pending = new PendingRemovals();
    const reloads = new ReloadQueue(background, set.rehydrate?.concurrency ?? 1, report);
    const recent = new RecentChanges();
    const indexBytes = { max: set.indexMaxBytes, evictions: 0 };
    const { enabled, policy } = set;
    this.#hookSets = options.writeHooks ? [options.writeHooks] : [];
    this.#hooks = joinedWriteHooks(this.#hookSets);
    const hooks = () => this.#hooks;
    const planSchema = () => this.#planSchema();
    const end = (n: number | undefined) =>
      n === undefined ? tiers.length : Math.min(n, tiers.length);
    this.#hits = new HitCheck({ enabled, log, pending, tiers });
    // Each module is given what it uses; loads and reads call each other through the one
    // function each needs of the other (made below, called only once both exist).
    const claims = new ReloadClaims(log);
    const etagNow =
      options.sha256 && tiers.front?.byReference ? syncEtag(options.sha256) : undefined;
    const entries = new Entries({
      claims,
      tiers,
      index,
      indexBytes,
      negative,
      background,
      pending,
      counters,
      enabled,
      ttl: set.ttl,
      swr: set.swr,
      tracked,
      now,
      etag: etagNow ?? strongEtag,
      ...(etagNow && { etagNow }),
    });
    const loads: Loads = new Loads({
      entries,
      tiers,
      log,
      fence,
      background,
      counters,
      latency,
      observer,
      enabled,
      hooks,
      end,
      idle,
      lookup: (key) => reads.lookup(key),
    });
    const reads: Reads = new Reads({
      hits: this.#hits,
      claims,
      tiers,
      log,
      fence,
      index,
      entries,
      background,
      counters,
      latency,
      observer,
      report,
      policy,
      idle,
      now,
      hooks,
      planSchema,
      storeLoaded: (key, init, since, options) => loads.storeLoaded(key, init, since, options),
    });
    const applier = new Applier({
      log,
      claims,
      fence,
      index,
      tiers,
      entries,
      loads,
      reloads,
      recent,
      background,
      pending,
      counters,
      report,
      policy,
      rehydrate: set.rehydrate,
      idle,
      now,
      hooks,
      planSchema,
    });
    const e: Parts = {
      tiers,
      index,
      indexBytes,
      negative,
      fence,
      log,
      counters,
      costs,
      written: { count: 0 },
      latency,
      observer,
      recent,
      background,
      reloads,
      report,
      enabled,
      now,
      end,
      entries,
      loads,
      reads,
      applier,
    };
    this.#e = e;
    options.tiers.forEach((tier, i) => {
      if (!isEvicting(tier) || i >= MAX_TRACKED_TIERS) return;
      tier.onEvict((key) => {
        if (e.index.release(key, 1 << i)) e.negative.forget(key);
      });
    });
    e.log.follow(
      {
        apply: (record) => e.applier.apply(record),
        reset: (start) => e.applier.reset(start),
        history: (maxBuckets = SHARED_HISTORY_BUCKETS) => e.fence.history(true, maxBuckets),
      },
      costs.following,
    );
  }

  /** Sets the schema the planner uses (the data API knows it only after connecting). */
  setSchema(schema: PlanSchema): void {
    this.#schema = schema;
  }

  /**
   * Adds what happens when a write reaches this node, whichever node made it, to the keys
   * of `hooks.prefix` (every key without one): patches of cached responses, and the refetch
   * that rehydrates hot ones. Beside what `CacheOptions.writeHooks` gave, for a caller
   * given the cache already made (the data API, whose refetch runs its own routes over this
   * cache and whose patches need the schema it reads after connecting; a query cache on
   * an engine it shares). Returns what removes them again.
   */
  addWriteHooks(hooks: WriteHooks): () => void {
    checkWriteHooks(hooks);
    this.#hookSets = [...this.#hookSets, hooks];
    this.#hooks = joinedWriteHooks(this.#hookSets);
    return () => {
      this.#hookSets = this.#hookSets.filter((h) => h !== hooks);
      this.#hooks = joinedWriteHooks(this.#hookSets);
    };
  }

  /** The last changes this node applied (writes and invalidations), newest first. */
  recentChanges(): readonly ChangeSummary[] {
    return this.#e.recent.list();
  }

  /** The change log this cache follows. */
  get log(): ChangeLog {
    return this.#e.log;
  }

  /**
   * The synchronous hit path: the first tier's entry if it is fresh, else undefined.
   * Only when the first tier is a SyncStore (memory), and only while the lease holds.
   */
  peek(key: string, options?: LookupOptions): CacheEntry | undefined {
    const { front } = this.#e.tiers;
    const hits = this.#hits;
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
   * The write fence's position: the last log record this node applied. A loader that takes
   * it before reading its source and passes it to `storeLoaded` never stores what a change
   * since then may have made stale. A new object after each record (compare by identity).
   */
  get position(): LogPosition {
    return this.#e.fence.position;
  }

  /**
   * What this node knows of the log's past: the records it retains and a bounded summary
   * of those before (`folded`: the summary alone, every record folded in, its arrays at most
   * `maxBuckets` each where a log bounds what it keeps). A log (or a file
   * a single node leaves) keeps it for the next process, which judges the entries loaded
   * before it started by it (see LogStart.history).
   */
  history(options: { folded?: boolean; maxBuckets?: number } = {}): LogHistory {
    return this.#e.fence.history(options.folded, options.maxBuckets);
  }

  /**
   * How many entries this node has registered under a key prefix, or with a tag (entries
   * expired everywhere may count until the next sweep).
   */
  registered(filter: { prefix: string } | { tag: string }): number {
    let n = 0;
    for (const _ of this.keys(filter)) n++;
    return n;
  }

  /**
   * Keys this node has registered, under a key prefix and with a tag where given (all by
   * default). Entries expired everywhere may be listed until the next sweep.
   */
  *keys(filter: { prefix?: string; tag?: string } = {}): Iterable<string> {
    const prefix = filter.prefix ?? "";
    if (filter.tag === undefined) {
      yield* this.#e.index.keys(prefix);
      return;
    }
    for (const key of this.#e.index.keysForTag(filter.tag)) if (key.startsWith(prefix)) yield key;
  }

  /** What this node registered for a key: tags, lists, hits and expiry. */
  registration(key: string): Readonly<Registration> | undefined {
    return this.#e.index.get(key);
  }

  /** The lists registered on a table, with their predicates and windows. */
  listsOn(table: string): Iterable<readonly [key: string, list: ListDependency]> {
    return this.#e.index.listsOn(table);
  }

  /** The registered pages of `list`'s list (same table, filters and order), its own too. */
  pagesOf(list: ListDependency): Iterable<readonly [key: string, list: ListDependency]> {
    return this.#e.index.pagesOf(list);
  }

  /**
   * Each tier's live copy of a key, fastest tier first: what an operator looks at. Looking
   * is not a read, so no hit or miss is counted; a failing tier counts as a fault, except
   * for a key `held` found (`scanned`): a shared tier's prefix also holds what is not an
   * entry (the log's claims, the manifest's and learning's keys), which shows as none.
   */
  async inspect(
    key: string,
    options: { scanned?: boolean } = {},
  ): Promise<{ tier: string; entry?: CacheEntry }[]> {
    const found = await this.#e.tiers.inspect(key, this.#e.now(), options.scanned === true);
    for (const { entry } of found) if (entry) madeEntry(entry);
    return found;
  }

  /**
   * Keys under `prefix` that the tiers below this node's memory hold, whether or not this
   * node registered them (an earlier process's cache file, another node's Redis entries).
   * A key two tiers hold comes twice.
   */
  held(prefix = ""): AsyncIterable<string> {
    return this.#e.tiers.below(prefix);
  }

  /**
   * Whether each tier answers now, fastest first: each is asked for a key no entry has (a
   * health check; a failing tier is counted as a fault, like any failed call).
   */
  probe(): Promise<{ tier: string; ok: boolean }[]> {
    const { tiers } = this.#e;
    return Promise.all(
      tiers.list.map(async (tier, i) => ({
        tier: tier.name,
        ok: (await tiers.get(i, PROBE_KEY)) !== FAILED,
      })),
    );
  }

  /** The tiers' names, fastest first. */
  get tierNames(): string[] {
    return this.#e.tiers.list.map((t) => t.name);
  }

  /** How many tiers `names` names (the first ones, in order); see JsonOptions.tiers. */
  tierCount(names: unknown, component = "cache"): number {
    return tierCount(this.#e.tiers.list, names, component);
  }

  /** false when caching is off (CacheOptions.enabled): every read goes to the source. */
  get enabled(): boolean {
    return this.#e.enabled;
  }

  /** Whether this node may serve from cache now (its lease on the change log holds). */
  get trusted(): boolean {
    return this.#e.log.trusted();
  }

  /**
   * Runs a source read, counting it in the stats (loads, load errors, source latency).
   * For callers with a single flight of their own; `resolve` does this itself.
   */
  measureLoad<T>(load: () => Promise<T>): Promise<T> {
    return this.#e.loads.measureLoad(load);
  }

  /**
   * Stores what a load read, unless a change since `since` (a `position`) concerns it: the
   * write fence. Returns the entry either way, and whether it was stored. The entry records
   * `since`, so any node that later reads it from a shared tier can check it the same way.
   * With `later`, it is stored in this node's own tiers at once, and becomes exact and goes
   * into the shared tiers in the background.
   */
  async storeLoaded(
    key: string,
    init: EntryInit,
    since: LogPosition,
    options?: { memoryOnly?: boolean; exact?: boolean; later?: boolean },
  ): Promise<{ entry: CacheEntry; stored: boolean; unstored?: Unstored }> {
    const stored = await this.#e.loads.storeLoaded(key, init, since, options);
    madeEntry(stored.entry);
    return stored;
  }

  /** Stores an entry in every tier and registers its dependencies. */
  async setEntry(key: string, init: EntryInit): Promise<CacheEntry> {
    const entry = await this.#e.entries.build(init, this.#e.fence.position);
    await this.#e.entries.store(key, entry, this.#e.end(init.tiers));
    return madeEntry(entry);
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

  /**
   * JSON values through the cache.
   *
   * @example
   * const n = await cache.getOrSet("count", async () => 42, { ttl: 60_000, tags: ["counts"] });
   */
  getOrSet<T>(key: string, load: () => T | Promise<T>, options: JsonOptions = {}): Promise<T> {
    // Checked before the hit path, so a bad call fails on a hit as on a miss.
    let tiers: number | undefined;
    try {
      checkKey(key);
      if (typeof load !== "function") badOption("cache", "load", "a function", load);
      tiers = this.#checkValueOptions(options);
    } catch (err) {
      return Promise.reject(err);
    }
    // The hit path: this node's memory, synchronously, and the value decoded once per entry
    // (not an async function: see get).
    const hit = this.peek(key);
    return hit ? resolvedValue<T>(hit) : this.#loadValue<T>(key, load, options, tiers);
  }

  async #loadValue<T>(
    key: string,
    load: () => T | Promise<T>,
    options: JsonOptions,
    tiers: number | undefined,
  ): Promise<T> {
    const { entry } = await this.resolve(
      key,
      async () => valueInit(key, await load(), options, tiers),
      { tiers },
    );
    return entryValue<T>(entry);
  }

  /** `tiers`: only these of the cache's tiers are asked, by name (the first ones, in order). */
  get<T>(key: string, options?: ReadOptions): Promise<T | undefined> {
    // Checked before the hit path, so a bad call fails on a hit as on a miss.
    let tiers: number | undefined;
    try {
      checkKey(key);
      tiers = this.#checkValueOptions(options, READ_OPTIONS);
    } catch (err) {
      return Promise.reject(err);
    }
    // Not an async function: a memory hit returns a resolved promise without the frame and
    // the extra promise an async function costs (about a tenth of a hit's time).
    const hit = this.peek(key);
    return hit ? resolvedValue<T>(hit) : this.#getBelow<T>(key, tiers);
  }

  async #getBelow<T>(key: string, tiers: number | undefined): Promise<T | undefined> {
    const entry = await this.getEntry(key, { tiers });
    return entry ? entryValue<T>(entry) : undefined;
  }

  /**
   * Sets a value; other nodes drop their copy of the key first (through the log). Stored
   * like a load that began after its own record, so a later set of the key on another
   * node, applied meanwhile, wins on every node.
   */
  async set(key: string, value: unknown, options: JsonOptions = {}): Promise<void> {
    checkKey(key);
    const tiers = this.#checkValueOptions(options);
    const init = valueInit(key, value, options, tiers);
    // Settled: the value stored next must not meet the old one's delete in a shared tier.
    const { seq } = await this.#appendWrite([{ keys: [key] }], { settled: true });
    const at = this.#e.fence.position;
    await this.#e.loads.storeLoaded(
      key,
      init,
      { log: at.log, seq },
      undefined,
      this.#e.costs.write,
    );
  }

  /**
   * A key from its parts, joined with ":"; a ":" or "%" inside a part is encoded, so no two
   * lists of parts make one key. An empty string, a non-finite number or another type is
   * refused with E_BAD_OPTION (see `buildKey`).
   *
   * @example
   * await cache.getOrSet(cache.key("content", "post", 123), () => db.post(123)); // "content:post:123"
   */
  key(...parts: KeyPart[]): string {
    return buildKey(parts);
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

  /** Drops `key` from every tier, here and (through the log) on every node; takes no options. */
  async delete(key: string, ...none: never[]): Promise<boolean> {
    checkKey(key);
    checkNoOptions(none[0]);
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
    checkKeys(keys);
    const tiers = this.#checkValueOptions(options, READ_OPTIONS);
    const values: (T | undefined)[] = new Array(keys.length).fill(undefined);
    const rest: number[] = [];
    keys.forEach((key, i) => {
      const hit = this.peek(key);
      if (hit) values[i] = entryValue<T>(hit);
      else rest.push(i);
    });
    if (rest.length === 0) return values;
    const cost = new Cost();
    const found = await this.#e.reads.lookupMany(
      rest.map((i) => keys[i]!),
      this.#e.end(tiers),
      cost,
    );
    this.#e.costs[found.every(Boolean) ? "hit" : "miss"].merge(cost);
    const now = this.#e.now();
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
      checkKey(key);
      const tiers = this.#checkValueOptions(options);
      return { key, init: valueInit(key, value, options, tiers) };
    });
    if (inits.length === 0) return;
    const keys = inits.map((i) => i.key);
    const { seq } = await this.#appendWrite([{ keys }], { settled: true });
    const at = { log: this.#e.fence.position.log, seq };
    await this.#e.loads.storeLoadedMany(inits, at, this.#e.costs.write);
  }

  /** Deletes several keys in one record, each tier deleting them in one call; how many existed. */
  async deleteMany(keys: readonly string[], ...none: never[]): Promise<number> {
    checkKeys(keys);
    checkNoOptions(none[0]);
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
    return (await this.#appendWrite(ops, { settled: true })).removed;
  }

  /**
   * Applies a write the source has committed (one row change, or several made by one
   * statement): appends it to the change log, and resolves once every node that may serve
   * an affected entry has removed it (or patched it, see `setWriteHooks`), so the write can
   * be acknowledged after this.
   */
  async applyWrite(
    events: WriteEvent | readonly WriteEvent[],
    /** `captured`: writes change capture read (see `capturedApplied`). */
    options: { captured?: true } = {},
  ): Promise<AppliedWrite> {
    const list: readonly WriteEvent[] = Array.isArray(events) ? events : [events as WriteEvent];
    const { captured } = options;
    const { keys, fallback, patched } = await this.#appendWrite(
      list.map((event) => (captured ? { event, captured } : { event })),
    );
    return { keys, fallback, patched };
  }

  /**
   * The captured writes (`applyWrite(events, { captured: true })`) this node has applied
   * from its log, whichever node read them from the change table.
   */
  capturedApplied(): number {
    return this.#e.applier.captured;
  }

  /**
   * Makes a write and records it: `make` runs the source's statement and, once it has
   * committed, hands its events to `record`, which resolves as `applyWrite` does. The
   * write holds the log's write turn from before the statement until its record is in, so
   * its record follows the source's commit order and may patch cached responses (a record
   * from `applyWrite` is ordered only on the in-process log). Fails with E_LOG_UNAVAILABLE,
   * before `make` runs, while the log cannot be reached.
   *
   * `placed` is called once, as soon as the write's first record has its place in the log
   * (before the other nodes are heard from, where the log can tell), or when the write
   * ends: a caller that keeps its own writes in order (the data API) starts the next then,
   * with the turn the log may hand over for it when `wantsTurn()` says so (see
   * `ChangeLog.append`), given back as `turn` (a write handed one takes none of its own) or
   * released.
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
    options: {
      placed?: (next?: WriteTurn) => void;
      turn?: WriteTurn;
      wantsTurn?: () => boolean;
      /** The writes `make` makes, where it makes several (a group): counted as requests. */
      writes?: number;
    } = {},
  ): Promise<T> {
    let placed = options.placed;
    const place = (next?: WriteTurn) => {
      if (placed) placed(next);
      else next?.release();
      placed = undefined;
    };
    try {
      try {
        await this.writable();
      } catch (err) {
        options.turn?.release();
        throw err;
      }
      const cost = this.#e.costs.write;
      this.#e.written.count += options.writes ?? 1;
      const turn = options.turn ?? (await this.#e.log.turn(cost));
      let used = false;
      try {
        return await make(async (events) => {
          // A second record of one write has no turn left: it is appended unordered.
          const given = used ? undefined : turn;
          used = true;
          const ops = events.map((event) => ({ event }));
          const applied = await this.#e.applier.append(ops, {
            turn: given,
            placed: place,
            wantsTurn: options.wantsTurn,
            cost,
          });
          return { keys: applied.keys, fallback: applied.fallback, patched: applied.patched };
        });
      } finally {
        if (!used) turn?.release();
      }
    } finally {
      place();
    }
  }

  /**
   * Takes the log's write turn for a write to come, made through `write` with it as `turn`
   * (a writer that keeps its own writes in order asks for it while its last record is on
   * its way: see WriteGroups). Undefined when the log cannot give one.
   */
  writeTurn(): Promise<WriteTurn | undefined> {
    return this.#e.log.turn(this.#e.costs.write);
  }

  /**
   * Resolves once a write may start: this node hears the change log (its lease holds).
   * A write the source commits while the log is out of reach could not be acknowledged
   * safely, so callers ask before they write; fails with E_LOG_UNAVAILABLE after `waitMs`.
   */
  async writable(waitMs = WRITE_WAIT_MS): Promise<void> {
    const until = performance.now() + waitMs;
    while (!this.#e.log.trusted()) {
      if (performance.now() >= until) {
        throw new EdgecacheError(
          "E_LOG_UNAVAILABLE",
          "cache",
          `the change log (${this.#e.log.name}) cannot be reached; the write was not made`,
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
    this.#e.background.run(work);
  }

  /**
   * Waits until background work has finished: tests, graceful shutdown, and a Worker whose
   * cache was made without `schedule`, which ends each request with
   * `ctx.waitUntil(cache.drain())` so that reloads a write started are not cut off.
   */
  async drain(): Promise<void> {
    while (
      this.#e.reloads.busy ||
      this.#e.loads.inflight.length > 0 ||
      this.#e.background.running.length > 0
    ) {
      await Promise.allSettled([...this.#e.loads.inflight, ...this.#e.background.running]);
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
    await this.#e.log.close();
    this.#leaveLog();
    await this.#e.tiers.close();
  }

  /** The default log: resumed from the first tier that keeps one (see CacheOptions.log). */
  #resumedLog(tiers: readonly Store[]): ChangeLog {
    const keeper = tiers.find(isLogKeeping);
    if (!keeper) return localChangeLog();
    let state: string | undefined;
    try {
      state = keeper.takeLogState();
    } catch {
      // A tier that cannot say: a new log, whose position no entry of the file has.
    }
    const log = localChangeLog({ resume: state === undefined ? undefined : decodeLogStart(state) });
    this.#keeper = { store: keeper, log };
    return log;
  }

  /** Leaves the default log's state and history in the tier it was resumed from. */
  #leaveLog(): void {
    const keeper = this.#keeper;
    if (!keeper) return;
    try {
      keeper.store.leaveLogState(
        encodeLogStart({ ...keeper.log.snapshot(), history: this.history() }),
      );
    } catch (err) {
      this.#e.report(
        "log-state",
        "[edgecache] [cache] cannot leave the log state: the next start refuses this cache's entries",
        err,
      );
    }
  }

  stats(): CacheStats {
    const now = this.#e.now();
    this.#e.index.sweep(now);
    return {
      ...this.#e.counters,
      hitRate: readHitRate(this.#e.counters),
      capturedApplied: this.#e.applier.captured,
      enabled: this.#e.enabled,
      indexedKeys: this.#e.index.size,
      index: {
        keys: this.#e.index.size,
        bytes: this.#e.index.bytes,
        maxBytes: this.#e.indexBytes.max,
        evictions: this.#e.indexBytes.evictions,
      },
      notFound: {
        entries: this.#e.negative.size,
        maxEntries: this.#e.negative.max,
        evictions: this.#e.negative.evictions,
      },
      log: {
        name: this.#e.log.name,
        ...(this.#e.log.node !== undefined && { node: this.#e.log.node }),
        seq: this.#e.fence.position.seq,
        lease: this.#e.log.trusted(),
        failures: this.#e.log.failures,
      },
      sourceLatencyMs: this.#e.latency.summary(),
      tiers: this.#e.tiers.summary(),
      redis: this.#costStats(),
    };
  }

  /** Appends one write's ops: a write request, its cost counted as a write's. */
  #appendWrite(ops: readonly ChangeOp[], options: AppendOptions = {}) {
    this.#e.written.count++;
    return this.#e.applier.append(ops, extend(options, { cost: this.#e.costs.write }));
  }

  #costStats(): CacheStats["redis"] {
    const { costs, counters } = this.#e;
    const commands = {} as CacheStats["redis"]["commands"];
    const trips = {} as CacheStats["redis"]["trips"];
    for (const kind of COST_KINDS) {
      commands[kind] = costs[kind].commands;
      trips[kind] = costs[kind].trips;
    }
    const requests = {
      hit: counters.hits + counters.staleHits,
      miss: counters.misses,
      write: this.#e.written.count,
    };
    return { commands, trips, requests };
  }

  #planSchema(): PlanSchema {
    return this.#schema ?? NO_SCHEMA;
  }

  /** Checks a call's options; returns how many tiers its `tiers` names (undefined: all). */
  #checkValueOptions(
    options: JsonOptions | ReadOptions | undefined,
    names?: typeof READ_OPTIONS,
  ): number | undefined {
    if (options === undefined) return undefined;
    checkValueOptions(options, names);
    return options.tiers === undefined ? undefined : this.tierCount(options.tiers);
  }
}

export function createCache(options: CacheOptions): Cache {
  return new Cache(options);
}

/** A memory hit's value as a promise; a value that cannot be decoded rejects it. */
function resolvedValue<T>(hit: CacheEntry): Promise<T> {
  try {
    return Promise.resolve(entryValue<T>(hit));
  } catch (err) {
    return Promise.reject(err);
  }
}
