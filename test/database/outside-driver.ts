import Database from "better-sqlite3";
import { EdgecacheError } from "../../src/index.ts";
import type {
  CatalogColumn,
  SqlResult,
  SqlRow,
  Statement,
  Steps,
  TransactionDriver,
} from "../../src/testing/index.ts";

// A driver written outside edgecache, as a user of the published package writes one: a
// thin wrapper over better-sqlite3 that imports nothing but edgecache's public entries
// ("edgecache" for its error, "edgecache/testing" for the contract). outside-driver.test.ts
// holds it to the driver contract and caches statements on it.

/** Runs steps one statement after another, handing each its rows. */
function stepThrough<T>(steps: Steps<T>, run: (s: Statement) => SqlRow[]): T {
  let next = steps.next();
  while (!next.done) next = steps.next(run(next.value));
  return next.value;
}

export function plainSqliteDriver(path: string): TransactionDriver {
  const db = new Database(path);
  const run = (sql: string, params: readonly unknown[]): SqlResult => {
    const statement = db.prepare(sql);
    if (!statement.reader) return { rows: [], rowsAffected: statement.run(...params).changes };
    const rows = statement.all(...params) as SqlRow[];
    // A write's `returning` rows count as the rows it changed.
    return { rows, rowsAffected: statement.readonly ? 0 : rows.length };
  };
  const rowsOf = (s: Statement) => run(s.sql, s.params).rows;
  return {
    kind: "plain-sqlite",
    dialect: "sqlite",
    maxInParams: 500,
    run: async (sql, params) => run(sql, params),
    async columns(table): Promise<CatalogColumn[]> {
      const info = db.prepare("SELECT name, type FROM pragma_table_info(?)").all(table);
      return (info as { name: string; type: string }[]).map((c) => ({
        name: c.name,
        type: c.type,
      }));
    },
    read: async (steps) => stepThrough(steps, rowsOf),
    transaction: async (steps) => db.transaction(() => stepThrough(steps, rowsOf))(),
    error(cause) {
      // A refusal of edgecache's own, thrown by the steps it runs: as it is.
      if (cause instanceof EdgecacheError) return cause;
      const code = (cause as { code?: unknown }).code;
      // A constraint the row breaks (unique, primary key, foreign key, not null, check).
      if (typeof code === "string" && code.startsWith("SQLITE_CONSTRAINT")) {
        return new EdgecacheError("E_CONFLICT", "plain-sqlite", "a constraint refused the row");
      }
      return new EdgecacheError("E_SOURCE_UNAVAILABLE", "plain-sqlite", "the statement failed", {
        cause,
      });
    },
    close: async () => void db.close(),
  };
}
