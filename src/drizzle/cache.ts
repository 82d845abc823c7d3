import type { Cache as DrizzleCacheContract, MutationOption } from "drizzle-orm/cache/core";
import type { CacheConfig } from "drizzle-orm/cache/core/types";
import type { Cache } from "../core/cache/index.ts";
import type { ChangeLog } from "../core/change-log/contract.ts";
import { badOption, checkOptionNames, type OptionNames } from "../core/errors.ts";
import type { Warner } from "../core/report.ts";
import type { Store } from "../core/store.ts";
import type { HiddenKeys } from "../database/analysis/hidden-keys.ts";
import { type SqlDialect, type SqlTable, sqlTables } from "../database/analysis/shapes.ts";
import { clientKind } from "../database/client-kind.ts";
import { sqlDriver } from "../database/drivers.ts";
import { isBusy } from "../database/sqlite/dialect.ts";
import type { QueryCapture } from "../query-cache/query-capture.ts";
import type { ResultForm, StoreOptions, Ticket } from "../query-cache/statement-contract.ts";
import { StatementCache } from "../query-cache/statements.ts";
import type { QueryCacheStats } from "../query-cache/stats.ts";
import { DrizzleCascades } from "./cascades.ts";
import { PendingReads } from "./reads.ts";
import { listOf, type TableRef, tableName } from "./tables.ts";
import { valuesRunner } from "./values.ts";

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
  /**
   * How many columns Drizzle reads of each row, by position (a query builder's select's
   * fields): given, the adapter may run the statement itself, with hidden keys carried, and
   * hand Drizzle the columns it asked for.
   */
  columns?: number;
  /** What `put` would be given: `$withCache({ config })`, and whether tables invalidate it. */
  config?: CacheConfig;
  autoInvalidate?: boolean;
}

/**
 * A result run with hidden keys (see `getSelect`): its rows carry `hidden` base columns
 * after those Drizzle asked for.
 */
interface Carried {
  rows: ArrayLike<unknown>[];
  hidden: number;
  /** Drizzle reads the rows of a result object (node-postgres), not an array of them. */
  wrapped?: true;
}

/** The clients whose Drizzle drivers' selects may run with hidden keys (see followCapture). */
const CARRIES = new Set<string | undefined>(["libsql", "postgres.js", "node-postgres"]);

/** TTLs of recent puts remembered for `keepTtl`. */
const KEPT_TTLS = 10_000;

/** Drizzle's results are kept whole: the rows (or a relational query's raw rows) it hands over. */
const WHOLE: ResultForm<unknown> = { kept: (response) => response, restored: (kept) => kept };

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
 * A Drizzle ORM cache (`drizzle(client, { cache })`) on edgecache's engine: Drizzle's cache
 * contract over the statement cache, as Kysely's and Prisma's entries are. What is Drizzle's
 * stays here: its method names, `strategy`, `$withCache` configs and tags, the pairing of a
 * `put` with its `get`, and what Drizzle's table objects teach (keys, column kinds, foreign
 * keys); storing, reloads, capture, invalidation, the search path and stats are the
 * statement cache's.
 *
 * @example
 * const db = drizzle(client, { cache: drizzleCache({ tiers: [memoryStore()], strategy: "all" }) });
 */
export class EdgecacheDrizzleCache implements DrizzleCacheContract {
  readonly engine: Cache;
  #statements: StatementCache<unknown>;
  #strategy: "explicit" | "all";
  #reads = new PendingReads();
  /** Key -> expiry (epoch ms) of its last put, for `keepTtl`. */
  #expiries = new Map<string, number>();
  #now: () => number;
  /** Tables' primary keys and column kinds, learned from the Drizzle tables queries use. */
  #schema = new Map<string, SqlTable>();
  #logger: Warner;
  #warnedBusy = false;
  /** Foreign keys whose actions change other tables' rows (see `cascade`). */
  #cascades = new DrizzleCascades();
  /**
   * Runs a select on the application's client as Drizzle does (rows by position), where
   * capture is followed: group patches' statements, and selects with hidden keys.
   */
  #run: ((sql: string, params: readonly unknown[]) => Promise<unknown>) | undefined;
  /** Drizzle's driver reads a select's rows from a result object (node-postgres). */
  #wrapped: true | undefined;

