import type { Cache } from "../core/cache/index.ts";
import type { ChangeLog, LogPosition } from "../core/change-log/contract.ts";
import type { OptionNames } from "../core/errors.ts";
import type { Warner } from "../core/report.ts";
import type { Store } from "../core/store.ts";
import type { SqlShape, SqlTable } from "../database/analysis/shapes.ts";
import type { SqlClient, SqlResult, SqlRow } from "../database/client.ts";
import type { Cascades } from "./cascades.ts";
import type { Conversion } from "./columns.ts";
import type { QueryCacheStats } from "./stats.ts";

/**
 * What an entry on the statement cache (raw SQL, Kysely, Prisma, Drizzle) gives it and gets
 * from it: its options, what it knows of its database, how results are kept, and the two
 * halves of a read (statements.ts's `lookup` and `store`).
 */

/**
 * Every option of an entry on the statement cache (raw SQL, Kysely, Prisma): its own
 * `client` and `prefix` besides these; checkOptionNames refuses any other.
 */
export const STATEMENT_CACHE_OPTIONS: OptionNames<
  StatementCacheOptions & { client?: unknown; prefix?: string }
> = {
  cache: true,
  capture: true,
  client: true,
  log: true,
  logger: true,
  patchInPlace: true,
  prefix: true,
  reload: true,
  tiers: true,
  ttl: true,
};

/** What every entry on the statement cache is given by its user. */
export interface StatementCacheOptions {
  /** Tiers for a cache of its own, fastest first (`[memoryStore()]`). Or pass `cache`. */
  tiers?: Store[];
  /** An edgecache `Cache` to share (its tiers, change log and stats). Or pass `tiers`. */
  cache?: Cache;
  /** With `tiers`: the change log its cache follows (in-process by default). */
  log?: ChangeLog;
  /** Time to live of a cached query in ms (an hour by default). */
  ttl?: number;
  /** Prefix of this entry's keys in the cache. */
  prefix?: string;
  /**
   * Follow change capture when it is installed in the database (true by default). False
   * keeps table-level invalidation by writes.
   */
  capture?: boolean;
  /**
   * While capture is followed, run a hot query again in the background after a write
   * invalidated it, so its next read is a hit (true by default; as the Drizzle adapter).
   */
  reload?: boolean;
  /**
   * While capture is followed, a cached select of every column of one table (named,
   * not `*`), a page or a primary-key lookup, is patched in place after a write from the
   * write's rows (true by default; as the Drizzle adapter).
   */
  patchInPlace?: boolean;
  logger?: Warner;
}

/** Runs one statement with its parameters somewhere (a client, a connection). */
export type RunStatement<R = SqlResult> = (sql: string, params: readonly unknown[]) => Promise<R>;

/**
 * How a statement's result is kept in the cache and given back on a hit. By default the
 * rows alone are kept (a hit answers them with `rowsAffected: 0`); an ORM whose driver
 * returns more (Prisma's column names and types) keeps its result whole. What is kept is
 * an array of rows, or an object whose `rows` are (by position or by column name): it is
 * registered and patched by those rows.
 */
export interface ResultForm<R> {
  kept(result: R): unknown;
  restored(kept: unknown): R;
  /** Whether a captured write may patch this result in place (any, by default). */
  patchable?(result: R): boolean;
  /**
   * What is kept with a patch's rows, which come as stored (a number as a number): in the
   * form the driver would give that result, or undefined where it cannot be told. By
   * default the rows replace the kept ones.
   */
  patched?(kept: unknown, rows: unknown[]): unknown;
}

export const ROWS: ResultForm<SqlResult> = {
  kept: (result) => result.rows,
  restored: (rows) => ({ rows: rows as SqlRow[], rowsAffected: 0 }),
};

