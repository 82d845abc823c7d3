import type { Row } from "../../core/data/query.ts";
import { EdgecacheError } from "../../core/errors.ts";
import { type CatalogColumn, catalogColumns, type SqlResult, type SqlRow } from "../client.ts";
import type { Statement, Steps } from "../dialect.ts";
import { type BatchDriver, runStepsAsync, type WriteOptions } from "../driver.ts";
import { toEdgecacheError } from "../sqlite/dialect.ts";
import type { D1DatabaseLike, D1QueriesLike, D1StatementLike } from "./binding.ts";
import type { D1OwnChanges } from "./change-table.ts";
import { countsRows, runCounted } from "./own-changes.ts";

/**
 * D1 read replication through the Sessions API. Reads open a session at `bookmark()`, the
 * newest write the cache has promised (the change log carries each write's bookmark), so a
 * replica answers only once it holds every acknowledged write; writes run in a session
 * opened at the primary (`first-primary`) and hand its bookmark to `written` before their
 * record is appended.
 */
export interface D1Sessions {
  /**
   * Where reads must be: a bookmark; undefined while no write with a bookmark is known (any
   * replica will do); null when it cannot be told (the change log is out of reach), and
   * reads go to the primary.
   */
  bookmark(): string | null | undefined;
  /** A write's bookmark, heard before its record is appended. */
  written(bookmark: string): void;
}

/** D1 binds at most 100 parameters per statement. */
const D1_MAX_PARAMS = 100;

/** D1's async API as a driver: each statement awaited, a write one `batch` (one transaction). */
export class D1Driver implements BatchDriver {
  readonly dialect = "sqlite";
  readonly kind = "d1";
  readonly maxInParams = D1_MAX_PARAMS;
  readonly #db: D1DatabaseLike;
  readonly #own: D1OwnChanges;
  readonly #sessions: D1Sessions | undefined;

  constructor(db: D1DatabaseLike, own: D1OwnChanges, sessions: D1Sessions | undefined) {
    this.#db = db;
    this.#own = own;
    this.#sessions = sessions;
  }

  /**
   * One statement on the binding (no session: the application's statements choose none); a
   * write's `rowsAffected` is its own rows, not its triggers' too (see runCounted).
   */
  async run(sql: string, params: readonly unknown[]): Promise<SqlResult> {
    const statement = prepare(this.#db, { sql, params: [...params] });
    const r = countsRows(sql) ? await runCounted(this.#db, statement) : await statement.all();
    return { rows: (r.results ?? []) as SqlRow[], rowsAffected: r.meta?.changes ?? 0 };
  }

  columns(table: string): Promise<CatalogColumn[]> {
    return catalogColumns(this, table);
  }

  read<T>(steps: Steps<T>): Promise<T> {
    // One session for the read's statements: each is at or after the bookmark the read
    // began with, which is read after the load took its log position (see D1Sessions).
    const at = this.#sessions?.bookmark();
    const db = this.#sessions
      ? this.#db.withSession!(at === null ? PRIMARY : (at ?? UNCONSTRAINED))
      : this.#db;
    return runStepsAsync(steps, async (statement) => {
      const { results } = await prepare(db, statement).all();
      return results as Row[];
    });
  }

  async batch(statements: Statement[], options?: WriteOptions): Promise<Row[][]> {
    const session = this.#sessions ? this.#db.withSession!(PRIMARY) : undefined;
    const db = session ?? this.#db;
    const prepared = statements.map((s) => prepare(db, s));
    const results = await this.#own.batch(prepared, options?.capture, db);
    const bookmark = session?.getBookmark();
    if (bookmark) this.#sessions!.written(bookmark);
    return results.map((r) => r.results as Row[]);
  }

  error(cause: unknown): EdgecacheError {
    return toEdgecacheError(withSqliteCode(cause));
  }

  async close(): Promise<void> {
    // A binding has nothing to close.
  }
}

/** Sessions API constraints: the first query anywhere, or at the primary. */
const UNCONSTRAINED = "first-unconstrained";
const PRIMARY = "first-primary";

function prepare(db: D1QueriesLike, { sql, params }: Statement): D1StatementLike {
  const statement = db.prepare(sql);
  return params.length > 0 ? statement.bind(...params) : statement;
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
