import { EdgecacheError } from "../core/errors.ts";
import type { Row } from "../core/query.ts";
import type { WriteOptions } from "./source.ts";
import type { Statement, Steps } from "./sql-dialect.ts";
import { runStepsAsync, type TransactionDriver } from "./sql-driver.ts";
import { ownMarked } from "./sqlite-capture.ts";
import { MAX_IN_PARAMS, toEdgecacheError, whenNotBusy } from "./sqlite-dialect.ts";

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
}

/**
 * A libSQL `Client` as a driver: statements awaited one after another, writes in an
 * interactive write transaction (`BEGIN IMMEDIATE`), rolled back when a step throws.
 *
 * A busy database is waited for between tries (whenNotBusy), never inside SQLite: libSQL
 * opens its connections with busy_timeout 0 unless the client's `timeout` says otherwise.
 * Only the BEGIN is tried again: the steps run once, and a statement that fails later
 * (a COMMIT that finds readers in rollback-journal mode) fails the write, rolled back.
 *
 * This process's writes run one at a time, and its reads wait for the write under way: an
 * in-memory client has one connection, which an open transaction holds (libSQL refuses
 * anything else meanwhile rather than wait), and SQLite has one writer anyway.
 */
export class LibsqlDriver implements TransactionDriver {
  readonly maxInParams = MAX_IN_PARAMS;
  readonly #client: LibsqlClientLike;
  readonly #busyTimeout: number;
  readonly #marked: (mark: string) => void;
  #ready: Promise<void> | undefined;
  /** The write under way (settled, never rejected). */
  #writing: Promise<unknown> = Promise.resolve();

  constructor(
    client: LibsqlClientLike,
    options: {
      busyTimeout: number;
      /** Hears each write whose rows in capture's change table were marked (see ownMarked). */
      marked: (mark: string) => void;
    },
  ) {
    this.#client = client;
    this.#busyTimeout = options.busyTimeout;
    this.#marked = options.marked;
  }

  async read<T>(steps: Steps<T>): Promise<T> {
    await this.#start();
    await this.#writing;
    return runStepsAsync(steps, (s) =>
      whenNotBusy(() => execute(this.#client, s), this.#busyTimeout),
    );
  }

  async transaction<T>(steps: Steps<T>, options?: WriteOptions): Promise<T> {
    await this.#start();
    const write = this.#writing.then(async () => {
      const tx = await whenNotBusy(() => this.#client.transaction("write"), this.#busyTimeout);
      try {
        const mark = options?.capture;
        const marked = ownMarked(steps, mark, () => this.#marked(mark!));
        const result = await runStepsAsync(marked, (s) => execute(tx, s));
        await tx.commit();
        return result;
      } finally {
        tx.close();
      }
    });
    this.#writing = write.catch(() => {});
    return write;
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

/**
 * libSQL's errors carry SQLite's primary code (`SQLITE_CONSTRAINT`) as `code` and the
 * extended one (`SQLITE_CONSTRAINT_UNIQUE`) as `extendedCode`: the dialect's mapping reads
 * the extended one, as better-sqlite3 gives it, so a constraint maps alike on both.
 */
function withExtendedCode(err: unknown): unknown {
  const { code, extendedCode } = (err ?? {}) as { code?: unknown; extendedCode?: unknown };
  if (
    err instanceof EdgecacheError ||
    !(err instanceof Error) ||
    typeof extendedCode !== "string" ||
    typeof code !== "string" ||
    !extendedCode.startsWith(code)
  ) {
    return err;
  }
  return Object.assign(new Error(err.message, { cause: err }), { code: extendedCode });
}
