/**
 * edgecache/kysely: Kysely's queries cached by the rows, predicates and windows they read,
 * and invalidated exactly by writes through Kysely and, with change capture, around it.
 * `kyselyCache(dialect, options)` wraps a Kysely `Dialect` (SQLite, PostgreSQL, D1) and
 * returns one; every statement Kysely compiles goes through edgecache's statement cache,
 * as raw SQL does (docs/guides/kysely.md).
 *
 * @example
 * import Database from "better-sqlite3";
 * import { Kysely, SqliteDialect } from "kysely";
 * import { kyselyCache } from "edgecache/kysely";
 * import { memoryStore } from "edgecache/stores/memory";
 * const database = new Database("app.db");
 * const dialect = kyselyCache(new SqliteDialect({ database }), {
 *   client: database,
 *   tiers: [memoryStore()],
 * });
 * const db = new Kysely<DB>({ dialect });
 */
import type {
  CompiledQuery,
  DatabaseConnection,
  Dialect,
  Driver,
  QueryResult,
  TransactionSettings,
} from "kysely";
import { badOption, checkOptionNames } from "../core/errors.ts";
import type { SqlDialect } from "../database/analysis/parse.ts";
import { isRead } from "../database/analysis/writes.ts";
import type { SqlRow } from "../database/client.ts";
import type { D1QueriesLike } from "../database/d1/binding.ts";
import { countsRows, runCounted } from "../database/d1/own-changes.ts";
import { sqlDriver } from "../database/drivers.ts";
import { Session } from "../query-cache/session.ts";
import {
  type CachedStatements,
  type RunStatement,
  STATEMENT_CACHE_OPTIONS,
  type StatementCacheOptions,
  type StatementCacheStats,
} from "../query-cache/statement-contract.ts";
import { cachedStatements, StatementCache } from "../query-cache/statements.ts";

export interface KyselyCacheOptions extends StatementCacheOptions {
  /**
   * The client the dialect runs on (a better-sqlite3 `Database`, a node-postgres `Pool`, a
   * postgres.js `Sql`, a libSQL `Client`, a D1 binding): its change capture is followed
   * when installed, and its catalog read. Without it, writes through Kysely invalidate the
   * tables they name, and writes around Kysely are not seen.
   */
  client?: unknown;
  /** Prefix of this cache's keys ("kysely:"). */
  prefix?: string;
}

/** A Kysely `Dialect` whose statements are cached; `cache` reaches its counters. */
export interface CachedDialect extends Dialect {
  readonly cache: KyselyCache;
}

export type KyselyCacheStats = StatementCacheStats;

/** What a cached dialect offers beside Kysely's own API. */
export type KyselyCache = CachedStatements;

const COMPONENT = "kysely";

/**
 * Wraps a Kysely dialect so that its reads are answered from edgecache and its writes
 * invalidate exactly what they change. Reads inside a transaction run uncached; its writes
 * are seen when it commits. `db.destroy()` stops following capture too.
 */
export function kyselyCache(dialect: Dialect, options: KyselyCacheOptions): CachedDialect {
  checkOptionNames(COMPONENT, options, STATEMENT_CACHE_OPTIONS);
  if (typeof dialect?.createDriver !== "function") {
    badOption(
      COMPONENT,
      "dialect",
      "a Kysely Dialect (SqliteDialect, PostgresDialect...)",
      dialect,
    );
  }
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  const client = options.client === undefined ? undefined : sqlDriver(options.client);
  if (options.client !== undefined && !client) {
    badOption(
      COMPONENT,
      "client",
      "the client the dialect runs on: a better-sqlite3 Database, a node-postgres Pool or Client, a postgres.js Sql, a libSQL Client or a D1 binding",
      options.client,
    );
  }
  const sqlDialect = client?.dialect ?? dialectOf(dialect);
  // A D1 binding's writes are sent here, with their own counts (see D1Writes).
  const d1 = client?.kind === "d1" ? (options.client as D1QueriesLike) : undefined;
  let inner: Driver | undefined;
  const query = async (sql: string, params: readonly unknown[]) => {
    if (!inner) throw new Error("[edgecache] [kysely] the dialect's driver is not made yet");
    const connection = await inner.acquireConnection();
    try {
      return sqlResult(await connection.executeQuery(rawQuery(sql, params)));
    } finally {
      await inner.releaseConnection(connection);
    }
  };
  const statements = new StatementCache(
    {
      component: COMPONENT,
      defaultPrefix: "kysely:",
      dialect: sqlDialect,
      ...(client && { catalog: client, client: options.client }),
      // Kysely holds a connection while its statement runs: on a PostgreSQL pool, a catalog
      // read the statement waited for could wait for that connection.
      learnAside: sqlDialect === "postgres",
      // A hot read reloaded in the background, and a group patch's statement, take a
      // connection of their own.
      rerun: (sql, params) => query(sql, params),
      query: (sql, params) => query(sql, params),
    },
    options,
  );
  return {
    cache: cachedStatements(statements),
    createDriver() {
      inner = dialect.createDriver();
      return new CachingDriver(inner, statements, d1);
    },
    createQueryCompiler: () => dialect.createQueryCompiler(),
    createAdapter: () => dialect.createAdapter(),
    createIntrospector: (db) => dialect.createIntrospector(db),
  };
}

