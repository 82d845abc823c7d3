import type Database from "better-sqlite3";
import type { Row } from "../../core/data/query.ts";
import { EdgecacheError } from "../../core/errors.ts";
import { Turns } from "../../core/turns.ts";
import {
  type CatalogColumn,
  catalogColumns,
  RETURNING,
  type SqlResult,
  type SqlRow,
} from "../client.ts";
import type { Statement, Steps } from "../dialect.ts";
import { runStepsAsync, type TransactionDriver, type WriteOptions } from "../driver.ts";
import { MarkedWrites, ownMarked } from "./change-table.ts";
import { MAX_IN_PARAMS, toEdgecacheError, whenNotBusy } from "./dialect.ts";
import { openLibsqlFile } from "./own-connection.ts";
import { SyncSqliteDriver } from "./sync-driver.ts";

/** A libSQL `Client` (`@libsql/client`) as far as the source uses it; no import needed. */
export interface LibsqlClientLike {
  /** "file" for a local database (`file:` URL, `:memory:`); "http", "ws" for a server. */
  readonly protocol: string;
  execute(stmt: LibsqlStatement): Promise<LibsqlResult>;
  transaction(mode: "write"): Promise<LibsqlTransactionLike>;
}

/** What libSQL binds (its `InValue`). */
type LibsqlValue = null | string | number | bigint | boolean | ArrayBuffer | Uint8Array | Date;

interface LibsqlStatement {
  sql: string;
  args: LibsqlValue[];
}

interface LibsqlTransactionLike {
  execute(stmt: LibsqlStatement): Promise<LibsqlResult>;
  commit(): Promise<void>;
  /** Rolls back what is still open; nothing after a commit. */
  close(): void;
}

interface LibsqlResult {
  columns: string[];
  rows: ArrayLike<unknown>[];
  rowsAffected: number;
}

/**
 * The driver of a libSQL client, chosen on first use (the client is asked for its file).
 *
 * A file (`file:` URL) is run on a connection of edgecache's own to it, opened with the
 * `libsql` package (SyncSqliteDriver), never on the client's: a statement that finds the
 * file busy is left active by libSQL, and the connection's later writes are then answered
 * and never committed (issue 45; see database/sqlite/own-connection.ts). The client's pool hands
 * out its connections, so none could be repaired; ours is reopened.
 *
 * In memory (one connection, which nothing else can lock) and on a server (`libsql:`,
 * `http:`, `ws:`; the server takes the locks) the client runs the statements (LibsqlDriver).
 */
export function libsqlDriver(
  client: LibsqlClientLike,
  options: { busyTimeout: number; file: () => Promise<string | undefined> },
): TransactionDriver & { marked: MarkedWrites } {
  // Marked here, whichever connection runs the write (the inner driver sees no mark).
  const marked = new MarkedWrites();
  let made: Promise<TransactionDriver> | undefined;
  const driver = () => {
    made ??= options.file().then((file) => {
      if (file === undefined) return new LibsqlDriver(client, options);
      const open = () => openLibsqlFile(file) as unknown as Database.Database;
      return new SyncSqliteDriver(open(), {
        owned: true,
        busyTimeout: options.busyTimeout,
        reopen: open,
        kind: "libsql",
      });
    });
    made.catch(() => {
      made = undefined; // tried again by the next call (the client was closed, say)
    });
    return made;
  };
  return {
    maxInParams: MAX_IN_PARAMS,
    dialect: "sqlite",
    kind: "libsql",
    run: (sql, params) => runOnClient(client, sql, params),
    columns(table) {
      return catalogColumns(this, table);
    },
    read: async (steps) => (await driver()).read(steps),
    transaction: async (steps, writeOptions) =>
      (await driver()).transaction(marked.steps(steps, writeOptions?.capture)),
    marked,
    error: (cause) => toEdgecacheError(withExtendedCode(cause)),
    async close() {
      await (await made?.catch(() => undefined))?.close();
    },
  };
}

/**
 * A libSQL `Client` as a driver: statements awaited one after another, writes in an
 * interactive write transaction (`BEGIN IMMEDIATE`), rolled back when a step throws. For a
 * database in memory or on a server only (see libsqlDriver).
 *
 * A busy database is waited for between tries (whenNotBusy), never inside SQLite. Only the
 * BEGIN is tried again: the steps run once, and a statement that fails later fails the
 * write, rolled back.
 *
 * This process's writes run one at a time (SQLite has one writer anyway). In memory its
 * reads take turns with them too: the client has one connection, which an open transaction
 * holds, and libSQL refuses any other statement meanwhile rather than wait.
 */
class LibsqlDriver implements TransactionDriver {
  readonly maxInParams = MAX_IN_PARAMS;
  readonly dialect = "sqlite";
  readonly kind = "libsql";
  readonly #client: LibsqlClientLike;
  readonly #busyTimeout: number;
  /** Reads take turns with writes (in memory). */
  readonly #oneConnection: boolean;
  #ready: Promise<void> | undefined;
  /** Transactions take turns, and reads with them on one connection. */
  readonly #turns = new Turns();

  constructor(client: LibsqlClientLike, options: { busyTimeout: number }) {
    this.#client = client;
    this.#busyTimeout = options.busyTimeout;
    this.#oneConnection = client.protocol === "file";
  }

