import type { ChangeLog, LogHistory, LogPosition, WriteTurn } from "../change-log/contract.ts";
import { buildKey, type KeyPart } from "../data/keys.ts";
import type { Registration } from "../deps/index.ts";
import type {
  InvalidationPolicy,
  ListDependency,
  PlanSchema,
  WriteEvent,
} from "../deps/planner.ts";
import type { CacheEntry } from "../entries/entry.ts";
import type { ChangeSummary } from "../fence/recent-changes.ts";
import { Namespace, type NamespaceOptions } from "../library/namespace.ts";
import { type WarmOptions, type WarmResult, warm } from "../library/warm.ts";
import type { CacheStats } from "../stats.ts";
import { CoarseClock } from "../time/coarse-clock.ts";
import { engineStats } from "./engine-stats.ts";
import { KeptLog } from "./kept-log.ts";
import { settings, tierCount, WriteHookSets } from "./options.ts";
import { assembledParts, type Parts } from "./parts.ts";
import { Serving, type StoreLoadedOptions } from "./serving.ts";
import type { InspectedTier } from "./tiers.ts";
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
  StoredLoad,
  WriteHooks,
} from "./types.ts";
import { JsonValues } from "./values.ts";
import { type WriteOptions, Writes } from "./writes.ts";

export { strongEtag } from "./entries.ts";
export { tierCount } from "./options.ts";
export type * from "./types.ts";

/** Without a schema every write falls back to its table. */
const NO_SCHEMA: PlanSchema = { primaryKey: () => undefined, joinColumns: () => [] };

/**
 * The tiered cache engine. Portable: Web-standard APIs only. A facade: the engine's state
 * and modules are made in parts.ts; the library's JSON values and events are values.ts's,
 * the writes that reach the change log writes.ts's; reads, registrations and the tiers'
 * upkeep are delegated to the modules here.
 *
 * @example
 * const cache = createCache({ tiers: [memoryStore()] });
 * const user = await cache.getOrSet("user:1", () => db.user(1), { tags: ["users#1"] });
 * await cache.invalidate({ tags: ["users#1"] });
 */
export class Cache {
  readonly policy: InvalidationPolicy;
  readonly #e: Parts;
  readonly #values: JsonValues;
  readonly #serving: Serving;
  readonly #writes: Writes;
  /** What a write that reaches this node does to cached entries (see addWriteHooks). */
  readonly #hooks: WriteHookSets;
  #schema: PlanSchema | undefined;
  /** The default log, when none was given: left in its tier at close. */
  readonly #kept: KeptLog | undefined;

