import type { ColumnInfo, SortKey, TableInfo } from "../core/data/query.ts";
import { describeValue, EdgecacheError } from "../core/errors.ts";

/**
 * A database's tables as the dialects model them, whatever the driver: columns, keys and
 * foreign keys from the catalog, identifiers and literals in SQL text, and the checks of
 * a filter's value and a sort's columns that run before any SQL does. Errors name the
 * source (`[edgecache] [postgres] ...`).
 */

export interface SqlColumn extends ColumnInfo {
  /** The column's DEFAULT as SQL text from the schema, or null. */
  defaultSql: string | null;
}

/**
 * A table the data API serves, as its source reads it from the catalog (not the planner's
 * `SqlTable` of sql/analysis, which is what a query cache knows of a table's keys and kinds).
 */
export interface ServedTable<C extends SqlColumn = SqlColumn> {
  /** The source's name, for error messages. */
  source: string;
  info: TableInfo;
  columns: Map<string, C>;
  pk: C;
}

/** A foreign key of `table` (the child) pointing at another table's `to` column. */
export interface ForeignKey {
  table: string;
  from: string;
  to: string;
  onDelete: string;
  onUpdate: string;
}

/**
 * A foreign key between any two user tables, as far as its actions go: what a change of
 * a `parent` row does to the `child` rows that point at it (`CASCADE`, `SET NULL`...).
 */
export interface ForeignKeyAction {
  parent: string;
  child: string;
  onDelete: string;
  onUpdate: string;
}

/** Identifiers come from the schema, but quoting keeps odd names (spaces, keywords) valid. */
export function quote(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`;
}

/** A string as an SQL literal, for SQL edgecache writes itself (trigger bodies). */
export function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

export const COMPARISONS = { eq: "=", gt: ">", gte: ">=", lt: "<", lte: "<=" } as const;

export function badQuery(source: string, message: string): EdgecacheError {
  return new EdgecacheError("E_BAD_QUERY", source, message);
}

export function badBody(source: string, message: string): EdgecacheError {
  return new EdgecacheError("E_BAD_BODY", source, message);
}

/**
 * better-sqlite3 writes a lone surrogate (JSON.parse lets "\ud800" through) as invalid
 * UTF-8 that reads back as three U+FFFD and orders differently from what was read:
 * such strings are refused rather than stored changed.
 */
export const LONE_SURROGATE = /\p{Cs}/u;

/** A JSON-ish numeric string: what a number column accepts from a body or a URL. */
export const NUMERIC_STRING = /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/;

/** A filter's value in its column's kind: a number for number columns, else a string. */
export function filterValue(source: string, column: SqlColumn, value: unknown): string | number {
  if (column.kind === "number") {
    const n = typeof value === "string" && NUMERIC_STRING.test(value) ? Number(value) : value;
    if (typeof n !== "number" || !Number.isFinite(n)) {
      throw badQuery(
        source,
        `column "${column.name}": expected a number, got ${describeValue(value)}`,
      );
    }
    return n;
  }
  if (typeof value !== "string" && typeof value !== "number") {
    throw badQuery(
      source,
      `column "${column.name}": expected a string, got ${describeValue(value)}`,
    );
  }
  if (typeof value === "string" && LONE_SURROGATE.test(value)) {
    throw badQuery(source, `column "${column.name}": the value is not well-formed Unicode`);
  }
  return String(value);
}

/** The data API's view of a discovered table: its name, key and columns' kinds. */
export function tableInfo(name: string, columns: Iterable<SqlColumn>, pk: SqlColumn): TableInfo {
  return {
    name,
    primaryKey: pk.name,
    columns: [...columns].map(({ name, kind, nullable }) => ({ name, kind, nullable })),
  };
}

/**
 * ORDER BY terms for a sort, ending on the primary key: the caller's sort is total
 * already, and ending on the key keeps any window deterministic.
 */
export function orderBy<C extends SqlColumn>(
  table: ServedTable<C>,
  sort: SortKey[],
  term: (column: C, desc: boolean) => string,
): string {
  const keys = [...sort];
  if (keys.at(-1)?.column !== table.pk.name) keys.push({ column: table.pk.name, desc: false });
  return keys
    .map((key) => {
      const column = table.columns.get(key.column);
      if (!column) throw badQuery(table.source, `unknown sort column "${key.column}"`);
      return term(column, key.desc);
    })
    .join(", ");
}