/** What an entry knows of its database, beside what its user gives. */
export interface StatementDatabase<R = SqlResult> {
  /** Its name in messages and stats ("sql", "kysely"). */
  component: string;
  /** Its keys' prefix unless the user gives one. */
  defaultPrefix: string;
  dialect: SqlClient["dialect"];
  /**
   * The database's catalog, where it can be read: column kinds while capture is followed,
   * and on PostgreSQL the search path that places tables named without their schema.
   */
  catalog?: Catalog;
  /** The application's client behind it, whose change capture is followed (clientCapture). */
  client?: unknown;
  /**
   * Runs a read again in the background (a hot query reloaded), on a connection of its own;
   * `keyed` is what `read` was given as such. Without it (Drizzle's), a read's own `rerun`
   * (see StoreOptions) is run, or none.
   */
  rerun?: (sql: string, params: readonly unknown[], keyed: unknown) => Promise<R>;
  /**
   * Runs a select the cache wrote itself (a group patch's statement for a result's changed
   * rows), where `rerun` runs its reloads (the application's client, or a connection of the
   * entry's own). Without it, results are not kept by group patches.
   */
  query?: (sql: string, params: readonly unknown[]) => Promise<R>;
  /** How results are kept (their rows alone by default). */
  form?: ResultForm<R>;
  /**
   * Column kinds are read from the catalog aside, never waited for by a statement: where
   * the caller holds one of the application's pooled connections while its statement runs
   * (Kysely on PostgreSQL), and a catalog read on that pool could wait for it forever.
   */
  learnAside?: boolean;
  /**
   * The driver returns some values in another form than the database holds them: a SQLite
   * column ordered by its values as stored ("ordered") is not ordered by then, since the
   * result's last values would not be those a captured change is compared with. Or, by
   * such a column's declared type, which of its values it converts (see Conversion).
   */
  converts?: boolean | ((declared: string) => Conversion);
  /**
   * Whether instants come, now, as Prisma's pg adapter gives them
   * (`2024-05-17T09:41:07.123+00:00`: the instant while the session's TimeZone is UTC).
   * Unset: they do not.
   */
  isoInstants?: () => boolean;
  /**
   * Tables as the ORM describes them (Drizzle's table objects): where given, their primary
   * keys and column kinds stand in for the catalog's in what reads register (a table it
   * does not describe registers by table), and the catalog's primary keys serve the planner
   * only for tables it does not describe.
   */
  tables?: (table: string) => SqlTable | undefined;
  /** Foreign keys the ORM declares besides the catalog's (Drizzle's tables): see Cascades. */
  cascades?: Cascades;
  /**
   * A result that cannot be patched is stored without asking the log whether its load was
   * exact, and served before the shared tiers have it (the engine's `later`): Drizzle's.
   */
  storesLater?: boolean;
}

/** What an entry reads of its database's catalog, on the application's client. */
export type Catalog = Pick<SqlClient, "columns" | "run">;

/** The same counters as the Drizzle adapter's (docs/guides/drizzle.md). */
export type StatementCacheStats = QueryCacheStats;

/** What an ORM's cached entry (Kysely's dialect, Prisma's adapter) offers beside the ORM. */
export interface CachedStatements {
  /** The engine its statements are cached on (its own, or the one given as `cache`). */
  readonly engine: Cache;
  /** Hits, misses, registrations, query shapes and capture, as the Drizzle adapter's `getStats()`. */
  getStats(): StatementCacheStats;
  /**
   * Resolves once every change capture recorded before the call has been applied (true),
   * or at once with false without capture.
   */
  catchUp(): Promise<boolean>;
  /** Removes every cached read of `tables`, or every read of this cache without them. */
  invalidate(tables?: readonly string[]): Promise<void>;
}

/**
 * A read looked up and not found: what `store` needs to keep its result. `since` is the
 * write fence's position taken before the statement runs (see `Cache.storeLoaded`).
 */
export interface Ticket {
  /** Undefined where the statement's parameters cannot make a key: its result is not kept. */
  readonly key: string | undefined;
  readonly since: LogPosition;
  /** The statement, when `lookup` read it (undefined for `lookupKey`). */
  readonly read?: { sql: string; params: readonly unknown[]; keyed: unknown; shape: SqlShape };
}

/** What `lookup` found: a result, a miss to run and `store`, or a statement that writes. */
export type Lookup<R> =
  | { found: true; result: R }
  | { found: false; ticket: Ticket }
  | { found: false; write: true };

/** Per read: what an ORM adds to what its statement says (all optional). */
export interface StoreOptions<R> {
  /**
   * The statement behind a `lookupKey` ticket, read for what its result depends on; with
   * `tables` only (none of it known), the result depends on every row of each.
   */
  query?: { sql: string; params: readonly unknown[]; dialect: SqlClient["dialect"] };
  /**
   * The statement the application sent, where the entry ran `query` in its place (with
   * hidden keys carried): the stats count the result under it.
   */
  asked?: string;
  /**
   * The tables the ORM says the read reads: registered whole where the statement's parser
   * finds them not, so a write to one always reaches the result.
   */
  tables?: readonly string[];
  /** Tags of the ORM's users it is stored with too, as the user names them (see `drop`). */
  tags?: readonly string[];
  /**
   * Its time to live in ms, asked at each store (a reload's too): the entry's own by
   * default, and not stored when at most 0.
   */
  ttl?: () => number | undefined;
  /** Told once it is stored (a reload's too), with the time to live it was stored for. */
  stored?: (ttl: number) => void;
  /** Runs the statement again for a reload (the entry's `rerun` by default). */
  rerun?: () => Promise<R>;
}