  run(sql: string, params: readonly unknown[]): Promise<SqlResult> {
    return runOnClient(this.#client, sql, params);
  }

  columns(table: string): Promise<CatalogColumn[]> {
    return catalogColumns(this, table);
  }

  async read<T>(steps: Steps<T>): Promise<T> {
    await this.#start();
    const read = () =>
      runStepsAsync(steps, (s) => whenNotBusy(() => execute(this.#client, s), this.#busyTimeout));
    return this.#oneConnection ? this.#turns.run(read) : read();
  }

  async transaction<T>(steps: Steps<T>, options?: WriteOptions): Promise<T> {
    await this.#start();
    return this.#turns.run(async () => {
      const tx = await whenNotBusy(() => this.#client.transaction("write"), this.#busyTimeout);
      try {
        const marked = ownMarked(steps, options?.capture);
        const result = await runStepsAsync(marked, (s) => execute(tx, s));
        await tx.commit();
        return result;
      } finally {
        tx.close();
      }
    });
  }

  error(cause: unknown): EdgecacheError {
    return toEdgecacheError(withExtendedCode(cause));
  }

  async close(): Promise<void> {
    // The client is the application's: it stays open.
  }

  /**
   * Foreign keys on, as for better-sqlite3 (libSQL's build opens connections with them on
   * already; this keeps a client that turned them off from writing orphans), and integers
   * read as numbers: a client of intMode "string" would read them as text.
   */
  #start(): Promise<void> {
    this.#ready ??= (async () => {
      await this.#client.execute({ sql: "PRAGMA foreign_keys = ON", args: [] });
      const { rows } = await this.#client.execute({ sql: "PRAGMA foreign_keys", args: [] });
      if (typeof rows[0]?.[0] === "string") {
        throw new EdgecacheError(
          "E_BAD_OPTION",
          "sqlite",
          'client: expected a libSQL Client with intMode "number" or "bigint", got intMode "string"',
        );
      }
    })().catch((err) => {
      this.#ready = undefined;
      throw err;
    });
    return this.#ready;
  }
}

/**
 * One statement on the application's client, as it runs it: values as the client gives
 * them, rows as plain objects.
 */
async function runOnClient(
  client: Pick<LibsqlClientLike, "execute">,
  sql: string,
  params: readonly unknown[],
): Promise<SqlResult> {
  const r = await client.execute({ sql, args: [...params] as LibsqlValue[] });
  const rows = r.rows.map((row) => {
    const o: SqlRow = {};
    r.columns.forEach((name, i) => {
      o[name] = row[i];
    });
    return o;
  });
  // libSQL counts no change for a write whose rows come back (`returning`).
  const returned = r.rowsAffected === 0 && rows.length > 0 && RETURNING.test(sql);
  return { rows, rowsAffected: returned ? rows.length : r.rowsAffected };
}

async function execute(
  db: Pick<LibsqlClientLike, "execute">,
  { sql, params }: Statement,
): Promise<Row[]> {
  const result = await db.execute({ sql, args: params as LibsqlValue[] });
  return result.rows.map((values) => {
    const row: Row = {};
    result.columns.forEach((name, i) => {
      row[name] = value(values[i]);
    });
    return row;
  });
}

/**
 * A value as better-sqlite3 reads it: an integer as a number (a client of intMode "bigint"
 * gives bigints), a BLOB as bytes (libSQL gives an ArrayBuffer).
 */
function value(v: unknown): unknown {
  if (typeof v === "bigint") return Number(v);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  return v;
}

/** SQLite's primary code of constraint violations, and one extended code libsql cannot name. */
const SQLITE_CONSTRAINT = 19;
const SQLITE_CONSTRAINT_DATATYPE = 3091;

/**
 * SQLite's most precise code of a libSQL error. `@libsql/client` gives the primary code
 * (`SQLITE_CONSTRAINT`) as `code` and the extended one (`SQLITE_CONSTRAINT_UNIQUE`) as
 * `extendedCode`; the `libsql` package gives the extended one as `code`, but names
 * SQLITE_CONSTRAINT_DATATYPE (a STRICT table's) `UNKNOWN_SQLITE_ERROR_3091`: `rawCode` tells.
 */
function sqliteCode(err: { code?: unknown; extendedCode?: unknown; rawCode?: unknown }) {
  const { code, extendedCode, rawCode } = err;
  if (rawCode === SQLITE_CONSTRAINT_DATATYPE) return "SQLITE_CONSTRAINT_DATATYPE";
  for (const c of [extendedCode, code]) {
    if (typeof c === "string" && c.startsWith("SQLITE_")) return c;
  }
  if (typeof rawCode === "number" && (rawCode & 0xff) === SQLITE_CONSTRAINT) {
    return "SQLITE_CONSTRAINT";
  }
  return undefined;
}

/** A libSQL error with SQLite's most precise code as `code`, which the dialect maps. */
function withExtendedCode(err: unknown): unknown {
  if (err instanceof EdgecacheError || !(err instanceof Error)) return err;
  const code = sqliteCode(err as { code?: unknown });
  if (code === undefined || code === (err as { code?: unknown }).code) return err;
  return Object.assign(new Error(err.message, { cause: err }), { code });
}
