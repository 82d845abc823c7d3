import type Database from "better-sqlite3";
import type { CaptureFeed, CaptureStatus, CapturingSource } from "../core/capture.ts";
import { badOption, EdgecacheError } from "../core/errors.ts";
import type { Row, ViewInfo } from "../core/query.ts";
import { clientKind } from "../drizzle/client-kind.ts";
import { type LibsqlClientLike, LibsqlDriver } from "./libsql.ts";
import type { Source, WriteOptions } from "./source.ts";
import { validateViewsOption } from "./sql.ts";
import { rowsOf, type Statement, type Steps } from "./sql-dialect.ts";
import { runSteps, type TransactionDriver } from "./sql-driver.ts";
import { SqlSource } from "./sql-source.ts";
import {
  captureInstalledSteps,
  captureStatusSteps,
  FORGET_OWN_SQL,
  installCaptureSteps,
  ownMarked,
  sqliteCaptureFeed,
  sqliteExecutorFeed,
  uninstallCaptureSteps,
} from "./sqlite-capture.ts";
import {
  type ColumnMeta,
  MAX_IN_PARAMS,
  sqliteDialect,
  type TableMeta,
  toEdgecacheError,
  whenNotBusy,
} from "./sqlite-dialect.ts";
import { openSqliteFile } from "./sqlite-file.ts";
import { openLibsqlCopy, ownConnection } from "./sqlite-own-connection.ts";

const COMPONENT = "sqlite";

/** Distinct SQL texts kept prepared; the least recently used is dropped first. */
const MAX_CACHED_STATEMENTS = 1000;

/** How long a write waits for another connection's write lock by default, ms. */
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;

interface CommonOptions {
  views?: ViewInfo[];
  /**
   * How long a write waits, in ms, for a write lock another connection or process holds
   * (DEFAULT_BUSY_TIMEOUT_MS); then it fails with E_SOURCE_BUSY (a 503 with Retry-After).
   * It waits between tries, never blocking the event loop as SQLite's own busy_timeout would.
   */
  busyTimeout?: number;
}

export type SqliteSourceOptions =
  | ({ path: string; readonly?: boolean } & CommonOptions)
  | ({ database: Database.Database } & CommonOptions)
  | ({ client: LibsqlClientLike } & CommonOptions);

/** The options that name the database: one of them is given (without any, `path` is asked for). */
const DATABASE_OPTIONS = ["path", "database", "client"] as const;

/**
 * A Source over a SQLite database: tables are discovered from the database, views are
 * declared. Opens the file itself (better-sqlite3, WAL mode), or uses a better-sqlite3
 * `Database` or a libSQL `Client` (`@libsql/client`), which it then leaves open on close().
 * Change capture follows a libSQL client's database when it is a file (`file:` URL).
 *
 * @example
 * ```ts
 * const source = sqliteSource({ path: "demo.db", views: demoViews });
 * // or: sqliteSource({ client: createClient({ url: "file:demo.db" }), views: demoViews })
 * const schema = await source.schema();
 * const users = resolveResource(schema, "users")!;
 * const rows = await source.list(users, {
 *   filters: [{ column: "firstName", op: "eq", value: "Lane" }],
 *   sort: [{ column: "id", desc: false }],
 *   limit: 10,
 *   offset: 0,
 * });
 * ```
 */
export function sqliteSource(options: SqliteSourceOptions): Source & CapturingSource {
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  const given = DATABASE_OPTIONS.filter((name) => name in options);
  if (given.length > 1) {
    throw new EdgecacheError(
      "E_BAD_OPTION",
      COMPONENT,
      `options ${given.map((n) => `"${n}"`).join(" and ")} exclude each other: give one of path, database or client`,
    );
  }
  const views = validateViewsOption(COMPONENT, options.views);
  const { busyTimeout = DEFAULT_BUSY_TIMEOUT_MS } = options;
  if (typeof busyTimeout !== "number" || !(busyTimeout >= 0) || !Number.isFinite(busyTimeout)) {
    badOption(COMPONENT, "busyTimeout", "milliseconds >= 0", busyTimeout);
  }
  if ("client" in options) {
    const client: unknown = options.client;
    if (clientKind(client) !== "libsql") badOption(COMPONENT, "client", "a libSQL Client", client);
    return libsqlSource(client as LibsqlClientLike, { busyTimeout, views });
  }
  if ("database" in options) {
    const db: unknown = options.database;
    if (clientKind(db) !== "better-sqlite3") {
      badOption(COMPONENT, "database", "a better-sqlite3 Database", db);
    }
    const driver = new BetterSqliteDriver(options.database, { owned: false, busyTimeout });
    return new SqliteSource(driver, betterSqliteCapture(driver), { readonly: false, views });
  }
  const { path, readonly = false } = options;
  if (typeof path !== "string" || path === "") {
    badOption(COMPONENT, "path", "a non-empty string", path);
  }
  if (typeof readonly !== "boolean") badOption(COMPONENT, "readonly", "a boolean", readonly);
  const db = openSqliteFile(path, {
    component: COMPONENT,
    what: "database",
    code: "E_SOURCE_UNAVAILABLE",
    readonly,
  });
  const driver = new BetterSqliteDriver(db, { owned: true, busyTimeout });
  return new SqliteSource(driver, betterSqliteCapture(driver), { readonly, views });
}

