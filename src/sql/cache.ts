import type { Cache } from "../core/cache/index.ts";
import { badOption, checkOptionNames } from "../core/errors.ts";
import type { SqlClient, SqlResult, SqlRow } from "../database/client.ts";
import { sqlDriver } from "../database/drivers.ts";
import { Session } from "../query-cache/session.ts";
import {
  STATEMENT_CACHE_OPTIONS,
  type StatementCacheOptions,
  type StatementCacheStats,
} from "../query-cache/statement-contract.ts";
import { StatementCache } from "../query-cache/statements.ts";

export interface SqlCacheOptions extends StatementCacheOptions {
  /**
   * A libSQL `Client` (`@libsql/client`), a better-sqlite3 `Database`, a postgres.js `Sql`,
   * a node-postgres `Pool` or `Client`, or a D1 binding.
   */
  client: unknown;
  /** Prefix of this entry's keys in the cache ("sql:"). */
  prefix?: string;
}

/** The same counters as the Drizzle adapter's (docs/guides/drizzle.md). */
export type SqlCacheStats = StatementCacheStats;

/**
 * Raw SQL, cached: `query` runs a select (or answers it from the cache), `execute` a write,
 * both on the application's client. Reads register what they depend on from their SQL, as
 * the Drizzle adapter's selects do; writes are seen through change capture when it is
 * installed, or invalidate the tables they name otherwise. See docs/guides/sql.md.
 */
export class SqlCache {
  readonly #statements: StatementCache;
  readonly #run: (sql: string, params: readonly unknown[]) => Promise<SqlResult>;
  /** A transaction opened through `execute("begin")` on the client (see Session). */
  readonly #session: Session;

  constructor(options: SqlCacheOptions) {
    checkOptionNames("sql", options, STATEMENT_CACHE_OPTIONS);
    const client: SqlClient | undefined = sqlDriver(options?.client);
    if (!client) {
      badOption(
        "sql",
        "client",
        "a libSQL Client, a better-sqlite3 Database, a postgres.js Sql, a node-postgres Pool or Client, a D1 binding, or a Driver",
        options?.client,
      );
    }
    this.#run = (sql, params) => client.run(sql, params);
    this.#statements = new StatementCache(
      {
        component: "sql",
        defaultPrefix: "sql:",
        dialect: client.dialect,
        catalog: client,
        client: options.client,
        rerun: this.#run,
        query: this.#run,
      },
      options,
    );
    this.#session = new Session(this.#statements);
  }

  /** The engine this entry caches on (its own, or the one given as `cache`). */
  get engine(): Cache {
    return this.#statements.engine;
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
    const result = await this.#session.statement(
      sql,
      () => this.#run(sql, params),
      () => this.#statements.read(sql, params, this.#run),
    );
    return result.rows as Row[];
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
    return (await this.#session.statement(
      sql,
      () => this.#run(sql, params),
      () => this.#statements.write(sql, params, this.#run),
    )) as SqlResult<Row>;
  }

  /**
   * Removes every cached read of `tables` (names as in the SQL: `users`, `app.users`), or
   * every read this entry cached when called without: for writes made around it without
   * change capture (another process, a transaction run on the client itself).
   */
  invalidate(tables?: readonly string[]): Promise<void> {
    return this.#statements.invalidate(tables);
  }

  /**
   * Resolves once every change capture recorded before the call has been applied (true),
   * or at once with false when this entry does not follow capture. A write made around the
   * entry (another connection) is seen by reads after this.
   */
  catchUp(): Promise<boolean> {
    return this.#statements.catchUp();
  }

  getStats(): SqlCacheStats {
    return this.#statements.getStats();
  }

  /** Stops following change capture. The client stays open: it is the application's. */
  close(): Promise<void> {
    return this.#statements.close();
  }
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
