/**
 * The one contract every database client is reached through, statement by statement: the
 * raw SQL entry runs the application's statements on it, change capture reads through it
 * where it follows the application's client. Every driver (driver.ts) is a client, and the
 * client of an application's database is its driver (`sqlDriver` in drivers.ts, held to
 * this contract by `sqlDriverConformance` in edgecache/testing).
 */
import type { SqlDialect, TextCollation } from "./analysis/shapes.ts";
import type { ClientKind } from "./client-kind.ts";
import { COLUMNS_SQL } from "./postgres/dialect.ts";
import {
  collationProbeSql,
  indexColumnsSql,
  sqliteCollations,
  tableColumnsSql,
  uniqueColumns,
  uniqueIndexesSql,
} from "./sqlite/dialect.ts";

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
  /**
   * Which client it is (for messages, and what each entry point follows): a built-in
   * client's kind, or the name a driver written outside edgecache gives itself.
   */
  kind: ClientKind | (string & {});
  /**
   * Runs one statement with its parameters bound in order (`?` on SQLite, `$n` on
   * PostgreSQL). Rows are plain objects by column name; `rowsAffected` counts the rows a
   * write changed (its `returning` rows too), 0 for a read. A failed statement rejects and
   * leaves the client usable.
   */
  run(sql: string, params: readonly unknown[]): Promise<SqlResult>;
  /** A table's columns and their declared types from the catalog, in order; none if unknown. */
  columns(table: string): Promise<CatalogColumn[]>;
}

/** A column as the catalog describes it. */
export interface CatalogColumn {
  name: string;
  /** Its declared type. */
  type: string;
  /**
   * How its text compares with no `collate` written (see TextCollation): on PostgreSQL
   * "binary" where its collation is C, POSIX or ucs_basic, or the database's default is a
   * libc C locale (`C.UTF-8`) that the database shows to order so; on SQLite where the
   * table declares no collation, or the database shows the column's to compare so.
   */
  collation?: TextCollation;
  /** A PostgreSQL timestamp's fractional-second digits (0 to 6), where the catalog tells. */
  precision?: number;
  /**
   * Its values name its rows (a stand-in for the key where a result does not show it): it
   * is NOT NULL and a unique index of it alone, neither partial nor the primary key's, holds.
   */
  unique?: true;
}

/** SQLite's catalog (libSQL, D1): tables of the main database only. */
async function sqliteColumns(client: SqlClient, table: string) {
  if (table.includes(".")) return [];
  const all = async (sql: string) => (await client.run(sql, [])).rows;
  const columns = await withSqliteUniques(table, await all(tableColumnsSql(table)), all);
  return withSqliteCollations(table, columns, async (sql) => (await all(sql))[0]);
}

/**
 * `tableColumnsSql`'s rows of `table` as columns, those whose values name its rows marked
 * `unique` (see uniqueColumns), its unique indexes read through `all`.
 */
export async function withSqliteUniques(
  table: string,
  info: readonly SqlRow[],
  all: (sql: string) => Promise<readonly SqlRow[]>,
): Promise<CatalogColumn[]> {
  const columns = namedColumns({ rows: [...info], rowsAffected: 0 });
  const notNull = new Set(info.filter((c) => Number(c.notnull) === 1).map((c) => String(c.name)));
  if (notNull.size === 0) return columns;
  const indexes = (await all(uniqueIndexesSql(table))).map((r) => String(r.name));
  if (indexes.length === 0) return columns;
  const unique = new Set(uniqueColumns(await all(indexColumnsSql(indexes)), notNull));
  return columns.map((c) => (unique.has(c.name) ? { ...c, unique: true as const } : c));
}

/** Columns probed per statement (six result columns each; SQLite allows 2,000). */
const PROBED_PER_STATEMENT = 50;

/**
 * `columns` of `table` with the collation each compares its text by, asked of the
 * database through `first` (the first row of a statement): see collationProbeSql.
 */
export async function withSqliteCollations(
  table: string,
  columns: readonly CatalogColumn[],
  first: (sql: string) => Promise<Record<string, unknown> | undefined>,
): Promise<CatalogColumn[]> {
  const out: CatalogColumn[] = [];
  for (let i = 0; i < columns.length; i += PROBED_PER_STATEMENT) {
    const some = columns.slice(i, i + PROBED_PER_STATEMENT);
    const names = some.map((c) => c.name);
    const found = sqliteCollations(await first(collationProbeSql(table, names)), names);
    for (const [j, c] of some.entries()) out.push({ ...c, collation: found[j]! });
  }
  return out;
}

/** PostgreSQL's catalog: `schema.table`, or a table of `public`. */
async function postgresColumns(client: SqlClient, table: string) {
  const dot = table.indexOf(".");
  const [schema, name] = dot < 0 ? ["public", table] : [table.slice(0, dot), table.slice(dot + 1)];
  return namedColumns(await client.run(COLUMNS_SQL, [schema, name]));
}

function namedColumns({ rows }: SqlResult): CatalogColumn[] {
  return rows.map((r) => ({
    name: String(r.name),
    type: String(r.type ?? ""),
    ...(isCollation(r.collation) && { collation: r.collation }),
    ...(r.precision !== null && r.precision !== undefined && { precision: Number(r.precision) }),
    ...(r.uniq === true && { unique: true as const }),
  }));
}

const COLLATIONS: readonly unknown[] = ["binary", "bytes-equal", "other"];
export const isCollation = (v: unknown): v is TextCollation => COLLATIONS.includes(v);

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
