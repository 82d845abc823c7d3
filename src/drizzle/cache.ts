import type { Cache as DrizzleCacheContract, MutationOption } from "drizzle-orm/cache/core";
import type { CacheConfig } from "drizzle-orm/cache/core/types";
import { LRUCache } from "lru-cache";
import type { Cache } from "../core/cache/index.ts";
import { type ListDependency, type PlanSchema, tableTag } from "../core/deps/planner.ts";
import { badOption, checkOptionNames, type OptionNames } from "../core/errors.ts";
import type { Warner } from "../core/report.ts";
import type { Store } from "../core/store.ts";
import type { ChangeLog, LogPosition } from "../log/contract.ts";
import { type QueryCapture, startCapture } from "../query-cache/capture.ts";
import { decode, encode, Uncacheable } from "../query-cache/codec.ts";
import { withoutCapturedForms } from "../query-cache/columns.ts";
import { followCapturedWrites, patchableMeta } from "../query-cache/result-patches.ts";
import { SearchPathNames } from "../query-cache/search-path.ts";
import {
  type CapturedWrites,
  type QueryCacheStats,
  QueryStats,
  queryEngine,
} from "../query-cache/stats.ts";
import {
  registrationOf,
  resultRows,
  type SqlDialect,
  type SqlTable,
  sqlShape,
  sqlTables,
  wholeTable,
} from "../sql/analysis/shapes.ts";
import { clientKind } from "../sql/client-kind.ts";
import { sqlDriver } from "../sql/drivers.ts";
import { isBusy } from "../sql/sqlite/dialect.ts";
import { DrizzleCascades } from "./cascades.ts";
import { PendingReads } from "./reads.ts";
import { listOf, type TableRef, tableName } from "./tables.ts";

export interface DrizzleCacheOptions {
  /** Tiers for a cache of its own, fastest first (`[memoryStore()]`). Or pass `cache`. */
  tiers?: Store[];
  /** An edgecache `Cache` to share (its tiers, change log and stats). Or pass `tiers`. */
  cache?: Cache;
  /**
   * With `tiers`: the change log its cache follows (in-process by default). Processes or
   * Worker isolates that share a tier (Redis, KV) share a log too, to stay exact:
   * `redisChangeLog` on Node, `durableChangeLog` on Workers.
   */
  log?: ChangeLog;
  /**
   * "explicit" (Drizzle's default): only queries marked `.$withCache()` are cached.
   * "all": every select is, unless marked `.$withCache(false)`.
   */
  strategy?: "explicit" | "all";
  /** Time to live of a cached query in ms, unless `$withCache({ config })` says otherwise. */
  ttl?: number;
  /** Prefix of this adapter's keys in the cache ("drizzle:"); `clearAll` removes it. */
  prefix?: string;
  logger?: Warner;
  /** Clock in epoch ms for `exat`, `pxat` and `keepTtl` (fake clocks in tests). Default `Date.now`. */
  now?: () => number;
  /**
   * Following change capture, a hot select a write invalidated is run again in the
   * background, so its next read is a hit (default true). False where a select has effects
   * when it runs (`nextval()`), or to see what each write invalidates.
   */
  reload?: boolean;
  /**
   * Following change capture (libSQL, better-sqlite3, postgres.js, D1), a cached select of
   * every column of one table, a page or a primary-key lookup, is patched in place after a
   * write from the write's rows, as the data API patches its responses (default true);
   * otherwise it is invalidated. See docs/guides/drizzle.md, "Patched in place".
   */
  patchInPlace?: boolean;
}

/** What `$withCache({ tables, tags })` and `db.$cache.invalidate` take. */
export interface InvalidateOptions {
  tables?: TableRef | TableRef[];
  tags?: string | string[];
}

/** What `getStats()` returns (the raw SQL entry's are the same). */
export type DrizzleCacheStats = QueryCacheStats;

/** A select's SQL as Drizzle runs it, handed to `put` by `withTransactions`. */
export interface SelectQuery {
  sql: string;
  params: readonly unknown[];
  dialect: SqlDialect;
  /**
   * Runs the select again on the driver, outside any transaction (Drizzle's own callback):
   * given, the engine may reload the result after a write invalidates it (see `followCapture`).
   */
  run?: () => Promise<unknown>;
}

