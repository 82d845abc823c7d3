import type Database from "better-sqlite3";
import type { CaptureFeed, CaptureStatus, CapturingSource } from "../core/capture-feed.ts";
import type { ViewInfo } from "../core/data/query.ts";
import { badOption, checkOptionNames, EdgecacheError, type OptionNames } from "../core/errors.ts";
import { clientKind } from "../database/client-kind.ts";
import { rowsOf } from "../database/dialect.ts";
import { isDriver, isTransactional, type TransactionDriver } from "../database/driver.ts";
import {
  captureStatusSteps,
  FORGET_OWN_SQL,
  installCaptureSteps,
  MarkedWrites,
  sqliteCaptureFeed,
  sqliteExecutorFeed,
  uninstallCaptureSteps,
} from "../database/sqlite/change-table.ts";
import { clientExecutor } from "../database/sqlite/client-capture.ts";
import {
  type ColumnMeta,
  DEFAULT_BUSY_TIMEOUT_MS,
  sqliteDialect,
  type TableMeta,
} from "../database/sqlite/dialect.ts";
import { openSqliteFile } from "../database/sqlite/file.ts";
import { type LibsqlClientLike, libsqlDriver } from "../database/sqlite/libsql-driver.ts";
import { libsqlFile, openLibsqlFile, ownConnection } from "../database/sqlite/own-connection.ts";
import { SyncSqliteDriver } from "../database/sqlite/sync-driver.ts";
import type { Source } from "./source.ts";
import { validateViewsOption } from "./sql.ts";
import { SqlSource } from "./sql-source.ts";

const COMPONENT = "sqlite";

/** The options SqliteSourceOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<SqliteSourceOptions> = {
  busyTimeout: true,
  client: true,
  database: true,
  driver: true,
  path: true,
  readonly: true,
  views: true,
};

interface CommonOptions {
  views?: ViewInfo[];
  /**
   * How long a write waits, in ms, for a write lock another connection or process holds
   * (DEFAULT_BUSY_TIMEOUT_MS); then it fails with E_SOURCE_BUSY (a 503 with Retry-After).
   * It waits between tries, never blocking the event loop as SQLite's own busy_timeout would;
   * only opening a `path` blocks, as long as this, for the switch to WAL mode.
   */
  busyTimeout?: number;
}

export type SqliteSourceOptions =
  | ({ path: string; readonly?: boolean } & CommonOptions)
  | ({ database: Database.Database } & CommonOptions)
  | ({ client: LibsqlClientLike } & CommonOptions)
  /** A driver of your own over a SQLite database (see Driver in edgecache/testing). */
  | ({ driver: TransactionDriver } & CommonOptions);

