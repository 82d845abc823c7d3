import type postgres from "postgres";
import type { Row } from "../../core/data/query.ts";
import { EdgecacheError, type ErrorCode } from "../../core/errors.ts";
import {
  type CatalogColumn,
  catalogColumns,
  changedRows,
  type SqlResult,
  type SqlRow,
} from "../client.ts";
import type { Steps } from "../dialect.ts";
import { runStepsAsync, type TransactionDriver, type WriteOptions } from "../driver.ts";
import { API_SETTING, isInstalled } from "./change-table.ts";
import { transaction } from "./transaction.ts";

/**
 * postgres.js as a driver of the SQL room: a pool opened as the data API wants one, each
 * write in a transaction of its own with change capture's mark, and the server's errors
 * mapped by SQLSTATE.
 */

const COMPONENT = "postgres";

/** How often the source asks whether change capture is installed, ms. */
const CAPTURE_CHECK_MS = 1000;

/** Small IN lists keep statements cheap to plan (PostgreSQL allows 65,535 parameters). */
const MAX_IN_PARAMS = 500;

/**
 * Seconds a connection waits before it reconnects after its n-th failure in a row: 50 ms
 * doubling, at most half a second. postgres.js's own backoff grows to 20 s, and its count
 * is shared by the pool, so a restart of a fraction of a second left requests waiting for
 * a connection 14-17 s after the database was back.
 */
export function reconnectBackoff(failures: number): number {
  return Math.min(0.05 * 2 ** failures, 0.5);
}

export type Sql = postgres.Sql;
/** Either the pool or a transaction's connection. */
type Runner = postgres.Sql | postgres.TransactionSql;

/**
 * postgres.js as a driver: reads on the pool, each write in a transaction of its own
 * (`transaction()`, which survives the server going away) with change capture's mark set
 * inside it, and the server's errors mapped by SQLSTATE.
 */
export class PostgresDriver implements TransactionDriver {
  readonly maxInParams = MAX_IN_PARAMS;
  readonly dialect = "postgres";
  readonly kind = "postgres.js";
  readonly sql: Sql;
  /** The PostgreSQL schema whose tables are served. */
  readonly schema: string;
  readonly #owned: boolean;
  readonly #postgres: typeof postgres | undefined;
  #captureOn = false;
  #captureCheckedAt = 0;

  constructor(
    sql: Sql,
    options: {
      owned: boolean;
      schema: string;
      /** postgres.js itself, which connectOne() opens a connection with. */
      postgres?: typeof postgres;
    },
  ) {
    this.sql = sql;
    this.schema = options.schema;
    this.#owned = options.owned;
    this.#postgres = options.postgres;
  }

  /** One statement as the application runs it (not prepared: its text may be one of many). */
  async run(text: string, params: readonly unknown[]): Promise<SqlResult> {
    const rows = (await this.sql.unsafe(text, [...params] as never[])) as unknown as SqlRow[] & {
      count?: number | null;
      command?: string;
    };
    return {
      rows: rows.map((r) => ({ ...r })),
      rowsAffected: changedRows(rows.command, rows.count),
    };
  }

  columns(table: string): Promise<CatalogColumn[]> {
    return catalogColumns(this, table);
  }

  read<T>(steps: Steps<T>): Promise<T> {
    return runStepsAsync(steps, (s) => run(this.sql, s.sql, s.params));
  }

  async transaction<T>(steps: Steps<T>, options?: WriteOptions): Promise<T> {
    const marked = await this.#marked(options);
    return transaction(this.sql, async (tx) => {
      await setApiWrite(tx, marked);
      return runStepsAsync(steps, (s) => run(tx, s.sql, s.params));
    }) as Promise<T>;
  }

  error(cause: unknown): EdgecacheError {
    return toEdgecacheError(cause);
  }

  async close(): Promise<void> {
    if (this.#owned) await this.sql.end({ timeout: 5 });
  }

  /** Whether capture is installed, asked at most once a second (see WriteOptions.capture). */
  async captureInstalled(): Promise<boolean> {
    const now = Date.now();
    if (now - this.#captureCheckedAt > CAPTURE_CHECK_MS) {
      this.#captureCheckedAt = now;
      this.#captureOn = await isInstalled(this, this.schema).catch(() => this.#captureOn);
    }
    return this.#captureOn;
  }

  /**
   * A client of one connection to the same database, with the pool's options (postgres.js
   * takes its own parsed options back) and a count of failures of its own.
   */
  connectOne(): Sql {
    const options = this.sql.options;
    if (!this.#postgres) {
      throw new EdgecacheError("E_INTERNAL", COMPONENT, "connectOne() needs postgres.js given");
    }
    return this.#postgres({
      ...options,
      max: 1,
      backoff: reconnectBackoff,
      shared: { retries: 0, typeArrayMap: {} },
    } as unknown as postgres.Options<Record<string, never>>);
  }

  /** The write's options for its transaction: the capture mark only while capture is on. */
  async #marked(options: WriteOptions | undefined): Promise<WriteOptions | undefined> {
    return options?.capture !== undefined && (await this.captureInstalled()) ? options : undefined;
  }
}

