/**
 * The one contract every database client is reached through, statement by statement: the
 * raw SQL entry runs the application's statements on it, change capture reads through it
 * where it follows the application's client, and `sqlClientConformance`
 * (edgecache/testing) holds each client to it. Which client is which is told once, in
 * client-kind.ts; the data API's drivers (sql/driver.ts) add transactions and batches on
 * their own connections.
 */
import type { SqlDialect } from "./analysis/shapes.ts";
import { type ClientKind, clientKind } from "./client-kind.ts";

/** A row as the entry returns it: a plain object by column name. */
export type SqlRow = Record<string, unknown>;

/** What a statement returned: its rows, and how many rows it changed (0 for a select). */
export interface SqlResult<Row = SqlRow> {
  rows: Row[];
  rowsAffected: number;
}

/** A database client as edgecache runs statements on it. */
export interface SqlClient {
  dialect: SqlDialect;
  /** Which client it is (for messages, and what each entry point follows). */
  kind: ClientKind;
  /**
   * Runs one statement with its parameters bound in order (`?` on SQLite, `$n` on
   * PostgreSQL). Rows are plain objects by column name; `rowsAffected` counts the rows a
   * write changed (its `returning` rows too), 0 for a read. A failed statement rejects and
   * leaves the client usable.
   */
  run(sql: string, params: readonly unknown[]): Promise<SqlResult>;
  /** A table's columns and their declared types from the catalog, in order; none if unknown. */
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
  unsafe(
    sql: string,
    params: unknown[],
  ): Promise<SqlRow[] & { count?: number | null; command?: string }>;
}

interface PgResult {
  rows: SqlRow[];
  rowCount: number | null;
  command: string;
}

interface NodePostgres {
  query(sql: string, params: unknown[]): Promise<PgResult | PgResult[]>;
}

/** PostgreSQL counts the rows a select returned as its count: a read changed none. */
function changed(command: string | undefined, count: number | null | undefined): number {
  return command === "SELECT" ? 0 : (count ?? 0);
}

interface D1Like {
  prepare(sql: string): {
    bind(...params: unknown[]): {
      all(): Promise<{ results?: SqlRow[]; meta?: { changes?: number } }>;
    };
  };
}

/**
 * The client behind `client`, told by its shape (client-kind.ts): a libSQL `Client`
 * (`@libsql/client`), a better-sqlite3 `Database`, a postgres.js `Sql`, a node-postgres
 * `Pool` or `Client` (`pg`), or a D1 binding. Undefined for anything else.
 */
export function sqlClient(client: unknown): SqlClient | undefined {
  const kind = clientKind(client);
  switch (kind) {
    case "postgres.js": {
      const sql = client as PostgresJs;
      return clientOf("postgres", kind, async (text, params) => {
        const rows = await sql.unsafe(text, [...params]);
        return {
          rows: rows.map((r) => ({ ...r })),
          rowsAffected: changed(rows.command, rows.count),
        };
      });
    }
    case "node-postgres": {
      const pg = client as NodePostgres;
      return clientOf("postgres", kind, async (text, params) => {
        // Without parameters pg sends the text as is: several statements answer a result each.
        const all = [await pg.query(text, [...params])].flat();
        const last = all.at(-1)!;
        const rowsAffected = all.reduce((n, r) => n + changed(r.command, r.rowCount), 0);
        return { rows: last.rows, rowsAffected };
      });
    }
    case "libsql": {
      const libsql = client as LibsqlClient;
      return clientOf("sqlite", kind, async (sql, params) => {
        const r = await libsql.execute({ sql, args: [...params] });
        // libSQL's rows are array-likes with named columns; the entry returns plain objects.
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
      });
    }
    case "better-sqlite3": {
      const db = client as BetterSqlite;
      // Synchronous, on the application's connection with its own busy_timeout, as any
      // statement it runs there itself.
      return clientOf("sqlite", kind, async (sql, params) => {
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
      return clientOf("sqlite", kind, async (sql, params) => {
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

/** A write that hands back its rows: not a read, and `returning` somewhere in it. */
const RETURNING = /^(?!\s*(?:select|values|pragma|explain)\b)[\s\S]*\breturning\b/i;

/** A client of `kind` running statements by `run`, reading its dialect's catalog. */
function clientOf(dialect: SqlDialect, kind: ClientKind, run: SqlClient["run"]): SqlClient {
  return {
    dialect,
    kind,
    run,
    columns(table) {
      return dialect === "postgres" ? postgresColumns(this, table) : sqliteColumns(this, table);
    },
  };
}
