import { LRUCache } from "lru-cache";
import type { Cache } from "../core/cache/index.ts";
import type { PlanSchema } from "../core/deps/planner.ts";
import { sha256Hex } from "../core/digest.ts";
import { badOption } from "../core/errors.ts";
import type { Warner } from "../core/report.ts";
import type { Store } from "../core/store.ts";
import type { ChangeLog } from "../log/contract.ts";
import { type QueryCapture, startCapture } from "../query-cache/capture.ts";
import { decode, encode, Uncacheable } from "../query-cache/codec.ts";
import { sqlTypeKind, withoutCapturedForms } from "../query-cache/columns.ts";
import { followCapturedWrites, patchableMeta } from "../query-cache/result-patches.ts";
import { type QueryCacheStats, QueryStats, queryEngine } from "../query-cache/stats.ts";
import {
  registrationOf,
  type SqlColumnKind,
  type SqlShape,
  type SqlTable,
  sqlShape,
} from "../sql/analysis/shapes.ts";
import { writtenTables } from "../sql/analysis/writes.ts";
import type { SqlClient, SqlResult, SqlRow } from "../sql/client.ts";
import { sqlDriver } from "../sql/drivers.ts";

export interface SqlCacheOptions {
  /** A libSQL `Client` (`@libsql/client`), a postgres.js `Sql`, or a D1 binding. */
  client: unknown;
  /** Tiers for a cache of its own, fastest first (`[memoryStore()]`). Or pass `cache`. */
  tiers?: Store[];
  /** An edgecache `Cache` to share (its tiers, change log and stats). Or pass `tiers`. */
  cache?: Cache;
  /** With `tiers`: the change log its cache follows (in-process by default). */
  log?: ChangeLog;
  /** Time to live of a cached query in ms (an hour by default). */
  ttl?: number;
  /** Prefix of this entry's keys in the cache ("sql:"). */
  prefix?: string;
  /**
   * Follow change capture when it is installed in the database (true by default; libSQL
   * and postgres.js). False keeps table-level invalidation by `execute`.
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

/** The same counters as the Drizzle adapter's (docs/guides/drizzle.md). */
export type SqlCacheStats = QueryCacheStats;

const JSON_TYPE = { "content-type": "application/json" };
const TEXT = new TextDecoder();
/** Queries of recent stores remembered for reloading (the least recently used are forgotten). */
const KEPT_RERUNS = 10_000;

/** What a cached query is reloaded from. */
interface Rerun {
  sql: string;
  params: readonly unknown[];
  shape: SqlShape;
}

/**
 * Raw SQL, cached: `query` runs a select (or answers it from the cache), `execute` a write.
 * Reads register what they depend on from their SQL, as the Drizzle adapter's selects do;
 * writes are seen through change capture when it is installed, or invalidate the tables
 * they name otherwise. See docs/guides/sql.md.
 */
export class SqlCache {
  readonly engine: Cache;
  #client: SqlClient;
  #ttl: number;
  #prefix: string;
  #capture: QueryCapture | undefined;
  /** The first read of capture's catalog, awaited by the first query. */
  #ready: Promise<void> | undefined;
  /** Primary keys capture read from the database catalog (when this entry owns its engine). */
  #catalog: PlanSchema | undefined;
  #stats: QueryStats;
  /**
   * Column kinds read from the catalog, by table (null when none could be read), learned
   * while capture is followed: with them, conditions on other columns than the primary key
   * register exactly (without capture, writes go by table and exactness gains nothing).
   */
  #kinds = new Map<string, Record<string, SqlColumnKind> | null>();
  /** Whether capture was followed at the last call (see #checkMode). */
  #following = false;
  /** Whether results are patched in place after captured writes (see `patchInPlace`). */
  #patching = false;
  /** Key -> the query behind it, for the engine's reload of hot invalidated keys. */
  #reruns = new LRUCache<string, Rerun>({ max: KEPT_RERUNS });

