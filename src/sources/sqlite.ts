import Database from "better-sqlite3";
import type { CaptureFeed, CaptureStatus, CapturingSource } from "../core/capture.ts";
import { badOption, EdgecacheError } from "../core/errors.ts";
import type { Row, ViewInfo } from "../core/query.ts";
import type { Source, WriteOptions } from "./source.ts";
import { validateViewsOption } from "./sql.ts";
import type { Statement, Steps } from "./sql-dialect.ts";
import { runSteps, type TransactionDriver } from "./sql-driver.ts";
import { SqlSource } from "./sql-source.ts";
import {
  installSqliteCapture,
  ownChanges,
  sqliteCaptureFeed,
  sqliteCaptureStatus,
  uninstallSqliteCapture,
} from "./sqlite-capture.ts";
import {
  type ColumnMeta,
  sqliteDialect,
  type TableMeta,
  toEdgecacheError,
  whenNotBusy,
} from "./sqlite-dialect.ts";

const COMPONENT = "sqlite";

/** SQLite allows 32,766 bound parameters; small IN lists keep statements cheap to prepare. */
const MAX_IN_PARAMS = 500;

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
  | ({ database: Database.Database } & CommonOptions);

/**
 * A Source over a SQLite database (better-sqlite3): tables are discovered from the
 * database, views are declared. Opens the file itself (WAL mode) or uses a given handle,
 * which it then leaves open on close().
 *
 * @example
 * ```ts
 * const source = sqliteSource({ path: "demo.db", views: demoViews });
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
  const views = validateViewsOption(COMPONENT, options.views);
  const { busyTimeout = DEFAULT_BUSY_TIMEOUT_MS } = options;
  if (typeof busyTimeout !== "number" || !(busyTimeout >= 0) || !Number.isFinite(busyTimeout)) {
    badOption(COMPONENT, "busyTimeout", "milliseconds >= 0", busyTimeout);
  }
  if ("database" in options) {
    const db: unknown = options.database;
    if (
      typeof db !== "object" ||
      db === null ||
      typeof (db as Database.Database).prepare !== "function"
    ) {
      badOption(COMPONENT, "database", "a better-sqlite3 Database", db);
    }
    const driver = new BetterSqliteDriver(options.database, { owned: false, busyTimeout });
    return new SqliteSource(driver, { readonly: false, views });
  }
  const { path, readonly = false } = options;
  if (typeof path !== "string" || path === "") {
    badOption(COMPONENT, "path", "a non-empty string", path);
  }
  if (typeof readonly !== "boolean") badOption(COMPONENT, "readonly", "a boolean", readonly);
  let db: Database.Database;
  try {
    db = new Database(path, { readonly, fileMustExist: readonly });
    // WAL lets readers proceed while a write is in progress.
    if (!readonly) db.pragma("journal_mode = WAL");
  } catch (cause) {
    const message = `cannot open database ${JSON.stringify(path)}`;
    throw new EdgecacheError("E_SOURCE_UNAVAILABLE", COMPONENT, message, { cause });
  }
  const driver = new BetterSqliteDriver(db, { owned: true, busyTimeout });
  return new SqliteSource(driver, { readonly, views });
}

class SqliteSource extends SqlSource<ColumnMeta, TableMeta> implements CapturingSource {
  readonly #driver: BetterSqliteDriver;

  constructor(driver: BetterSqliteDriver, options: { readonly: boolean; views: ViewInfo[] }) {
    super(sqliteDialect(COMPONENT, /^sqlite_/), driver, { name: COMPONENT, ...options });
    this.#driver = driver;
  }

  async captureStatus(): Promise<CaptureStatus> {
    return this.guard(async () =>
      sqliteCaptureStatus(this.#driver.db, [...(await this.capturedTables()).keys()]),
    );
  }

  async installCapture(): Promise<CaptureStatus> {
    return this.guard(async () => {
      // Every user table, served or not: a link table's writes change what queries read.
      const tables = await this.capturedTables();
      const list = [...tables].map(([name, columns]) => ({ name, columns: [...columns.keys()] }));
      installSqliteCapture(this.#driver.db, list);
      this.forgetEffects();
      return sqliteCaptureStatus(this.#driver.db, [...tables.keys()]);
    });
  }

  async uninstallCapture(): Promise<void> {
    await this.guard(async () => uninstallSqliteCapture(this.#driver.db));
  }

  async recorded(mark: string): Promise<void> {
    // Without capture's table no row carries the mark: no transaction to take for it.
    if (!this.#driver.own.installed()) return;
    try {
      await this.#driver.locked(undefined, () => this.#driver.own.forget(mark));
    } catch {
      // Busy: the rows stay, and are captured after API_GRACE_MS (harmless).
    }
  }

  captureFeed(): CaptureFeed {
    return sqliteCaptureFeed(
      this.#driver.db,
      (table) => {
        const meta = this.knownTables()?.get(table);
        return meta ? [...meta.columns.keys()] : undefined;
      },
      (work) => this.#driver.locked(undefined, work),
    );
  }
}

/**
 * better-sqlite3 as a driver: synchronous statements, prepared once and kept (the least
 * recently used dropped first), and write transactions that wait for another
 * connection's lock without blocking the event loop.
 */
class BetterSqliteDriver implements TransactionDriver {
  readonly maxInParams = MAX_IN_PARAMS;
  readonly db: Database.Database;
  readonly own: ReturnType<typeof ownChanges>;
  readonly #owned: boolean;
  readonly #busyTimeout: number;
  readonly #statements = new Map<string, Database.Statement>();
  /** busy_timeout read and set around each try (prepared once: a pragma() call compiles). */
  readonly #timeout: { read: Database.Statement; set: Map<number, Database.Statement> };

  constructor(db: Database.Database, options: { owned: boolean; busyTimeout: number }) {
    this.db = db;
    this.#owned = options.owned;
    this.#busyTimeout = options.busyTimeout;
    this.own = ownChanges(db);
    // Off by default in SQLite; without it REFERENCES clauses are not enforced.
    this.#guard(() => db.pragma("foreign_keys = ON"));
    this.#timeout = { read: db.prepare("PRAGMA busy_timeout").pluck(), set: new Map() };
  }

  async read<T>(steps: Steps<T>): Promise<T> {
    return runSteps(steps, (s) => this.#run(s));
  }

  async transaction<T>(steps: Steps<T>, options?: WriteOptions): Promise<T> {
    return this.locked(options, () => runSteps(steps, (s) => this.#run(s)));
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
  async locked<T>(options: WriteOptions | undefined, work: () => T): Promise<T> {
    const run = this.db.transaction(() => {
      // Change capture's triggers record this write too: its rows carry the write's mark.
      const before = options?.capture === undefined ? undefined : this.own.before();
      const result = work();
      if (before !== undefined) this.own.mark(before, options!.capture!);
      return result;
    });
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
    return this.#statement(sql).all(params) as Row[];
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