/** SQLite or PostgreSQL, told by the dialect's adapter when no client is given. */
function dialectOf(dialect: Dialect): SqlDialect {
  const adapter = dialect.createAdapter().constructor.name;
  if (/postgres/i.test(adapter)) return "postgres";
  if (/sqlite/i.test(adapter)) return "sqlite";
  return badOption(
    COMPONENT,
    "dialect",
    "a SQLite or PostgreSQL dialect (or `client`, the client it runs on)",
    adapter,
  );
}

/**
 * The dialect's driver with every statement through the statement cache: a connection's
 * reads looked up and its writes settled, except inside a transaction, whose reads run as
 * they are and whose writes are settled once it commits.
 */
class CachingDriver implements Driver {
  readonly #inner: Driver;
  readonly #statements: StatementCache;
  /**
   * One wrapper per connection of the dialect's driver, so that what a connection is in (a
   * transaction opened with SQL, say) holds across the statements Kysely sends it.
   */
  readonly #wrapped = new WeakMap<DatabaseConnection, CachingConnection>();
  readonly #d1: D1QueriesLike | undefined;
  savepoint?: Driver["savepoint"];
  rollbackToSavepoint?: Driver["rollbackToSavepoint"];
  releaseSavepoint?: Driver["releaseSavepoint"];

  constructor(inner: Driver, statements: StatementCache, d1: D1QueriesLike | undefined) {
    this.#inner = inner;
    this.#statements = statements;
    this.#d1 = d1;
    // Only what the dialect's driver has: Kysely asks for savepoints by their presence.
    for (const name of ["savepoint", "rollbackToSavepoint", "releaseSavepoint"] as const) {
      const step = inner[name];
      if (step) {
        this[name] = (connection, savepoint, compile) =>
          step.call(inner, unwrap(connection), savepoint, compile);
      }
    }
  }

