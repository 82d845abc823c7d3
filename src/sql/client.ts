/**
 * The one contract every database client is reached through, statement by statement: the
 * raw SQL entry runs the application's statements on it, change capture reads through it
 * where it follows the application's client. Every driver (driver.ts) is a client, and the
 * client of an application's database is its driver (`sqlDriver` in drivers.ts, held to
 * this contract by `sqlDriverConformance` in edgecache/testing).
 */
import type { SqlDialect } from "./analysis/shapes.ts";
import type { ClientKind } from "./client-kind.ts";
import { COLUMNS_SQL } from "./postgres/dialect.ts";
import { tableColumnsSql } from "./sqlite/dialect.ts";

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
  return namedColumns(await client.run(tableColumnsSql(table), []));
}

/** PostgreSQL's catalog: `schema.table`, or a table of `public`. */
async function postgresColumns(client: SqlClient, table: string) {
  const dot = table.indexOf(".");
  const [schema, name] = dot < 0 ? ["public", table] : [table.slice(0, dot), table.slice(dot + 1)];
  return namedColumns(await client.run(COLUMNS_SQL, [schema, name]));
}

function namedColumns({ rows }: SqlResult): { name: string; type: string }[] {
  return rows.map((r) => ({ name: String(r.name), type: String(r.type ?? "") }));
}

/** A table's columns from the catalog of `client`'s dialect. */
export function catalogColumns(client: SqlClient, table: string) {
  return client.dialect === "postgres"
    ? postgresColumns(client, table)
    : sqliteColumns(client, table);
}

/**
 * Rows a statement returned, with the rows it changed as PostgreSQL counts them: a select's
 * count is the rows it returned, and it changed none.
 */
export function changedRows(command: string | undefined, count: number | null | undefined): number {
  return command === "SELECT" ? 0 : (count ?? 0);
}

/** A write that hands back its rows: not a read, and `returning` somewhere in it. */
export const RETURNING = /^(?!\s*(?:select|values|pragma|explain)\b)[\s\S]*\breturning\b/i;