/** A select as Drizzle hands it to `put`, with its SQL where known. */
interface Select {
  tables: string[];
  isTag: boolean;
  config: CacheConfig | undefined;
  query: SelectQuery | undefined;
}

/** What a cached select is reloaded from: its query and how it was stored. */
type Rerun = Select & { query: SelectQuery & { run: () => Promise<unknown> } };

const JSON_TYPE = { "content-type": "application/json" };
const TEXT = new TextDecoder();
/** TTLs of recent puts remembered for `keepTtl`. */
const KEPT_TTLS = 10_000;
/** Selects of recent puts remembered for reloading (the oldest are forgotten first). */
const KEPT_RERUNS = 10_000;

/** Every option of DrizzleCacheOptions: checkOptionNames refuses any other. */
const OPTIONS: OptionNames<DrizzleCacheOptions> = {
  cache: true,
  log: true,
  logger: true,
  now: true,
  patchInPlace: true,
  prefix: true,
  reload: true,
  strategy: true,
  tiers: true,
  ttl: true,
};
/**
 * A Drizzle ORM cache (`drizzle(client, { cache })`) on edgecache's engine.
 *
 * @example
 * const db = drizzle(client, { cache: drizzleCache({ tiers: [memoryStore()], strategy: "all" }) });
 */
export class EdgecacheDrizzleCache implements DrizzleCacheContract {
  readonly engine: Cache;
  #strategy: "explicit" | "all";
  #ttl: number;
  #prefix: string;
  #reads = new PendingReads();
  /** Key -> expiry (epoch ms) of its last put, for `keepTtl`. */
  #expiries = new Map<string, number>();
  #now: () => number;
  #stats: QueryStats;
  /** Tables' primary keys and column kinds, learned from the Drizzle tables queries use. */
  #schema = new Map<string, SqlTable>();
  /** Primary keys capture read from the database catalog (when this cache owns its engine). */
  #catalog: PlanSchema | undefined;
  #ownsEngine: boolean;
  /** Whether hot selects a captured write invalidated are run again (see `reload`). */
  #reload: boolean;
  /** Whether cached selects may be patched in place (see `patchInPlace`). */
  #patchInPlace: boolean;
  /** Set once captured writes reach this engine in an order patches follow: results are then patched. */
  #patching = false;
  /** The captured writes this cache's own in-process log hears of (see `followCapture`). */
  #captured: CapturedWrites | undefined;
  #logger: Warner;
  #warnedBusy = false;
  #capture: QueryCapture | undefined;
  /** Reads the catalog's foreign keys when capture is not followed (`capture: false`). */
  #catalogReader: QueryCapture | undefined;
  /** Key -> the select behind it, for the engine's reload of hot invalidated keys. */
  #reruns = new LRUCache<string, Rerun>({ max: KEPT_RERUNS });
  /** Foreign keys whose actions change other tables' rows (see `cascade`). */
  #cascades = new DrizzleCascades();

  constructor(options: DrizzleCacheOptions) {
    const c = "drizzle";
    checkOptionNames(c, options, OPTIONS);
    const strategy = options?.strategy ?? "explicit";
    if (strategy !== "explicit" && strategy !== "all") {
      badOption(c, "strategy", '"explicit" or "all"', strategy);
    }
    const { engine, ttl, prefix, owns, outside } = queryEngine(
      c,
      options,
      "drizzle:",
      this.#planSchema(),
    );
    this.engine = engine;
    this.#captured = outside;
    this.#strategy = strategy;
    this.#ttl = ttl;
    this.#prefix = prefix;
    this.#now = options.now ?? Date.now;
    this.#ownsEngine = owns;
    if (options.reload !== undefined && typeof options.reload !== "boolean") {
      badOption(c, "reload", "a boolean", options.reload);
    }
    this.#reload = options.reload ?? true;
    if (options.patchInPlace !== undefined && typeof options.patchInPlace !== "boolean") {
      badOption(c, "patchInPlace", "a boolean", options.patchInPlace);
    }
    this.#patchInPlace = options.patchInPlace ?? true;
    const logger = options.logger ?? { warn: (m, e) => console.warn(m, e ?? "") };
    this.#logger = logger;
    this.#stats = new QueryStats("drizzle", logger);
  }

  strategy(): "explicit" | "all" {
    return this.#strategy;
  }