/** The options that name the database: one of them is given (without any, `path` is asked for). */
const DATABASE_OPTIONS = ["path", "database", "client", "driver"] as const;

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
  checkOptionNames(COMPONENT, options, OPTIONS);
  const given = DATABASE_OPTIONS.filter((name) => name in options);
  if (given.length > 1) {
    throw new EdgecacheError(
      "E_BAD_OPTION",
      COMPONENT,
      `options ${given.map((n) => `"${n}"`).join(" and ")} exclude each other: give one of path, database, client or driver`,
    );
  }
  const views = validateViewsOption(COMPONENT, options.views);
  const { busyTimeout = DEFAULT_BUSY_TIMEOUT_MS } = options;
  if (typeof busyTimeout !== "number" || !(busyTimeout >= 0) || !Number.isFinite(busyTimeout)) {
    badOption(COMPONENT, "busyTimeout", "milliseconds >= 0", busyTimeout);
  }
  if ("driver" in options) {
    const driver: unknown = options.driver;
    if (!isDriver(driver)) {
      badOption(
        COMPONENT,
        "driver",
        "a Driver (run, columns, read, error, close, transaction)",
        driver,
      );
    }
    if (driver.dialect !== "sqlite")
      badOption(COMPONENT, "driver.dialect", '"sqlite"', driver.dialect);
    if (!isTransactional(driver)) {
      badOption(
        COMPONENT,
        "driver",
        "a driver with transaction() (a batch driver is D1's)",
        driver,
      );
    }
    if ("busyTimeout" in options) {
      badOption(
        COMPONENT,
        "busyTimeout",
        "nothing with driver (a driver does its own waiting)",
        busyTimeout,
      );
    }
    return drivenSource(driver, views);
  }
  if ("client" in options) {
    const client: unknown = options.client;
    if (clientKind(client) !== "libsql") badOption(COMPONENT, "client", "a libSQL Client", client);
    return libsqlSource(client as LibsqlClientLike, { busyTimeout, views });
  }
  if ("database" in options) {
    const db: unknown = options.database;
    const kind = clientKind(db);
    if (kind !== "better-sqlite3") {
      const hint = kind === "libsql" ? " (a libSQL Client goes in option client)" : "";
      badOption(COMPONENT, "database", `a better-sqlite3 Database${hint}`, db);
    }
    const driver = new SyncSqliteDriver(options.database, { owned: false, busyTimeout });
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
    busyTimeout,
  });
  const driver = new SyncSqliteDriver(db, { owned: true, busyTimeout });
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
      await this.#driver.transaction(installCaptureSteps([...tables.keys()]));
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
 * Removes a recorded write's rows on the driver's connection (better-sqlite3's or our own:
 * never a libSQL client's). A write whose transaction found no capture table has no rows
 * carrying its mark: no statement to run for it.
 */
async function forgetOn(
  driver: TransactionDriver & { marked: MarkedWrites },
  mark: string,
): Promise<void> {
  // The write's own transaction found whether capture was installed (MarkedWrites).
  if (!driver.marked.take(mark)) return;
  try {
    await driver.transaction(rowsOf({ sql: FORGET_OWN_SQL, params: [mark] }));
  } catch {
    // Busy: the rows stay, and are captured after API_GRACE_MS (harmless).
  }
}

/**
 * better-sqlite3's capture runs on the source's connection, whose statements are reset
 * when they fail; a write waits for the lock (locked).
 */
function betterSqliteCapture(driver: SyncSqliteDriver): SqliteCapture {
  return {
    refusal: async () => undefined,
    forget: (mark) => forgetOn(driver, mark),
    feed: (columnsOf) => sqliteCaptureFeed(driver.db, columnsOf, (work) => driver.locked(work)),
    close: async () => {},
  };
}

/**
 * A source over a libSQL client (see libsqlDriver for where its statements run). Capture's
 * background statements (its looks, reads of the change table, deletes, the lease) run on
 * a connection of their own to the client's file (see ownConnection), which is repaired
 * by closing it when a statement fails. A data API write's marks are written in its
 * transaction (ownMarked) and removed on the driver's connection.
 */
function libsqlSource(
  client: LibsqlClientLike,
  options: { busyTimeout: number; views: ViewInfo[] },
): Source & CapturingSource {
  const local = client.protocol === "file";
  let file: Promise<string | undefined> | undefined;
  const fileOf = () => {
    file ??= local ? libsqlFile(client) : Promise.resolve(undefined);
    file.catch(() => {
      file = undefined;
    });
    return file;
  };
  const driver = libsqlDriver(client, { busyTimeout: options.busyTimeout, file: fileOf });
  const own = ownConnection(async () => {
    const path = await fileOf();
    return path === undefined ? undefined : openLibsqlFile(path);
  });
  const remote = `change capture follows a libSQL database through its file, and this client's URL is ${client.protocol}: install capture and serve from a node that opens the database with a file: URL, or serve without capture`;
  const capture: SqliteCapture = {
    async refusal() {
      if (!local) return remote;
      if ((await fileOf()) === undefined) {
        return "change capture needs a libSQL database in a file (a file: URL): one in memory has no other connection to follow it from";
      }
      return undefined;
    },
    async forget(mark) {
      if ((await fileOf().catch(() => undefined)) !== undefined) await forgetOn(driver, mark);
    },
    feed(columnsOf) {
      if (!local) throw new EdgecacheError("E_BAD_OPTION", COMPONENT, remote);
      const feed = sqliteExecutorFeed(own, columnsOf, { own: true });
      // In memory there is no file to follow, and capture is never installed.
      return { ...feed, installed: async () => (await own.available()) && feed.installed() };
    },
    close: () => own.close(),
  };
  return new SqliteSource(driver, capture, { readonly: false, views: options.views });
}

/**
 * A source over a driver of your own (see Driver). Its writes' rows in the change table
 * are marked here, around the steps the driver runs (see ownMarked), so that the driver
 * need not know capture; the change table is followed on the driver's connection.
 */
function drivenSource(given: TransactionDriver, views: ViewInfo[]): Source & CapturingSource {
  const marked = new MarkedWrites();
  const driver: TransactionDriver & { marked: MarkedWrites } = {
    ...bound(given),
    marked,
    transaction: (steps, options) => given.transaction(marked.steps(steps, options?.capture)),
  };
  const capture: SqliteCapture = {
    refusal: async () => undefined,
    forget: (mark) => forgetOn(driver, mark),
    feed: (columnsOf) => sqliteExecutorFeed(clientExecutor(given), columnsOf),
    close: async () => {},
  };
  return new SqliteSource(driver, capture, { readonly: false, views });
}

/** A driver's members bound to it, to be spread into another object; its close left out. */
function bound(driver: TransactionDriver): TransactionDriver {
  return {
    dialect: driver.dialect,
    kind: driver.kind,
    maxInParams: driver.maxInParams,
    run: (sql, params) => driver.run(sql, params),
    columns: (table) => driver.columns(table),
    read: (steps) => driver.read(steps),
    error: (cause) => driver.error(cause),
    transaction: (steps, options) => driver.transaction(steps, options),
    // The application's: left open when the source closes, as a client given is.
    close: async () => {},
  };
}