/**
 * What change capture needs of a driver besides its statements: where the change table is
 * followed from, and where a recorded write's rows are removed.
 */
interface SqliteCapture {
  /** Why capture cannot be installed on this database; undefined when it can. */
  refusal(): Promise<string | undefined>;
  /** Removes the rows of the write marked `mark` (see ownMarked); never fails. */
  forget(mark: string): Promise<void>;
  feed(columnsOf: (table: string) => readonly string[] | undefined): CaptureFeed;
  close(): Promise<void>;
}

class SqliteSource extends SqlSource<ColumnMeta, TableMeta> implements CapturingSource {
  readonly #driver: TransactionDriver;
  readonly #capture: SqliteCapture;

  constructor(
    driver: TransactionDriver,
    capture: SqliteCapture,
    options: { readonly: boolean; views: ViewInfo[] },
  ) {
    super(sqliteDialect(COMPONENT, /^sqlite_/), driver, { name: COMPONENT, ...options });
    this.#driver = driver;
    this.#capture = capture;
  }

  async captureStatus(): Promise<CaptureStatus> {
    return this.guard(async () =>
      this.#driver.read(captureStatusSteps([...(await this.capturedTables()).keys()])),
    );
  }

  async installCapture(): Promise<CaptureStatus> {
    return this.guard(async () => {
      const refusal = await this.#capture.refusal();
      if (refusal !== undefined) throw new EdgecacheError("E_BAD_OPTION", COMPONENT, refusal);
      // Every user table, served or not: a link table's writes change what queries read.
      const tables = await this.capturedTables();
      const list = [...tables].map(([name, columns]) => ({ name, columns: [...columns.keys()] }));
      await this.#driver.transaction(installCaptureSteps(list));
      this.forgetEffects();
      return this.#driver.read(captureStatusSteps([...tables.keys()]));
    });
  }

  async uninstallCapture(): Promise<void> {
    await this.guard(() => this.#driver.transaction(uninstallCaptureSteps()));
  }

  async recorded(mark: string): Promise<void> {
    await this.#capture.forget(mark);
  }

  captureFeed(): CaptureFeed {
    return this.#capture.feed((table) => {
      const meta = this.knownTables()?.get(table);
      return meta ? [...meta.columns.keys()] : undefined;
    });
  }

  override async close(): Promise<void> {
    await this.#capture.close();
    await super.close();
  }
}

/**
 * better-sqlite3's capture runs on the application's connection, whose statements are
 * synchronous: each one is reset when it fails, and a write waits for the lock (locked).
 */
function betterSqliteCapture(driver: BetterSqliteDriver): SqliteCapture {
  return {
    refusal: async () => undefined,
    async forget(mark) {
      try {
        // Without capture's table no row carries the mark: no transaction to take for it.
        if (!(await driver.read(captureInstalledSteps()))) return;
        await driver.transaction(rowsOf({ sql: FORGET_OWN_SQL, params: [mark] }));
      } catch {
        // Busy: the rows stay, and are captured after API_GRACE_MS (harmless).
      }
    },
    feed: (columnsOf) => sqliteCaptureFeed(driver.db, columnsOf, (work) => driver.locked(work)),
    close: async () => {},
  };
}

/**
 * A source over a libSQL client. Capture's background statements (its looks, reads of the
 * change table, deletes, the lease) run on a connection of edgecache's own to the client's
 * file (see ownConnection), never on the client's: there a busy statement could leave a
 * connection inside a transaction. The marks of the data API's own writes are written in
 * the write's transaction on the client (ownMarked), and removed on our connection.
 */