  /** Drizzle asks before running a select; undefined runs it. */
  get(
    key: string,
    tables: string[],
    isTag: boolean,
    _autoInvalidate?: boolean,
  ): Promise<unknown[] | undefined> {
    return this.getSelect(key, tables, isTag, undefined);
  }

  /**
   * `get` with the select's SQL (`withTransactions` passes it): its lookups are then counted
   * under its query shape in the stats too.
   */
  async getSelect(
    key: string,
    tables: string[],
    isTag: boolean,
    query: Pick<SelectQuery, "sql"> | undefined,
  ): Promise<unknown[] | undefined> {
    await this.#capture?.want(tables);
    const k = this.#key(key, isTag);
    // Taken before the lookup: the query runs after it, so its result is at least this new.
    const since = this.engine.position;
    try {
      const entry = await this.engine.getEntry(k);
      if (entry) {
        const value = decode(TEXT.decode(entry.body));
        this.#stats.lookup(true, query?.sql);
        return value as unknown[];
      }
    } catch (err) {
      this.#stats.fault("get", err);
    }
    this.#stats.lookup(false, query?.sql);
    this.engine.countRead(k, "miss");
    this.#reads.begin(k, since);
    return undefined;
  }

  /** Drizzle hands over what a select returned after a miss. */
  put(
    key: string,
    response: unknown,
    tables: string[],
    isTag: boolean,
    config?: CacheConfig,
  ): Promise<void> {
    return this.putSelect(key, response, tables, isTag, config, undefined);
  }

  /**
   * `put` with the select's SQL and parameters (`withTransactions` passes them): the result
   * then registers what it depends on, its rows and predicate where the SQL says so
   * (`sqlShape`), besides its tables. Without them, or with Drizzle's automatic
   * invalidation off (no tables), it registers as `put` always did.
   */
  async putSelect(
    key: string,
    response: unknown,
    tables: string[],
    isTag: boolean,
    config: CacheConfig | undefined,
    query: SelectQuery | undefined,
  ): Promise<void> {
    const since = this.#reads.end(this.#key(key, isTag));
    await this.#store(key, response, { tables, isTag, config, query }, since);
  }