  constructor(options: CacheOptions) {
    const set = settings(options);
    this.policy = set.policy;
    this.#schema = options.schema;
    // The hit path's clock: coarse when the cache reads the real one (see CoarseClock).
    let hitNow = options.now;
    if (hitNow === undefined) {
      const clock = new CoarseClock();
      hitNow = () => clock.now();
    }
    const hooks = new WriteHookSets(options.writeHooks);
    this.#hooks = hooks;
    if (!options.log) this.#kept = new KeptLog(options.tiers);
    this.#e = assembledParts(options, set, options.log ?? this.#kept!.log, {
      hooks: () => hooks.joined,
      planSchema: () => this.#schema ?? NO_SCHEMA,
    });
    this.#serving = new Serving(this.#e, hitNow);
    this.#writes = new Writes(this.#e);
    this.#values = new JsonValues(this.#e, this.#serving, this.#writes, set.rules);
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
    return this.#hooks.add(hooks);
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
    return this.#serving.peek(key, options);
  }

  /** Looks a key up through the tiers; fresh or stale-but-servable entries only. */
  getEntry(key: string, options?: LookupOptions): Promise<CacheEntry | undefined> {
    return this.#serving.getEntry(key, options);
  }

  /**
   * Counts a read its caller answered itself (after a lookup with `count: false`): an
   * HTTP proxy decides hit, stale or miss from the request as well as the entry, and
   * counts a read it sent around the cache (caching off) as a bypass.
   */
  countRead(key: string, status: ResolveStatus | "bypass"): void {
    this.#serving.countRead(key, status);
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
    return [...this.#e.index.keysWhere(filter)].length;
  }

  /**
   * Keys this node has registered, under a key prefix and with a tag where given (all by
   * default). Entries expired everywhere may be listed until the next sweep.
   */
  keys(filter: { prefix?: string; tag?: string } = {}): Iterable<string> {
    return this.#e.index.keysWhere(filter);
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
  inspect(key: string, options?: { scanned?: boolean }): Promise<InspectedTier[]> {
    return this.#e.tiers.inspect(key, this.#e.now(), options?.scanned === true);
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
    return this.#e.tiers.probe();
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
  storeLoaded(
    key: string,
    init: EntryInit,
    since: LogPosition,
    options?: StoreLoadedOptions,
  ): Promise<StoredLoad> {
    return this.#serving.storeLoaded(key, init, since, options);
  }

  /** Stores an entry in every tier and registers its dependencies. */
  setEntry(key: string, init: EntryInit): Promise<CacheEntry> {
    return this.#serving.setEntry(key, init);
  }

  /**
   * Returns the cached entry for `key`, or loads, stores and returns it. Concurrent misses
   * for one key share one load (single flight). A stale entry within its
   * stale-while-revalidate window is returned at once and refreshed in the background; if
   * the load fails, a stale entry is served instead of the error (stale-if-error). While
   * the lease on the log has lapsed, or with caching off, every read goes to the source
   * and nothing is stored (a bypass).
   */
  resolve(
    key: string,
    load: () => Promise<EntryInit>,
    options?: Pick<LookupOptions, "tiers">,
  ): Promise<Resolved> {
    return this.#serving.resolve(key, load, options);
  }

  /**
   * JSON values through the cache.
   *
   * @example
   * const n = await cache.getOrSet("count", async () => 42, { ttl: 60_000, tags: ["counts"] });
   */
  getOrSet<T>(key: string, load: () => T | Promise<T>, options?: JsonOptions): Promise<T> {
    return this.#values.getOrSet(key, load, options);
  }

  /** `tiers`: only these of the cache's tiers are asked, by name (the first ones, in order). */
  get<T>(key: string, options?: ReadOptions): Promise<T | undefined> {
    return this.#values.get(key, options);
  }

  /**
   * Sets a value; other nodes drop their copy of the key first (through the log). Stored
   * like a load that began after its own record, so a later set of the key on another
   * node, applied meanwhile, wins on every node.
   */
  set(key: string, value: unknown, options?: JsonOptions): Promise<void> {
    return this.#values.set(key, value, options);
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
  delete(key: string, ...none: never[]): Promise<boolean> {
    return this.#values.delete(key, none[0]);
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
  getMany<T>(keys: readonly string[], options?: ReadOptions): Promise<(T | undefined)[]> {
    return this.#values.getMany(keys, options);
  }

  /**
   * Sets several values under one change-log record: other nodes drop their copies of all
   * of them at once. Every value is checked before anything is written.
   */
  setMany(items: readonly ({ key: string; value: unknown } & JsonOptions)[]): Promise<void> {
    return this.#values.setMany(items);
  }

  /** Deletes several keys in one record, each tier deleting them in one call; how many existed. */
  deleteMany(keys: readonly string[], ...none: never[]): Promise<number> {
    return this.#values.deleteMany(keys, none[0]);
  }

  /**
   * Invalidates what the `invalidateOn` rule for `event` returns for `args`; how many
   * entries existed here. An event without a rule is an error (a misspelt name would
   * otherwise invalidate nothing, silently).
   */
  emit(event: string, ...args: unknown[]): Promise<number> {
    return this.#values.emit(event, args);
  }

  /**
   * Removes keys by key, prefix or tag from every tier, on every node following the log;
   * resolves with how many existed here.
   */
  invalidate(request: InvalidateRequest): Promise<number> {
    return this.#writes.invalidate(request);
  }

  /**
   * Applies a write the source has committed (one row change, or several made by one
   * statement): appends it to the change log, and resolves once every node that may serve
   * an affected entry has removed it (or patched it, see `addWriteHooks`), so the write can
   * be acknowledged after this. `captured`: writes change capture read (see
   * `capturedApplied`).
   */
  applyWrite(
    events: WriteEvent | readonly WriteEvent[],
    options?: { captured?: true },
  ): Promise<AppliedWrite> {
    return this.#writes.applyWrite(events, options);
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
   * released. `writes`: the writes `make` makes, where it makes several (counted as requests).
   *
   * @example
   * const row = await cache.write(async (record) => {
   *   const { old, row } = await db.updateUser(id, values); // committed
   *   await record([{ table: "users", op: "update", old, new: row }]);
   *   return row;
   * });
   */
  write<T>(
    make: (record: (events: readonly WriteEvent[]) => Promise<AppliedWrite>) => Promise<T>,
    options?: WriteOptions,
  ): Promise<T> {
    return this.#writes.write(make, options);
  }

  /**
   * Takes the log's write turn for a write to come, made through `write` with it as `turn`
   * (a writer that keeps its own writes in order asks for it while its last record is on
   * its way: see WriteGroups). Undefined when the log cannot give one.
   */
  writeTurn(): Promise<WriteTurn | undefined> {
    return this.#writes.writeTurn();
  }

  /**
   * Resolves once a write may start: this node hears the change log (its lease holds).
   * A write the source commits while the log is out of reach could not be acknowledged
   * safely, so callers ask before they write; fails with E_LOG_UNAVAILABLE after `waitMs`
   * (5 s by default).
   */
  writable(waitMs?: number): Promise<void> {
    return this.#writes.writable(waitMs);
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
    const { reloads, loads, background } = this.#e;
    while (reloads.busy || loads.inflight.length > 0 || background.running.length > 0) {
      await Promise.allSettled([...loads.inflight, ...background.running]);
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
    this.#kept?.leave(() => this.history(), this.#e.report);
    await this.#e.tiers.close();
  }

  stats(): CacheStats {
    return engineStats(this.#e);
  }
}

export function createCache(options: CacheOptions): Cache {
  return new Cache(options);
}