  constructor(options: DrizzleCacheOptions) {
    const c = "drizzle";
    checkOptionNames(c, options, OPTIONS);
    const strategy = options?.strategy ?? "explicit";
    if (strategy !== "explicit" && strategy !== "all") {
      badOption(c, "strategy", '"explicit" or "all"', strategy);
    }
    for (const name of ["reload", "patchInPlace"] as const) {
      const value = options[name];
      if (value !== undefined && typeof value !== "boolean") badOption(c, name, "a boolean", value);
    }
    const { strategy: _strategy, now, ...engine } = options;
    this.#strategy = strategy;
    this.#now = now ?? Date.now;
    this.#logger = options.logger ?? { warn: (m, e) => console.warn(m, e ?? "") };
    this.#statements = new StatementCache<unknown>(
      {
        component: c,
        defaultPrefix: "drizzle:",
        // Told by the driver once `withTransactions` attaches it; each select says its own.
        dialect: "sqlite",
        form: WHOLE,
        tables: (table) => this.#schema.get(table),
        cascades: this.#cascades,
        storesLater: true,
      },
      { ...engine, logger: this.#logger },
    );
    this.engine = this.#statements.engine;
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
    query: SelectQuery | undefined,
  ): Promise<unknown[] | undefined> {
    const name = keyName(key, isTag);
    // With its parameters, a lookup of one row may be answered from a held result.
    const hides = this.#run !== undefined && (query?.columns ?? 0) > 0;
    const looked = await this.#statements.lookupKey(name, query?.sql, tables, query, hides);
    if (looked.found) return shown(looked.result, query?.columns) as unknown[];
    if (looked.hidden && query) {
      const rows = await this.#runCarried(name, looked.ticket, looked.hidden, tables, isTag, query);
      if (rows) return rows as unknown[];
    }
    this.#reads.begin(name, looked.ticket.since);
    return undefined;
  }