  /**
   * Stores a select's result as a load that began at `since` (undefined: refused), so the
   * write fence refuses it if a change since then concerns it.
   */
  async #store(
    key: string,
    response: unknown,
    { tables, isTag, config, query }: Select,
    since: LogPosition | undefined,
  ): Promise<void> {
    const k = this.#key(key, isTag);
    let body: string;
    try {
      // Before anything awaits: the caller gets `response` back and may change it.
      body = encode(response);
    } catch (err) {
      if (!(err instanceof Uncacheable)) throw err;
      this.#stats.uncacheable(err);
      return;
    }
    if (since === undefined) {
      this.#stats.counts.fenced++;
      return;
    }
    const now = this.#now();
    const ttl = ttlOf(config, now, this.#expiries.get(k)) ?? this.#ttl;
    if (ttl <= 0) return;
    try {
      const drizzleNames = tables.map(tableName);
      if (this.#names?.changed && drizzleNames.some((t) => !t.includes("."))) {
        this.#stats.uncacheable(new Error("a statement changed the session's search_path"));
        return;
      }
      const registered =
        query && drizzleNames.length > 0
          ? this.#register(query, response, drizzleNames)
          : undefined;
      if (registered?.unread) {
        // Drizzle names the tables of its FROM and joins only: a subquery or a `sql`
        // fragment may read others, which only the parser would have found.
        this.#stats.uncacheable(new Error("its SQL could not be read for the tables it reads"));
        return;
      }
      // Every table the query reads, by the parser's count too: a write through Drizzle
      // to a table read only in a subquery drops it (Drizzle would name just the FROM's).
      const names = [...new Set([...drizzleNames, ...(registered?.tables ?? [])])];
      const tags = names.map((t) => this.#tableTag(t));
      if (isTag) tags.push(this.#userTag(key));
      const { tags: depends, lists } = registered ?? wholeTables(names);
      const meta = registered?.meta;
      const { stored } = await this.engine.storeLoaded(
        k,
        {
          body,
          headers: JSON_TYPE,
          tags: [...tags, ...depends],
          ...(lists.length > 0 && { lists }),
          ...(meta && { meta }),
          ttl,
          staleWhileRevalidate: 0,
        },
        since,
        // Only a result that may be patched needs the log's word on whether its load was
        // exact (with capture, a look at the change table), and before the select returns:
        // a write right after it would otherwise remove what it could patch. Others are
        // never asked, and do not wait for the shared tiers either.
        meta === undefined ? { later: true, exact: false } : undefined,
      );
      if (!stored) {
        this.#stats.counts.fenced++;
        return;
      }
      this.#stats.stored(names);
      if (query?.run && this.#capture) {
        this.#reruns.set(k, { query: { ...query, run: query.run }, tables, isTag, config });
      }
      this.#expiries.delete(k);
      this.#expiries.set(k, now + ttl);
      if (this.#expiries.size > KEPT_TTLS)
        this.#expiries.delete(this.#expiries.keys().next().value!);
    } catch (err) {
      this.#stats.fault("put", err);
    }
  }

  /**
   * Drizzle calls this for each insert, update and delete, and `db.$cache.invalidate` is
   * this method: every cached query that read one of `tables`, or was cached with one of
   * `tags`, goes from every tier. Tables may be Drizzle tables or names (see `tableName`).
   */
  onMutate = async (params: MutationOption | InvalidateOptions): Promise<void> => {
    const tags = [
      ...listOf<TableRef>(params?.tables as TableRef | TableRef[] | undefined).map((t) =>
        this.#tableTag(tableName(t)),
      ),
      ...listOf(params?.tags).map((t) => this.#userTag(t)),
    ];
    if (tags.length === 0) return;
    try {
      await this.engine.invalidate({ tags });
    } catch (err) {
      this.#stats.fault("invalidate", err);
    }
  };

  /** The same as `onMutate`, by the name Drizzle users call it (`db.$cache.invalidate`). */
  invalidate(params: InvalidateOptions): Promise<void> {
    return this.onMutate(params);
  }

  /** Removes every cached query of this adapter from every tier. */
  async clearAll(): Promise<void> {
    try {
      await this.engine.invalidate({ prefix: this.#prefix });
    } catch (err) {
      this.#stats.fault("clear", err);
    }
  }

  /**
   * A statement through Drizzle failed. One that failed with SQLITE_BUSY on a libSQL client
   * is worth a warning (once): libSQL does not reset the statement, so that connection stays
   * inside its implicit transaction, and the application's later writes on it are answered
   * and never committed (reproduced without any cache). A busy timeout avoids the failure.
   */
  statementFailed(client: unknown, err: unknown): void {
    if (this.#warnedBusy || clientKind(client) !== "libsql") return;
    const cause = (err as { cause?: unknown } | undefined)?.cause;
    if (!isBusy(err) && !isBusy(cause)) return;
    this.#warnedBusy = true;
    this.#logger.warn(
      "[edgecache] [drizzle] a statement failed with SQLITE_BUSY on the application's libSQL client: libSQL leaves that connection in a transaction that never commits, so its later writes are lost. Give the client a busy timeout: createClient({ url, timeout: 5000 })",
    );
  }

  /**
   * Follows change capture in the database behind `client` (drizzle's `db.$client`), if it
   * is a client capture knows; `withTransactions` calls this. Returns the follower.
   */
  followCapture(client: unknown): QueryCapture | undefined {
    if (this.#capture) return this.#capture;
    this.#readSearchPath(client);
    const engine = this.engine;
    const capture = startCapture(client, engine, {
      // The catalog's primary keys stand in for tables no query has taught (learnTable); a
      // shared engine's schema is its owner's (a data API): events then go by table.
      ...(this.#ownsEngine && {
        setSchema: (schema) => {
          this.#catalog = schema;
        },
        kinds: (table) => this.#table(table)?.columns,
      }),
      foreignKeys: (actions) => this.#cascades.setCatalog(actions),
      schemas: () => this.#cascades.schemas(),
      logger: { warn: (m) => this.#logger.warn(m) },
    });
    this.#capture = capture;
    // Following capture, every change reaches the planner with its rows, so the engine can
    // reload a hot select a write invalidated: never on a shared engine (its owner's hooks).
    // Captured writes in an order patches may follow may patch cached results too.
    if (capture && this.#ownsEngine) {
      ({ patching: this.#patching } = followCapturedWrites(engine, capture, this.#captured, {
        prefix: this.#prefix,
        patchInPlace: this.#patchInPlace,
        ...(this.#reload && { refetch: (k: string) => this.#refetch(k) }),
      }));
    }
    return capture;
  }

  /**
   * Reads the foreign keys of the database behind `client` (for `cascade`) without following
   * its change capture, if it is a client capture knows; `withTransactions` calls this when
   * told not to follow capture.
   */
  readCatalog(client: unknown): void {
    if (this.#capture || this.#catalogReader) return;
    this.#readSearchPath(client);
    this.#catalogReader = startCapture(client, this.engine, {
      follow: false,
      foreignKeys: (actions) => this.#cascades.setCatalog(actions),
      schemas: () => this.#cascades.schemas(),
      logger: { warn: (m) => this.#logger.warn(m) },
    });
  }

  /** PostgreSQL: where the session's search path finds the tables Drizzle declares bare. */
  #names: SearchPathNames | undefined;

  #readSearchPath(client: unknown): void {
    const driver = sqlDriver(client);
    if (driver?.dialect !== "postgres" || this.#names) return;
    const warn = (m: string) => this.#logger.warn(`[edgecache] [drizzle] ${m}`);
    this.#names = new SearchPathNames(driver, () => this.clearAll(), warn);
  }

  /**
   * Whether capture's changes of `table` (Drizzle's name) are those of the table Drizzle's
   * statements reach. A table declared without a schema is named as capture names
   * `public`'s, but PostgreSQL finds it through the session's search path
   * (`-c search_path=app`): where that is another schema's table, or cannot be told, its
   * writes go by table, never settled by the changes of `public`'s table of that name.
   */
  capturedAs(table: string): boolean {
    if (!this.#names || table.includes(".")) return true;
    return this.#names.resolve(table) === "public";
  }

  /**
   * A statement Drizzle prepares: one that changes the session's search path or role
   * empties this cache (its bare names may reach other tables now), and from then on a
   * select of a table declared without a schema is not cached.
   */
  seen(sql: string): void {
    if (this.#names?.seen(sql)) void this.clearAll();
  }

  /**
   * Reloads `k` in the background: its select runs again on the driver and the result is
   * stored as a load that began now, so a write that overlaps the reload fences it out.
   */
  async #refetch(k: string): Promise<void> {
    const rerun = this.#reruns.get(k);
    if (!rerun || !this.#capture) return;
    const since = this.engine.position;
    const response = await rerun.query.run();
    await this.#store(k.slice(this.#key("", rerun.isTag).length), response, rerun, since);
  }

  /**
   * Resolves once every change capture recorded before the call has been applied (true),
   * or at once with false when this node does not follow capture. A write made around
   * Drizzle is seen by reads after this.
   */
  async catchUp(): Promise<boolean> {
    return (await this.#capture?.catchUp()) ?? false;
  }

  /** Stops following change capture (its timers, and a PostgreSQL connection of its own). */
  async close(): Promise<void> {
    this.#names?.close();
    await this.#capture?.close();
    await this.#catalogReader?.close();
  }

  getStats(): DrizzleCacheStats {
    const tag = (t: string) => this.#tableTag(t);
    return this.#stats.stats(this.engine, this.#prefix, tag, this.#capture);
  }

  /**
   * Teaches the cache a table's primary key and column kinds (`withTransactions` does, from
   * the tables of each select's columns). The planner reads the primary keys too.
   */
  learnTable(name: string, table: SqlTable): void {
    this.#schema.set(name, table);
  }

  /**
   * `tables` (Drizzle's names) and every table a change of theirs may change through the
   * foreign keys' actions (ON DELETE CASCADE...), transitively: read from the database's
   * catalog when capture knows its client (refreshed with it), else from the Drizzle tables
   * the cache has seen (`learnForeignKeys`).
   */
  cascade(tables: readonly unknown[]): string[] {
    return this.#cascades.reach(tables.map((t) => tableName(t as TableRef)));
  }

  /** `cascade` once the database's catalog has been read a first time (when it is read at all). */
  async cascadeKnown(tables: readonly unknown[]): Promise<string[]> {
    await (this.#capture ?? this.#catalogReader)?.started;
    return this.cascade(tables);
  }

  /** Teaches the cache a Drizzle table's foreign keys (`withTransactions` does, from its schema and selects). */
  learnForeignKeys(table: object): void {
    this.#cascades.learn(table);
  }

  /**
   * The tables a select's SQL reads anywhere (subqueries included), or undefined when the
   * SQL cannot be read: for queries Drizzle hands over without their tables (relational ones).
   */
  tablesRead(sql: string, dialect: SqlDialect): string[] | undefined {
    const tables = sqlTables(sql, dialect);
    return tables === undefined || tables.length === 0 ? undefined : [...tables];
  }

  /**
   * What a select's result depends on, in the planner's tags (`users`, `users#1`) and lists:
   * the adapter's own table tags stay beside them, for `onMutate` and the stats.
   */
  #register(query: SelectQuery, response: unknown, names: string[]) {
    const shape = sqlShape(query.sql, query.params, query.dialect, (t) => this.#table(t));
    const registration = registrationOf(shape, resultRows(response));
    this.#stats.registrations.count(shape, registration.widened, query.sql);
    const meta = this.#patching ? patchableMeta(shape, (t) => this.#table(t)) : undefined;
    // Drizzle's tables as the planner knows them too, in case the parser missed one: a
    // write it cannot analyse drops the table tag, any other the whole-table list.
    for (const t of names) {
      if (shape.tables.includes(t)) continue;
      registration.tags.push(tableTag(t));
      registration.lists.push(wholeTable(t));
    }
    return { ...registration, meta, tables: shape.tables, unread: shape.fallback === "parse" };
  }

  /**
   * What the planner knows of a table: as learned, but with floats and instants neither
   * compared nor ordered by where captured changes may come in another form: on a shared
   * engine (its owner's changes), or while capture's triggers may record them otherwise
   * (see QueryCapture.recordsForms).
   */
  #table(name: string): SqlTable | undefined {
    const table = this.#schema.get(name);
    const forms = this.#ownsEngine && (!this.#capture || this.#capture.recordsForms());
    return table && !forms ? withoutCapturedForms(table) : table;
  }

  #planSchema(): PlanSchema {
    return {
      primaryKey: (table) =>
        this.#schema.get(table)?.primaryKey ?? this.#catalog?.primaryKey(table),
      joinColumns: () => [],
      // Learned without a single-column key: the shapes register lists for its rows read.
      keyless: (table) => {
        const known = this.#schema.get(table);
        return known !== undefined && known.primaryKey === undefined;
      },
    };
  }

  #key(key: string, isTag: boolean): string {
    return `${this.#prefix}${isTag ? "tag:" : "q:"}${key}`;
  }

  #tableTag(table: string): string {
    return `${this.#prefix}table:${table}`;
  }

  #userTag(tag: string): string {
    return `${this.#prefix}tag:${tag}`;
  }
}

/**
 * What a query that read `tables` depends on when its SQL is not known: every row of each
 * table (a list without filter or bound), and the table tag for writes the planner cannot
 * analyse. A captured change to any row of them removes it.
 */
function wholeTables(tables: readonly string[]): { tags: string[]; lists: ListDependency[] } {
  return { tags: tables.map(tableTag), lists: tables.map(wholeTable) };
}

/**
 * The TTL in ms that `$withCache({ config })` asks for, or undefined for the default.
 * `ex`/`px` are relative (seconds, ms), `exat`/`pxat` absolute (Unix seconds, ms), as in
 * Redis SET; `keepTtl` keeps the expiry of the key's previous put, if it is still ahead.
 */
export function ttlOf(
  config: CacheConfig | undefined,
  now: number,
  previousExpiry: number | undefined,
): number | undefined {
  if (!config) return undefined;
  if (config.px !== undefined) return config.px;
  if (config.ex !== undefined) return config.ex * 1000;
  if (config.pxat !== undefined) return config.pxat - now;
  if (config.exat !== undefined) return config.exat * 1000 - now;
  if (config.keepTtl && previousExpiry !== undefined && previousExpiry > now) {
    return previousExpiry - now;
  }
  return undefined;
}

/**
 * A Drizzle ORM cache on edgecache: pass it as `drizzle(client, { cache })`.
 *
 * @example
 * import { drizzle } from "drizzle-orm/libsql";
 * import { drizzleCache, withTransactions } from "edgecache/drizzle";
 * import { memoryStore } from "edgecache/stores/memory";
 * const db = withTransactions(
 *   drizzle(client, { cache: drizzleCache({ tiers: [memoryStore()], strategy: "all" }) }),
 * );
 */
export function drizzleCache(options: DrizzleCacheOptions): EdgecacheDrizzleCache {
  return new EdgecacheDrizzleCache(options);
}