function libsqlSource(
  client: LibsqlClientLike,
  options: { busyTimeout: number; views: ViewInfo[] },
): Source & CapturingSource {
  // Marked writes not yet forgotten: a write with nothing marked costs no statement.
  const marked = new Set<string>();
  const driver = new LibsqlDriver(client, {
    busyTimeout: options.busyTimeout,
    marked: (mark) => marked.add(mark),
  });
  const local = client.protocol === "file";
  const own = ownConnection(async () => (local ? openLibsqlCopy(client) : undefined));
  const remote = `change capture follows a libSQL database only through its file: this client's URL is ${client.protocol}:, so install capture on a node that opens the database with a file: URL, or serve without capture`;
  const capture: SqliteCapture = {
    async refusal() {
      if (!local) return remote;
      if (!(await own.available())) {
        return "change capture needs a libSQL database in a file (file: URL): one in memory has no other connection to follow it from";
      }
      return undefined;
    },
    async forget(mark) {
      if (!marked.delete(mark)) return;
      try {
        await own.write(FORGET_OWN_SQL, [mark]);
      } catch {
        // Busy: the rows stay, and are captured after API_GRACE_MS (harmless).
      }
    },
    feed(columnsOf) {
      if (!local) throw new EdgecacheError("E_BAD_OPTION", COMPONENT, remote);
      const feed = sqliteExecutorFeed(own, columnsOf, { own: true });
      // In memory there is no file to follow, so capture cannot be installed there.
      return { ...feed, installed: async () => (await own.available()) && feed.installed() };
    },
    close: () => own.close(),
  };
  return new SqliteSource(driver, capture, { readonly: false, views: options.views });
}

/**
 * better-sqlite3 as a driver: synchronous statements, prepared once and kept (the least
 * recently used dropped first), and write transactions that wait for another
 * connection's lock without blocking the event loop.
 */
class BetterSqliteDriver implements TransactionDriver {
  readonly maxInParams = MAX_IN_PARAMS;
  readonly db: Database.Database;
  readonly #owned: boolean;
  readonly #busyTimeout: number;
  readonly #statements = new Map<string, Database.Statement>();
  /** busy_timeout read and set around each try (prepared once: a pragma() call compiles). */
  readonly #timeout: { read: Database.Statement; set: Map<number, Database.Statement> };

  constructor(db: Database.Database, options: { owned: boolean; busyTimeout: number }) {
    this.db = db;
    this.#owned = options.owned;
    this.#busyTimeout = options.busyTimeout;
    // Off by default in SQLite; without it REFERENCES clauses are not enforced.
    this.#guard(() => db.pragma("foreign_keys = ON"));
    this.#timeout = { read: db.prepare("PRAGMA busy_timeout").pluck(), set: new Map() };
  }

  async read<T>(steps: Steps<T>): Promise<T> {
    return runSteps(steps, (s) => this.#run(s));
  }

  async transaction<T>(steps: Steps<T>, options?: WriteOptions): Promise<T> {
    return this.locked(() => runSteps(ownMarked(steps, options?.capture), (s) => this.#run(s)));
  }

  error(cause: unknown): EdgecacheError {
    return toEdgecacheError(cause);
  }

  async close(): Promise<void> {
    this.#statements.clear();
    if (this.#owned && this.db.open) this.db.close();
  }

  /**
   * Runs `work` in a write transaction. BEGIN IMMEDIATE takes the write lock first: a
   * deferred transaction that reads before it writes would fail at once with SQLITE_BUSY when
   * another connection writes (SQLite calls no busy handler for a read lock's upgrade). Each
   * try gives up at once if the lock is taken (busy_timeout 0: SQLite's own wait would block
   * the event loop, and every request with it); the next comes after a pause, until
   * busyTimeout has passed. A try that failed was rolled back, so trying again is safe.
   */
  async locked<T>(work: () => T): Promise<T> {
    const run = this.db.transaction(work);
    return whenNotBusy(() => {
      const saved = this.#timeout.read.get() as number;
      this.#setTimeout(0);
      try {
        return run.immediate();
      } finally {
        this.#setTimeout(saved);
      }
    }, this.#busyTimeout);
  }

  #setTimeout(ms: number): void {
    let set = this.#timeout.set.get(ms);
    if (!set) {
      set = this.db.prepare(`PRAGMA busy_timeout = ${Math.trunc(ms)}`);
      this.#timeout.set.set(ms, set);
    }
    set.run();
  }

  #run({ sql, params }: Statement): Row[] {
    const statement = this.#statement(sql);
    // A statement without rows (capture's DDL) is run; all() refuses it.
    if (!statement.reader) {
      statement.run(params);
      return [];
    }
    return statement.all(params) as Row[];
  }

  #statement(sql: string): Database.Statement {
    let statement = this.#statements.get(sql);
    if (statement) {
      this.#statements.delete(sql); // re-insert: Map order is our recency order
    } else {
      statement = this.db.prepare(sql);
      if (this.#statements.size >= MAX_CACHED_STATEMENTS) {
        const oldest = this.#statements.keys().next().value;
        if (oldest !== undefined) this.#statements.delete(oldest);
      }
    }
    this.#statements.set(sql, statement);
    return statement;
  }

  /** Runs driver work and turns anything thrown into an EdgecacheError without SQL text. */
  #guard<T>(work: () => T): T {
    try {
      return work();
    } catch (err) {
      throw toEdgecacheError(err);
    }
  }
}