  init(...passed: unknown[]): Promise<void> {
    return forward<void>(this.#inner, this.#inner.init, passed);
  }

  async acquireConnection(...passed: unknown[]): Promise<DatabaseConnection> {
    // The search path is read on the pool: waited for before a connection of it is held.
    await this.#statements.placed();
    const connection = await forward<DatabaseConnection>(
      this.#inner,
      this.#inner.acquireConnection,
      passed,
    );
    let wrapped = this.#wrapped.get(connection);
    if (!wrapped) {
      wrapped = new CachingConnection(connection, this.#statements, this.#d1);
      this.#wrapped.set(connection, wrapped);
    }
    return wrapped;
  }

  async beginTransaction(
    connection: DatabaseConnection,
    settings: TransactionSettings,
  ): Promise<void> {
    await this.#inner.beginTransaction(unwrap(connection), settings);
    (connection as CachingConnection).session.begin();
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const { session } = connection as CachingConnection;
    const written = session.end();
    try {
      await this.#inner.commitTransaction(unwrap(connection));
    } finally {
      // Also after a failure: a driver error may come after the commit.
      await session.settle(written);
    }
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    (connection as CachingConnection).session.end();
    await this.#inner.rollbackTransaction(unwrap(connection));
  }

  releaseConnection(connection: DatabaseConnection, ...passed: unknown[]): Promise<void> {
    return forward<void>(this.#inner, this.#inner.releaseConnection, [
      unwrap(connection),
      ...passed,
    ]);
  }

  async destroy(...passed: unknown[]): Promise<void> {
    await this.#statements.close();
    await forward<void>(this.#inner, this.#inner.destroy, passed);
  }
}

/** One of the dialect's connections with its statements through the statement cache. */
class CachingConnection implements DatabaseConnection {
  readonly inner: DatabaseConnection;
  /** What this connection is in: a transaction, or none (see Session). */
  readonly session: Session;
  readonly #statements: StatementCache;
  readonly #d1: D1QueriesLike | undefined;

  constructor(
    inner: DatabaseConnection,
    statements: StatementCache,
    d1: D1QueriesLike | undefined,
  ) {
    this.inner = inner;
    this.session = new Session(statements);
    this.#statements = statements;
    this.#d1 = d1;
  }

  executeQuery<R>(compiledQuery: CompiledQuery, ...passed: unknown[]): Promise<QueryResult<R>> {
    const { sql, parameters } = compiledQuery;
    const d1 = this.#d1;
    const run =
      d1 && countsRows(sql)
        ? () => d1Write<R>(d1, sql, parameters)
        : () =>
            forward<QueryResult<R>>(this.inner, this.inner.executeQuery, [
              compiledQuery,
              ...passed,
            ]);
    return this.session.statement(sql, run, async () => {
      let ran: QueryResult<R> | undefined;
      const runOnce: RunStatement = async () => {
        ran = await run();
        return sqlResult(ran);
      };
      const result = await this.#statements.read(sql, parameters, runOnce);
      return ran ?? { rows: result.rows as R[] };
    });
  }

  streamQuery<R>(
    compiledQuery: CompiledQuery,
    chunkSize: number,
    ...passed: unknown[]
  ): AsyncIterableIterator<QueryResult<R>> {
    // Streamed results are read as they come, never cached; a streamed write is refused
    // rather than left unseen.
    if (!isRead(compiledQuery.sql)) {
      badOption(COMPONENT, "stream", "a select (writes are not streamed)", compiledQuery.sql);
    }
    const stream = this.inner.streamQuery as (
      ...args: unknown[]
    ) => AsyncIterableIterator<QueryResult<R>>;
    return stream.call(this.inner, compiledQuery, chunkSize, ...passed);
  }
}

/**
 * Calls `method` of `target` with the arguments given: Kysely 0.29 adds an options argument
 * (an abort signal) that 0.28 does not have, and each is passed on as it came.
 */
function forward<T>(target: object, method: unknown, args: readonly unknown[]): Promise<T> {
  return (method as (...a: unknown[]) => Promise<T>).apply(target, [...args]);
}

/**
 * A write on a D1 binding as kysely-d1 runs it (`prepare(sql).bind(...).all()`), but its
 * `numAffectedRows` the statement's own rows: D1's `meta.changes` counts capture's trigger
 * rows too (see runCounted).
 */
async function d1Write<R>(
  db: D1QueriesLike,
  sql: string,
  parameters: readonly unknown[],
): Promise<QueryResult<R>> {
  const r = await runCounted(db, db.prepare(sql).bind(...parameters));
  const meta = r.meta as { changes?: number; last_row_id?: number | null } | undefined;
  return {
    rows: (r.results ?? []) as R[],
    numAffectedRows: BigInt(meta?.changes ?? 0),
    ...(meta?.last_row_id != null && { insertId: BigInt(meta.last_row_id) }),
  };
}

function unwrap(connection: DatabaseConnection): DatabaseConnection {
  return connection instanceof CachingConnection ? connection.inner : connection;
}

function sqlResult(result: QueryResult<unknown>): { rows: SqlRow[]; rowsAffected: number } {
  return {
    rows: result.rows as SqlRow[],
    rowsAffected: Number(result.numAffectedRows ?? 0n),
  };
}

/** A compiled query of `sql` as is, for a reload (only its text and parameters are run). */
function rawQuery(sql: string, params: readonly unknown[]): CompiledQuery {
  return {
    sql,
    parameters: params,
    query: { kind: "RawNode", sqlFragments: [sql], parameters: [] },
    queryId: { queryId: "edgecache-reload" },
  } as unknown as CompiledQuery;
}
