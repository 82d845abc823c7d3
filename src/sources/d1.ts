import { badOption, EdgecacheError } from "../core/errors.ts";
import type { Row, ViewInfo } from "../core/query.ts";
import type { Source } from "./source.ts";
import { validateViewsOption } from "./sql.ts";
import type { Statement, Steps } from "./sql-dialect.ts";
import { type BatchDriver, runStepsAsync } from "./sql-driver.ts";
import { sqlSource } from "./sql-source.ts";
import { sqliteDialect, toEdgecacheError } from "./sqlite-dialect.ts";

/** The part of a D1 binding (`D1Database`) this source uses; no Cloudflare type needed. */
export interface D1DatabaseLike {
  prepare(sql: string): D1StatementLike;
  batch(statements: D1StatementLike[]): Promise<{ results: unknown[] }[]>;
}
export interface D1StatementLike {
  bind(...values: unknown[]): D1StatementLike;
  all(): Promise<{ results: unknown[] }>;
  first(): Promise<unknown>;
}

export interface D1SourceOptions {
  /** The D1 binding (`env.DB` in a Worker). */
  database: D1DatabaseLike;
  /** Declared views (joins), as for the SQLite source. */
  views?: ViewInfo[];
}

export interface D1SourceOptions {
  /** The D1 binding (`env.DB` in a Worker). */
  database: D1DatabaseLike;
  /** Declared views (joins), as for the SQLite source. */
  views?: ViewInfo[];
}

const COMPONENT = "d1";

/** D1 binds at most 100 parameters per statement. */
const D1_MAX_PARAMS = 100;
/** D1's and wrangler's own tables: never served. */
const INTERNAL = /^(sqlite_|_cf_|d1_migrations$)/;

/**
 * A Source over Cloudflare D1: SQLite's dialect (the same compiled filters, sorts and
 * checks as the better-sqlite3 source) over D1's async API.
 *
 * D1 has no interactive transactions, so each write is one statement or one `batch`
 * (which D1 runs as one transaction): an update reads the old row and writes in one
 * batch, a delete reads the rows its foreign key actions change and deletes in one batch
 * (see SqlSource). A value SQLite would convert by column affinity is refused before the
 * write (there is no transaction to roll back after it).
 *
 * @example
 * ```ts
 * const source = d1Source({ database: env.DB, views: demoViews });
 * ```
 */
export function d1Source(options: D1SourceOptions): Source {
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  const db = options.database;
  if (typeof db !== "object" || db === null || typeof db.prepare !== "function") {
    badOption(COMPONENT, "database", "a D1 database binding", db);
  }
  const views = validateViewsOption(COMPONENT, options.views);
  return sqlSource(sqliteDialect(COMPONENT, INTERNAL), new D1Driver(db), {
    name: COMPONENT,
    views,
  });
}

/** D1's async API as a driver: each statement awaited, a write one `batch` (one transaction). */
class D1Driver implements BatchDriver {
  readonly maxInParams = D1_MAX_PARAMS;
  readonly #db: D1DatabaseLike;

  constructor(db: D1DatabaseLike) {
    this.#db = db;
  }

  read<T>(steps: Steps<T>): Promise<T> {
    return runStepsAsync(steps, async (statement) => {
      const { results } = await this.#prepare(statement).all();
      return results as Row[];
    });
  }

  async batch(statements: Statement[]): Promise<Row[][]> {
    const results = await this.#db.batch(statements.map((s) => this.#prepare(s)));
    return results.map((r) => r.results as Row[]);
  }

  error(cause: unknown): EdgecacheError {
    return toEdgecacheError(withSqliteCode(cause));
  }

  async close(): Promise<void> {
    // A binding has nothing to close.
  }

  #prepare({ sql, params }: Statement): D1StatementLike {
    const statement = this.#db.prepare(sql);
    return params.length > 0 ? statement.bind(...params) : statement;
  }
}

/**
 * D1 errors carry SQLite's message but no code property ("D1_ERROR: UNIQUE constraint
 * failed: users.email: SQLITE_CONSTRAINT"): the code is read from the message, so the
 * dialect's mapping (409 for constraints, 400 for types) applies as for better-sqlite3.
 */
function withSqliteCode(err: unknown): unknown {
  if (err instanceof EdgecacheError || !(err instanceof Error)) return err;
  // workerd adds the extended code too: "...: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_UNIQUE)".
  const message = err.message
    .replace(/^D1_\w+:\s*/, "")
    .replace(/:\s*SQLITE_\w+(\s*\(extended: SQLITE_\w+\))?$/, "");
  const kind = /^(UNIQUE|NOT NULL|FOREIGN KEY|CHECK|PRIMARY KEY) constraint failed/.exec(message);
  const code = kind
    ? `SQLITE_CONSTRAINT_${kind[1]!.replace(" ", "")}`
    : /cannot store .* value in .* column/.test(message)
      ? "SQLITE_CONSTRAINT_DATATYPE"
      : /SQLITE_BUSY/.test(err.message)
        ? "SQLITE_BUSY"
        : undefined;
  return Object.assign(new Error(message, { cause: err }), code ? { code } : {});
}