  /**
   * A miss of a select that does not show the columns naming its rows (the Conduit list
   * shows `slug`, not `articles.id`): run here with them carried after its own, stored so
   * (registered by its rows, maintained by group patches), and handed to Drizzle without
   * them, as its own statement would have returned. Drizzle then stores nothing (it puts
   * only what it ran). Undefined where the statement failed: Drizzle runs its own.
   */
  async #runCarried(
    name: string,
    ticket: Ticket,
    hidden: HiddenKeys,
    tables: string[],
    isTag: boolean,
    query: SelectQuery,
  ): Promise<unknown> {
    const run = this.#run!;
    const wrapped = this.#wrapped;
    const carried = async (): Promise<Carried> => ({
      rows: (await run(hidden.sql, hidden.params)) as ArrayLike<unknown>[],
      hidden: hidden.hidden,
      ...(wrapped && { wrapped }),
    });
    let result: Carried;
    try {
      result = await carried();
    } catch {
      return undefined;
    }
    const { dialect, config, autoInvalidate = true } = query;
    const ran = { sql: hidden.sql, params: hidden.params, dialect, run: carried };
    const put = autoInvalidate ? tables : [];
    const options = { ...this.#stored(name, put, isTag, config, ran), asked: query.sql };
    await this.#statements.store(ticket, result, options);
    return shown(result, query.columns);
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
    const name = keyName(key, isTag);
    // Drizzle ties no put to its get: stored as a load that began at its own read's
    // position or before (see PendingReads), or refused as fenced.
    const since = this.#reads.end(name);
    const ticket = { key: this.#statements.key(name), since };
    await this.#statements.store(
      ticket,
      response,
      this.#stored(name, tables, isTag, config, query),
    );
  }

  /** How a select's result is stored (and stored again when it is reloaded). */
  #stored(
    name: string,
    tables: string[],
    isTag: boolean,
    config: CacheConfig | undefined,
    query: SelectQuery | undefined,
  ): StoreOptions<unknown> {
    let now = 0;
    return {
      ...(query && { query: { sql: query.sql, params: query.params, dialect: query.dialect } }),
      tables: tables.map(tableName),
      ...(isTag && { tags: [name.slice("tag:".length)] }),
      ttl: () => {
        now = this.#now();
        return ttlOf(config, now, this.#expiries.get(name));
      },
      stored: (ttl) => {
        this.#expiries.delete(name);
        this.#expiries.set(name, now + ttl);
        if (this.#expiries.size > KEPT_TTLS) {
          this.#expiries.delete(this.#expiries.keys().next().value!);
        }
      },
      ...(query?.run && { rerun: query.run }),
    };
  }

  /**
   * Drizzle calls this for each insert, update and delete, and `db.$cache.invalidate` is
   * this method: every cached query that read one of `tables`, or was cached with one of
   * `tags`, goes from every tier. Tables may be Drizzle tables or names (see `tableName`).
   */
  onMutate = async (params: MutationOption | InvalidateOptions): Promise<void> => {
    const tables = listOf<TableRef>(params?.tables as TableRef | TableRef[] | undefined);
    await this.#statements.drop(tables.map(tableName), listOf(params?.tags));
  };

  /** The same as `onMutate`, by the name Drizzle users call it (`db.$cache.invalidate`). */
  invalidate(params: InvalidateOptions): Promise<void> {
    return this.onMutate(params);
  }

  /** Removes every cached query of this adapter from every tier. */
  clearAll(): Promise<void> {
    return this.#statements.invalidate();
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
   * is a client capture knows; `withTransactions` calls this. `run` runs a select on it by
   * position, as Drizzle does (through edgecache's proxy where Drizzle reaches the client
   * by one: `proxied`). Returns the follower.
   */
  followCapture(
    client: unknown,
    run = valuesRunner(client),
    proxied = false,
  ): QueryCapture | undefined {
    const capture = this.#statements.attach(client, sqlDriver(client), true, run);
    // Selects are run with hidden keys where Drizzle's driver reads a query builder's rows
    // in one form whatever the method (an array of rows; node-postgres: a result's rows),
    // on the client itself: not through a proxy, whose `get` is handed one row.
    const kind = clientKind(client);
    if (capture && run && !proxied && CARRIES.has(kind)) this.#run = run;
    if (kind === "node-postgres") this.#wrapped = true;
    return capture;
  }

  /**
   * Reads the foreign keys of the database behind `client` (for `cascade`) without following
   * its change capture, if it is a client capture knows; `withTransactions` calls this when
   * told not to follow capture.
   */
  readCatalog(client: unknown): void {
    this.#statements.attach(client, sqlDriver(client), false);
  }

  /**
   * Whether capture's changes of `table` (Drizzle's name) are those of the table Drizzle's
   * statements reach (see StatementCache.capturedAs).
   */
  capturedAs(table: string): boolean {
    return this.#statements.capturedAs(table);
  }

  /**
   * A statement Drizzle prepares: one that changes the session's search path or role
   * empties this cache (its bare names may reach other tables now), and from then on a
   * select of a table declared without a schema is not cached.
   */
  seen(sql: string): void {
    void this.#statements.seen(sql);
  }

  /**
   * Resolves once every change capture recorded before the call has been applied (true),
   * or at once with false when this node does not follow capture. A write made around
   * Drizzle is seen by reads after this.
   */
  catchUp(): Promise<boolean> {
    return this.#statements.catchUp();
  }

  /** Stops following change capture (its timers, and a PostgreSQL connection of its own). */
  close(): Promise<void> {
    return this.#statements.close();
  }

  getStats(): DrizzleCacheStats {
    return this.#statements.getStats();
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
    await this.#statements.catalogRead();
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
}

/**
 * What Drizzle is handed of a stored result: a carried one without its hidden keys, cut to
 * the `columns` Drizzle reads where known (a lookup answered from a held result that
 * carries columns this select shows itself, or none).
 */
function shown(result: unknown, columns?: number): unknown {
  const r = result as Partial<Carried> | undefined;
  if (Array.isArray(result) || typeof r?.hidden !== "number" || !Array.isArray(r.rows)) {
    return result;
  }
  const hidden = r.hidden;
  const rows = r.rows.map((row) =>
    Array.prototype.slice.call(row, 0, columns ?? row.length - hidden),
  );
  return r.wrapped ? { rows } : rows;
}

/** A Drizzle key under the adapter's prefix: a query's hash, or a `$withCache({ tag })`. */
function keyName(key: string, isTag: boolean): string {
  return `${isTag ? "tag:" : "q:"}${key}`;
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
