/**
 * edgecache/drizzle/better-sqlite3: Drizzle on a better-sqlite3 `Database`, cached.
 *
 * drizzle-orm's own better-sqlite3 driver (0.45) runs its queries synchronously and drops
 * the `cache` option, so no cache can see them. Its `sqlite-proxy` driver is asynchronous,
 * takes a cache, and hands every statement to a callback: `betterSqliteProxy(database)` is
 * that callback, running the statements on the application's `Database`.
 *
 * One connection serves every request, so a transaction must have it to itself: between
 * its `begin` and its `commit`, statements from outside it wait for their turn (a statement
 * of another request run inside the open transaction would be committed or rolled back with
 * it), for at most `busyTimeout`. Which statements are the transaction's is told by the
 * async context `withTransactions` gives it (everything its callback runs, on `tx` or on
 * `db`), so a database on this proxy is refused a transaction outside `withTransactions`.
 *
 * Node only (AsyncLocalStorage), as better-sqlite3 is.
 *
 * @example
 * import Database from "better-sqlite3";
 * import { drizzle } from "drizzle-orm/sqlite-proxy";
 * import { drizzleCache, withTransactions } from "edgecache/drizzle";
 * import { betterSqliteProxy } from "edgecache/drizzle/better-sqlite3";
 * const proxy = betterSqliteProxy(new Database("app.db"));
 * const db = withTransactions(drizzle(proxy, proxy.batch, { cache: drizzleCache({ ... }) }));
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type Database from "better-sqlite3";
import { badOption, checkOptionNames, EdgecacheError, type OptionNames } from "../core/errors.ts";
import { clientKind } from "../database/client-kind.ts";
import { DEFAULT_BUSY_TIMEOUT_MS } from "../database/sqlite/dialect.ts";
import { PreparedStatements } from "../database/sqlite/prepared.ts";
import { PROXIED, type ProxiedClient } from "./proxied.ts";

/** What drizzle-orm's sqlite-proxy asks for: every row's values in column order. */
type Method = "run" | "all" | "values" | "get";

interface ProxyQuery {
  sql: string;
  params: unknown[];
  method: Method;
}

/**
 * A statement's answer as sqlite-proxy reads it: rows as arrays of values (one row for
 * "get"); for "run", no rows and better-sqlite3's `changes` and `lastInsertRowid`.
 */
interface ProxyResult {
  rows: unknown[];
  changes?: number;
  lastInsertRowid?: number | bigint;
}

/** The proxy callback, its batch callback, and what `withTransactions` reads of it. */
export interface BetterSqliteProxy {
  (sql: string, params: unknown[], method: Method): Promise<ProxyResult>;
  /** Runs a `db.batch([...])` in one transaction. */
  batch(queries: ProxyQuery[]): Promise<ProxyResult[]>;
  readonly [PROXIED]: ProxiedClient;
}

/** A transaction's statement opens or ends it: the connection is the transaction's meanwhile. */
const BEGINS = /^\s*begin\b/i;

export interface BetterSqliteProxyOptions {
  /**
   * How long a statement from outside a transaction waits for it to end, ms (5000, as
   * better-sqlite3's own busy_timeout); then it fails with E_SOURCE_BUSY.
   */
  busyTimeout?: number;
}

/** Every option of BetterSqliteProxyOptions: checkOptionNames refuses any other. */
const OPTIONS: OptionNames<BetterSqliteProxyOptions> = {
  busyTimeout: true,
};
export function betterSqliteProxy(
  database: Database.Database,
  options: BetterSqliteProxyOptions = {},
): BetterSqliteProxy {
  checkOptionNames("drizzle", options, OPTIONS);
  if (clientKind(database) !== "better-sqlite3") {
    badOption("drizzle", "database", "a better-sqlite3 Database", database);
  }
  const { busyTimeout = DEFAULT_BUSY_TIMEOUT_MS } = options ?? {};
  if (!Number.isSafeInteger(busyTimeout) || busyTimeout < 0) {
    badOption("drizzle", "busyTimeout", "an integer >= 0 (ms)", busyTimeout);
  }
  const statements = new PreparedStatements((sql) => database.prepare(sql));
  const execute = ({ sql, params, method }: ProxyQuery): ProxyResult => {
    const statement = statements.get(sql);
    if (method === "run" || !statement.reader) {
      const { changes, lastInsertRowid } = statement.run(...params);
      return { rows: [], changes, lastInsertRowid };
    }
    const raw = statement.raw(true);
    return { rows: (method === "get" ? raw.get(...params) : raw.all(...params)) as unknown[] };
  };

  const inside = new AsyncLocalStorage<true>();
  /** The transaction that has the connection, settled when it ends (never rejected). */
  let held: Promise<unknown> = Promise.resolve();
  /** Transactions running or waiting: none, and a statement runs at once (no timer, no await). */
  let open = 0;
  /**
   * Waits while a transaction other than the caller's has the connection, for at most
   * `busyTimeout`, as a second connection would wait for SQLite's lock: a transaction that
   * awaits another request's statement would otherwise wait for ever.
   */
  const turn = async () => {
    const until = Date.now() + busyTimeout;
    while (open > 0 && !inside.getStore()) {
      const current = held;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), Math.max(0, until - Date.now()));
      });
      const waited = await Promise.race([current, late]);
      clearTimeout(timer);
      if (waited === "late") {
        throw new EdgecacheError(
          "E_SOURCE_BUSY",
          "drizzle",
          `a statement waited ${busyTimeout} ms for a transaction on the Database's one connection to end`,
        );
      }
      if (current === held) return;
    }
  };

  const proxied: ProxiedClient = {
    client: database,
    exclusive<T>(work: () => Promise<T>): Promise<T> {
      const previous = held;
      open++;
      const done = previous.then(() => inside.run(true, work));
      held = done.catch(() => {}).finally(() => open--);
      return done;
    },
    inTransaction: () => inside.getStore() === true,
    read: (sql, params) =>
      inside.exit(async () => {
        await turn();
        return execute({ sql, params: [...params], method: "all" }).rows;
      }),
  };
  const proxy = (async (sql: string, params: unknown[], method: Method) => {
    if (BEGINS.test(sql) && !inside.getStore()) {
      throw new EdgecacheError(
        "E_BAD_OPTION",
        "drizzle",
        "a transaction on betterSqliteProxy needs the database wrapped with withTransactions(db), which gives the transaction the connection to itself",
      );
    }
    await turn();
    return execute({ sql, params, method });
  }) as BetterSqliteProxy;
  proxy.batch = async (queries) => {
    await turn();
    return database.transaction(() => queries.map(execute))();
  };
  Object.defineProperty(proxy, PROXIED, { value: proxied });
  return proxy;
}
