/**
 * The data API's model of a database: resources (tables and declared views) and the
 * list queries a client may ask of them. Sources compile these to SQL; the invalidation
 * planner evaluates the same predicates in memory, so both must agree exactly.
 */

/** How a column's values compare: numbers numerically, text and dates by code point. */
export type ColumnKind = "text" | "number" | "date";

export interface ColumnInfo {
  name: string;
  kind: ColumnKind;
  nullable: boolean;
}

export interface TableInfo {
  name: string;
  /** Single-column primary key. */
  primaryKey: string;
  columns: ColumnInfo[];
}

/**
 * A one-to-many join declared in configuration: each base row gets an array `as` of the
 * rows of `table` whose `foreignKey` equals the base row's `references` column.
 */
export interface JoinInfo {
  as: string;
  table: string;
  foreignKey: string;
  references: string;
}

export interface ViewInfo {
  name: string;
  base: string;
  joins: JoinInfo[];
}

export interface Schema {
  tables: Map<string, TableInfo>;
  views: Map<string, ViewInfo>;
}

/** A name a client can GET: a table, or a view over a base table. */
export type Resource =
  | { kind: "table"; name: string; table: TableInfo }
  | { kind: "view"; name: string; table: TableInfo; view: ViewInfo };

export type FilterOp = "eq" | "prefix" | "gt" | "gte" | "lt" | "lte";

export interface Filter {
  column: string;
  op: FilterOp;
  /** Already coerced to the column's kind: a number for number columns, else a string. */
  value: string | number;
}

/**
 * A test for NULL the planner evaluates for SQL reads (`IS NULL`, `IS NOT NULL`). The data
 * API's sources never produce it, so they compile only `Filter`.
 */
export interface NullFilter {
  column: string;
  op: "null" | "notNull";
}

/** What a cached list's predicate is made of: the data API's filters and SQL's null tests. */
export type ListFilter = Filter | NullFilter;

export interface SortKey {
  column: string;
  desc: boolean;
  /**
   * Where NULLs sort, whatever the direction. Unset: first ascending, last descending
   * (SQLite's default and the data API's); PostgreSQL's default is the reverse.
   */
  nulls?: "first" | "last";
  /**
   * The ORDER BY names a collation of its own (`title collate "C"`): rows sort by it, and a
   * comparison with the column alone would compare them by the column's.
   */
  collated?: true;
}

/**
 * A normalized list query. `sort` always ends with the primary key, so the order is total
 * and a window (offset, limit) is deterministic.
 */
export interface ListQuery {
  filters: Filter[];
  sort: SortKey[];
  limit: number;
  offset: number;
}

export type Row = Record<string, unknown>;

export function resolveResource(schema: Schema, name: string): Resource | undefined {
  const table = schema.tables.get(name);
  if (table) return { kind: "table", name, table };
  const view = schema.views.get(name);
  if (!view) return undefined;
  const base = schema.tables.get(view.base);
  return base ? { kind: "view", name, table: base, view } : undefined;
}
