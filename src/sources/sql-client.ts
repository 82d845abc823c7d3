import type { SqlDialect } from "../core/sql-analysis/shapes.ts";
import { clientKind } from "../sources/client-kind.ts";

/** A row as the entry returns it: a plain object by column name. */
export type SqlRow = Record<string, unknown>;

/** What a statement returned: its rows, and how many rows it changed (0 for a select). */
export interface SqlResult<Row = SqlRow> {
  rows: Row[];
  rowsAffected: number;
}

/** One of the clients the entry runs statements on. */
export interface SqlClient {
  dialect: SqlDialect;
  /** "libsql", "better-sqlite3", "postgres.js" or "d1", for messages. */
  kind: string;
  run(sql: string, params: readonly unknown[]): Promise<SqlResult>;
  /** Reads a table's columns and their declared types from the catalog, by name. */
  columns(table: string): Promise<{ name: string; type: string }[]>;
}

/** SQLite's catalog (libSQL, D1): tables of the main database only. */
async function sqliteColumns(client: SqlClient, table: string) {
  if (table.includes(".")) return [];
  const { rows } = await client.run("select name, type from pragma_table_info(?)", [table]);
  return rows.map((r) => ({ name: String(r.name), type: String(r.type ?? "") }));
}

/** PostgreSQL's catalog: `schema.table`, or a table of `public`. */
async function postgresColumns(client: SqlClient, table: string) {
  const dot = table.indexOf(".");
  const [schema, name] = dot < 0 ? ["public", table] : [table.slice(0, dot), table.slice(dot + 1)];
  const { rows } = await client.run(
    "select column_name as name, data_type as type from information_schema.columns where table_schema = $1 and table_name = $2",
    [schema, name],
  );
  return rows.map((r) => ({ name: String(r.name), type: String(r.type ?? "") }));
}

interface LibsqlClient {
  execute(stmt: { sql: string; args: unknown[] }): Promise<{
    columns: string[];
    rows: ArrayLike<unknown>[];
    rowsAffected: number;
  }>;
}

interface BetterSqlite {
  prepare(sql: string): {
    /** Whether the statement returns rows (a select, `returning`). */
    reader: boolean;
    /** Whether it writes nothing. */
    readonly: boolean;
    all(params: unknown[]): SqlRow[];
    run(params: unknown[]): { changes: number };
  };
}

interface PostgresJs {
  unsafe(sql: string, params: unknown[]): Promise<SqlRow[] & { count?: number | null }>;
}

interface D1Like {
  prepare(sql: string): {
    bind(...params: unknown[]): {
      all(): Promise<{ results?: SqlRow[]; meta?: { changes?: number } }>;
    };
  };
}

/**
 * The client behind `client`, told by its shape: a libSQL `Client` (`@libsql/client`), a
 * better-sqlite3 `Database`, a postgres.js `Sql`, or a D1 binding. Undefined for anything else.
 */
export function sqlClient(client: unknown): SqlClient | undefined {
  const kind = clientKind(client);
  switch (kind) {
    case "postgres.js": {
      const sql = client as PostgresJs;
      return {
        dialect: "postgres",
        kind,
        columns(table) {
          return postgresColumns(this, table);
        },
        async run(text, params) {
          const rows = await sql.unsafe(text, [...params]);
          return { rows: rows.map((r) => ({ ...r })), rowsAffected: rows.count ?? 0 };
        },
      };
    }
    case "libsql": {
      const libsql = client as LibsqlClient;
      return sqliteClient(kind, async (sql, params) => {
        const r = await libsql.execute({ sql, args: [...params] });
        // libSQL's rows are array-likes with named columns; the entry returns plain objects.
        const rows = r.rows.map((row) => {
          const o: SqlRow = {};
          r.columns.forEach((name, i) => {
            o[name] = row[i];
          });
          return o;
        });
        return { rows, rowsAffected: r.rowsAffected };
      });
    }
    case "better-sqlite3": {
      const db = client as BetterSqlite;
      // Synchronous, on the application's connection with its own busy_timeout, as any
      // statement it runs there itself.
      return sqliteClient(kind, async (sql, params) => {
        const statement = db.prepare(sql);
        if (!statement.reader)
          return { rows: [], rowsAffected: statement.run([...params]).changes };
        const rows = statement.all([...params]);
        // A write's `returning` rows are the rows it changed.
        return { rows, rowsAffected: statement.readonly ? 0 : rows.length };
      });
    }
    case "d1": {
      const d1 = client as D1Like;
      return sqliteClient(kind, async (sql, params) => {
        const r = await d1
          .prepare(sql)
          .bind(...params)
          .all();
        return { rows: r.results ?? [], rowsAffected: r.meta?.changes ?? 0 };
      });
    }
    default:
      return undefined;
  }
}

/** A SQLite client (libSQL, better-sqlite3, D1): its catalog is SQLite's. */
function sqliteClient(kind: string, run: SqlClient["run"]): SqlClient {
  return {
    dialect: "sqlite",
    kind,
    run,
    columns(table) {
      return sqliteColumns(this, table);
    },
  };
}