  constructor(options: SqlCacheOptions) {
    const c = "sql";
    const client = sqlDriver(options?.client);
    if (!client) {
      badOption(
        c,
        "client",
        "a libSQL Client, a better-sqlite3 Database, a postgres.js Sql, a node-postgres Pool or Client, or a D1 binding",
        options?.client,
      );
    }
    const follow = options.capture ?? true;
    if (typeof follow !== "boolean") badOption(c, "capture", "true or false", follow);
    const reload = options.reload ?? true;
    if (typeof reload !== "boolean") badOption(c, "reload", "true or false", reload);
    const patchInPlace = options.patchInPlace ?? true;
    if (typeof patchInPlace !== "boolean") {
      badOption(c, "patchInPlace", "true or false", patchInPlace);
    }
    const { engine, ttl, prefix, owns, outside } = queryEngine(c, options, "sql:", {
      primaryKey: (table) => this.#catalog?.primaryKey(table),
      joinColumns: () => [],
    });
    this.engine = engine;
    this.#client = client;
    this.#ttl = ttl;
    this.#prefix = prefix;
    const logger = options.logger ?? { warn: (m, e) => console.warn(m, e ?? "") };
    this.#stats = new QueryStats("sql", logger);
    if (follow) {
      this.#capture = startCapture(options.client, this.engine, {
        // A shared engine's schema is its owner's: events then go by table.
        ...(owns && {
          setSchema: (schema) => {
            this.#catalog = schema;
          },
          kinds: (table) => this.#schema(table)?.columns,
        }),
        logger: { warn: (m) => logger.warn(m) },
      });
      this.#ready = this.#capture?.ready;
      // Following capture, every change reaches the planner with its rows, so the engine
      // can reload a hot query a write invalidated, or patch it: never on a shared
      // engine (its owner's).
      if (this.#capture && owns) {
        this.#patching = followCapturedWrites(this.engine, this.#capture, outside, {
          prefix,
          patchInPlace,
          ...(reload && { refetch: (k: string) => this.#refetch(k) }),
        });
      }
    }
  }

  /**
   * Runs a select, or answers it from the cache. `params` bind the placeholders (`?` on
   * SQLite and D1, `$1` on PostgreSQL). A statement that is not a select runs as `execute`.
   *
   * @example
   * const [user] = await sql.query("select id, name from users where id = ?", [1]);
   */
  async query<Row = SqlRow>(sql: string, params: readonly unknown[] = []): Promise<Row[]> {
    checkStatement(sql, params);
    if (this.#ready) {
      await this.#ready;
      this.#ready = undefined;
    }
    await this.#checkMode();
    const key = await this.#key(sql, params);
    // Taken before the lookup: the query runs after it, so its result is at least this new.
    const since = this.engine.position;
    if (key !== undefined) {
      try {
        const entry = await this.engine.getEntry(key);
        if (entry) {
          this.#stats.counts.hits++;
          return decode(TEXT.decode(entry.body)) as Row[];
        }
      } catch (err) {
        this.#stats.fault("get", err);
      }
    }
    const dialect = this.#client.dialect;
    let shape = sqlShape(sql, params, dialect, this.#schema);
    if (this.#following && (await this.#learn(shape.tables))) {
      shape = sqlShape(sql, params, dialect, this.#schema);
    }
    if (!readOnly(shape, sql)) return (await this.execute(sql, params)).rows as Row[];
    await this.#capture?.want(shape.tables);
    this.#stats.counts.misses++;
    if (key !== undefined) this.engine.countRead(key, "miss");
    const { rows } = await this.#client.run(sql, params);
    if (key === undefined || !this.#cacheable(shape)) {
      this.#stats.counts.uncacheable++;
      return rows as Row[];
    }
    await this.#store(key, rows, shape, since);
    this.#reruns.set(key, { sql, params: [...params], shape });
    return rows as Row[];
  }

  /**
   * Reloads `key` in the background: its query runs again and the result is stored as a
   * load that began now, so a write that overlaps the reload fences it out.
   */
  async #refetch(key: string): Promise<void> {
    const rerun = this.#reruns.get(key);
    if (!rerun || !this.#following) return;
    const since = this.engine.position;
    const { rows } = await this.#client.run(rerun.sql, rerun.params);
    await this.#store(key, rows, rerun.shape, since);
  }

  /**
   * Runs a write and returns once the cache has seen it: with change capture followed for
   * its tables, once capture has applied its rows (entries its rows do not touch stay);
   * otherwise after removing every entry that read the tables it names, or every entry of
   * this cache when the statement names none it can tell (DDL, a `WITH` clause...).
   *
   * @example
   * await sql.execute("update users set name = ? where id = ?", ["Jane", 2]);
   */
  async execute<Row = SqlRow>(
    sql: string,
    params: readonly unknown[] = [],
  ): Promise<SqlResult<Row>> {
    checkStatement(sql, params);
    await this.#checkMode();
    const tables = writtenTables(sql, this.#client.dialect);
    if (tables) await this.#capture?.want(tables);
    try {
      return (await this.#client.run(sql, params)) as SqlResult<Row>;
    } finally {
      // Also after a failure: a driver error may come after the commit.
      await this.#settle(tables);
    }
  }

  /**
   * Removes every cached read of `tables` (names as in the SQL: `users`, `app.users`), or
   * every read this entry cached when called without: for writes made around it without
   * change capture (another process, a transaction run on the client itself).
   */
  async invalidate(tables?: readonly string[]): Promise<void> {
    try {
      if (tables === undefined) await this.engine.invalidate({ prefix: this.#prefix });
      else if (tables.length > 0) {
        await this.engine.invalidate({ tags: tables.map((t) => this.#tableTag(t)) });
      }
    } catch (err) {
      this.#stats.fault("invalidate", err);
    }
  }

  /**
   * Resolves once every change capture recorded before the call has been applied (true),
   * or at once with false when this entry does not follow capture. A write made around the
   * entry (another connection) is seen by reads after this.
   */
  async catchUp(): Promise<boolean> {
    return (await this.#capture?.catchUp()) ?? false;
  }

  getStats(): SqlCacheStats {
    const tag = (t: string) => this.#tableTag(t);
    return this.#stats.stats(this.engine, this.#prefix, tag, this.#capture);
  }

  /** Stops following change capture. The client stays open: it is the application's. */
  async close(): Promise<void> {
    await this.#capture?.close();
  }

  /**
   * Whether the read's registration can be trusted: it names its tables, and every table
   * change capture may report on is named exactly as capture names it (a read of `USERS`
   * would be registered on a table capture never reports on).
   */
  #cacheable(shape: SqlShape): boolean {
    if (shape.tables.length === 0) return false;
    const captured = this.#capture?.stats().tables ?? [];
    if (captured.length === 0) return true;
    const exact = new Set(captured);
    const folded = new Set(captured.map((t) => t.toLowerCase()));
    return shape.tables.every((t) => exact.has(t) || !folded.has(t.toLowerCase()));
  }

  async #store(key: string, rows: SqlRow[], shape: SqlShape, since: typeof this.engine.position) {
    let body: string;
    try {
      body = encode(rows);
    } catch (err) {
      if (!(err instanceof Uncacheable)) throw err;
      this.#stats.uncacheable(err);
      return;
    }
    try {
      const { tags, lists, widened } = registrationOf(shape, rows);
      this.#stats.registrations.count(shape, widened);
      const meta = this.#patching ? patchableMeta(shape, this.#schema) : undefined;
      const { stored } = await this.engine.storeLoaded(
        key,
        {
          body,
          headers: JSON_TYPE,
          tags: [...shape.tables.map((t) => this.#tableTag(t)), ...tags],
          ...(lists.length > 0 && { lists }),
          ...(meta && { meta }),
          ttl: this.#ttl,
          staleWhileRevalidate: 0,
        },
        since,
      );
      if (!stored) {
        this.#stats.counts.fenced++;
        return;
      }
      this.#stats.stored(shape.tables);
    } catch (err) {
      this.#stats.fault("put", err);
    }
  }

  /** What is known of a table: its primary key from capture's catalog, its column kinds. */
  #schema = (table: string): SqlTable | undefined => {
    const primaryKey = this.#catalog?.primaryKey(table);
    if (primaryKey === undefined) return undefined;
    const columns = this.#kinds.get(table);
    const known: SqlTable = columns ? { primaryKey, columns } : { primaryKey };
    // Floats and instants only where capture's triggers record them exactly.
    return this.#capture?.recordsForms() === false ? withoutCapturedForms(known) : known;
  };

  /** Reads the column kinds of those of `tables` with a known primary key; true if any were new. */
  async #learn(tables: readonly string[]): Promise<boolean> {
    let learned = false;
    for (const table of tables) {
      if (this.#kinds.has(table) || this.#catalog?.primaryKey(table) === undefined) continue;
      try {
        const kinds: Record<string, SqlColumnKind> = {};
        for (const c of await this.#client.columns(table)) {
          kinds[c.name] = sqlTypeKind(c.type, this.#client.dialect);
        }
        this.#kinds.set(table, Object.keys(kinds).length > 0 ? kinds : null);
        learned = true;
      } catch (err) {
        this.#kinds.set(table, null);
        this.#stats.fault("catalog", err);
      }
    }
    return learned;
  }

  /**
   * Empties this entry's reads when it starts following capture: those stored before were
   * registered without the catalog (a table named in another case than capture names it),
   * and only reads registered while following are sure to be reached by capture's rows.
   */
  async #checkMode(): Promise<void> {
    const following = this.#capture?.mode() === "capture";
    if (following && !this.#following) await this.invalidate();
    this.#following = following;
  }

  async #settle(tables: string[] | undefined): Promise<void> {
    // A statement it cannot read may have altered a table: its columns are read again.
    if (tables === undefined) this.#kinds.clear();
    if (tables && this.#capture && (await this.#capture.settled(tables))) return;
    await this.invalidate(tables);
  }

  /** The key of a statement with its parameters, or undefined when they cannot be encoded. */
  async #key(sql: string, params: readonly unknown[]): Promise<string | undefined> {
    let text: string;
    try {
      text = encode([this.#client.dialect, sql, params]);
    } catch {
      return undefined;
    }
    return `${this.#prefix}q:${await sha256Hex(text)}`;
  }

  /**
   * The tag `execute` and `invalidate` remove a table's reads by. Names are folded to lower
   * case: an unquoted name is one table in any case (SQLite; PostgreSQL folds it), and two
   * quoted names that differ only in case merely share a tag.
   */
  #tableTag(table: string): string {
    return `${this.#prefix}table:${table.toLowerCase()}`;
  }
}

/**
 * Whether a statement only reads: a select (a data-modifying CTE is not). One the parser
 * cannot read counts when it is a single statement starting with SELECT; it names no
 * tables, so it runs uncached.
 */
function readOnly(shape: SqlShape, sql: string): boolean {
  if (shape.fallback === "parse") {
    return /^\s*\(?\s*select\b/i.test(sql) && !sql.replace(/;\s*$/, "").includes(";");
  }
  if (shape.fallback === "not-select" || shape.fallback === "statements") return false;
  return !(shape.fallback === "cte" && /\b(insert|update|delete|merge)\b/i.test(sql));
}

function checkStatement(sql: unknown, params: unknown): void {
  if (typeof sql !== "string" || sql.trim() === "") {
    badOption("sql", "sql", "a SQL statement", sql);
  }
  if (!Array.isArray(params)) badOption("sql", "params", "an array of parameters", params);
}

/**
 * Raw SQL cached on edgecache's engine, for applications without Drizzle.
 *
 * @example
 * import { createClient } from "@libsql/client";
 * import { sqlCache } from "edgecache/sql";
 * import { memoryStore } from "edgecache/stores/memory";
 * const sql = sqlCache({ client: createClient({ url: "file:app.db" }), tiers: [memoryStore()] });
 * const rows = await sql.query("select * from users where id = ?", [1]); // cached
 * await sql.execute("update users set name = ? where id = ?", ["Jane", 1]); // seen
 */
export function sqlCache(options: SqlCacheOptions): SqlCache {
  return new SqlCache(options);
}