/**
 * Gives the rows change capture's triggers record in this transaction the write's mark
 * (see WriteOptions.capture).
 */
async function setApiWrite(tx: Runner, options: WriteOptions | undefined): Promise<void> {
  if (options?.capture === undefined) return;
  await tx.unsafe(`SELECT set_config('${API_SETTING}', $1, true)`, [options.capture]);
}

async function run(runner: Runner, sql: string, params: unknown[] = []): Promise<Row[]> {
  return (await runner.unsafe(sql, params as never[], { prepare: true })) as unknown as Row[];
}

/**
 * A PostgreSQL error by its SQLSTATE class and code
 * (https://www.postgresql.org/docs/current/errcodes-appendix.html), from postgres.js
 * (`constraint_name`, `column_name`) or node-postgres (`constraint`, `column`).
 */
export function toEdgecacheError(cause: unknown): EdgecacheError {
  if (cause instanceof EdgecacheError) return cause;
  const raw = (cause ?? {}) as {
    code?: unknown;
    detail?: unknown;
    column_name?: unknown;
    constraint_name?: unknown;
    column?: unknown;
    constraint?: unknown;
  };
  const e = {
    ...raw,
    column_name: raw.column_name ?? raw.column,
    constraint_name: raw.constraint_name ?? raw.constraint,
  };
  const code = typeof e.code === "string" ? e.code : "";
  const error = (errorCode: ErrorCode, text: string) =>
    new EdgecacheError(errorCode, COMPONENT, text, { cause });
  const columns = /^Key \(([^)]*)\)/.exec(typeof e.detail === "string" ? e.detail : "")?.[1];
  const named = columns
    ? ` on column ${columns
        .split(", ")
        .map((c) => `"${c.replaceAll('"', "")}"`)
        .join(", ")}`
    : "";
  switch (code) {
    case "23505":
      return String(e.constraint_name ?? "").endsWith("_pkey")
        ? error("E_CONFLICT", `a row with this primary key already exists${named}`)
        : error("E_CONFLICT", `unique constraint violated${named}`);
    case "23502":
      return error(
        "E_CONFLICT",
        `not null constraint violated${typeof e.column_name === "string" ? ` on column "${e.column_name}"` : ""}`,
      );
    case "23503":
      return error("E_CONFLICT", "foreign key constraint violated");
    case "23514": {
      const name = String(e.constraint_name ?? "");
      return error(
        "E_CONFLICT",
        /^[A-Za-z_][A-Za-z0-9_]*$/.test(name)
          ? `check constraint "${name}" violated`
          : "check constraint violated",
      );
    }
    case "53100": // disk_full (RFC 4918 11.5: retrying soon will not help)
      return error("E_SOURCE_FULL", "the database has no room to store the write");
    case "25006":
      return error("E_SOURCE_UNAVAILABLE", "the database is read-only");
    case "40001":
    case "40P01":
    case "55P03":
      return error("E_SOURCE_BUSY", "the database could not serialize the write; try again");
  }
  // A generated or identity column given a value; a value of the wrong type.
  if (code === "428C9" || code === "42804") {
    return error("E_BAD_BODY", "a value was given for a column that does not take one");
  }
  // The server is down, unreachable, restarting or shutting down: say so, not how.
  if (
    /^(ECONN|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|EPIPE|CONNECT_TIMEOUT|CONNECTION_)/.test(code) ||
    code.startsWith("08") ||
    code.startsWith("57P")
  ) {
    return error("E_SOURCE_UNAVAILABLE", "the database cannot be reached");
  }
  // Class 22: data exceptions (a value the column's type refuses, out of range, too long).
  if (code.startsWith("22")) return error("E_BAD_BODY", "a value is not valid for its column");
  if (code.startsWith("23")) return error("E_CONFLICT", "constraint violated");
  return error("E_SOURCE_UNAVAILABLE", `database error${code ? ` (${code})` : ""}`);
}
