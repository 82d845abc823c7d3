import type { JoinInfo, Row, ViewInfo } from "../core/data/query.ts";
import { badOption, describeValue, EdgecacheError } from "../core/errors.ts";
import {
  badBody,
  LONE_SURROGATE,
  NUMERIC_STRING,
  type ServedTable,
  type SqlColumn,
} from "../database/schema.ts";

/**
 * What the data API's SQL sources share, whatever their dialect or driver: the checks of
 * ids, bodies and declared views that run before any SQL does, and the joins of a view.
 * Errors name the source (`[edgecache] [postgres] ...`).
 */

export function isWindowNumber(n: unknown): boolean {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

/** A primary key from a URL or a caller, in the key column's type; undefined when none can match. */
export function coerceId(table: ServedTable, id: string | number): string | number | undefined {
  if (table.pk.kind === "number") {
    const n = typeof id === "string" && NUMERIC_STRING.test(id) ? Number(id) : id;
    return typeof n === "number" && Number.isFinite(n) ? n : undefined;
  }
  return String(id);
}

/** Validates a body against the table: known columns, values of the column's kind. */
export function coerceBody(table: ServedTable, values: Row): Map<string, unknown> {
  if (typeof values !== "object" || values === null || Array.isArray(values)) {
    throw badBody(
      table.source,
      `expected an object of column values, got ${describeValue(values)}`,
    );
  }
  const out = new Map<string, unknown>();
  for (const [name, value] of Object.entries(values)) {
    const column = table.columns.get(name);
    if (!column)
      throw badBody(table.source, `unknown column "${name}" in table "${table.info.name}"`);
    if (value === undefined) continue;
    out.set(name, coerceValue(table.source, column, value, column === table.pk));
  }
  return out;
}

export function coerceValue(
  source: string,
  column: SqlColumn,
  value: unknown,
  isKey: boolean,
): unknown {
  if (typeof value === "string" && LONE_SURROGATE.test(value)) {
    throw badBody(source, `column "${column.name}": the string is not well-formed Unicode`);
  }
  if (value === null) {
    // A null key is resolved by the caller (insert assigns one, update compares).
    if (column.nullable || isKey) return null;
    throw badBody(source, `column "${column.name}" cannot be null`);
  }
  switch (column.kind) {
    case "number": {
      // JSON booleans into BOOLEAN (number) columns: SQLite stores them as 1 and 0.
      if (typeof value === "boolean") return value ? 1 : 0;
      const n = typeof value === "string" && NUMERIC_STRING.test(value) ? Number(value) : value;
      if (typeof n === "number" && Number.isFinite(n)) return n;
      throw badBody(
        source,
        `column "${column.name}": expected a number, got ${describeValue(value)}`,
      );
    }
    case "text":
      if (typeof value === "string") return value;
      if (typeof value === "number" && Number.isFinite(value)) return String(value);
      throw badBody(
        source,
        `column "${column.name}": expected a string, got ${describeValue(value)}`,
      );
    case "date":
      if (typeof value === "string" && !Number.isNaN(Date.parse(value))) return value;
      throw badBody(
        source,
        `column "${column.name}": expected a date string, got ${describeValue(value)}`,
      );
  }
}

/**
 * A whole row (insert, replace) must give every NOT NULL column without a DEFAULT: the
 * client's omission, a 400 naming each such column, not the database's constraint error.
 */
export function requireValues(table: ServedTable, given: Map<string, unknown>): void {
  const missing = [...table.columns.values()]
    .filter((c) => c !== table.pk && !c.nullable && c.defaultSql === null && !given.has(c.name))
    .map((c) => `"${c.name}"`);
  if (missing.length === 1) throw badBody(table.source, `column ${missing[0]} is required`);
  if (missing.length > 1) throw badBody(table.source, `columns ${missing.join(", ")} are required`);
}

export function withoutKey(
  table: ServedTable,
  id: string | number,
  given: Map<string, unknown>,
): Map<string, unknown> {
  const pk = table.pk.name;
  if (!given.has(pk)) return given;
  const value = given.get(pk);
  if (value === null || value !== coerceId(table, id)) {
    throw badBody(table.source, `column "${pk}" is the primary key and cannot be changed`);
  }
  given.delete(pk);
  return given;
}

export function validateViewsOption(source: string, views: unknown): ViewInfo[] {
  if (views === undefined) return [];
  if (!Array.isArray(views)) badOption(source, "views", "an array of views", views);
  const isName = (v: unknown): v is string => typeof v === "string" && v !== "";
  views.forEach((view: Partial<ViewInfo> | null, i) => {
    const at = `views[${i}]`;
    if (typeof view !== "object" || view === null) badOption(source, at, "an object", view);
    for (const field of ["name", "base"] as const) {
      if (!isName(view[field]))
        badOption(source, `${at}.${field}`, "a non-empty string", view[field]);
    }
    if (!Array.isArray(view.joins)) badOption(source, `${at}.joins`, "an array", view.joins);
    view.joins.forEach((join: Partial<JoinInfo> | null, j) => {
      const where = `${at}.joins[${j}]`;
      if (typeof join !== "object" || join === null) badOption(source, where, "an object", join);
      for (const field of ["as", "table", "foreignKey", "references"] as const) {
        if (!isName(join[field])) {
          badOption(source, `${where}.${field}`, "a non-empty string", join[field]);
        }
      }
    });
  });
  return views as ViewInfo[];
}

/** Declared views must name tables and columns the database has. */
export function checkViews(
  source: string,
  views: ViewInfo[],
  tables: Map<string, ServedTable>,
  skipped: string[],
): Map<string, ViewInfo> {
  const missing = (name: string) =>
    skipped.includes(name)
      ? `table "${name}" has no single-column primary key`
      : `table "${name}" does not exist`;
  function fail(view: ViewInfo, message: string): never {
    throw new EdgecacheError("E_BAD_OPTION", source, `view "${view.name}": ${message}`);
  }
  const out = new Map<string, ViewInfo>();
  for (const view of views) {
    if (tables.has(view.name) || out.has(view.name)) {
      fail(view, "the name is already used by a table or view");
    }
    const base = tables.get(view.base);
    if (!base) fail(view, `base ${missing(view.base)}`);
    const names = new Set(base.columns.keys());
    for (const join of view.joins) {
      const child = tables.get(join.table);
      if (!child) fail(view, `join "${join.as}": ${missing(join.table)}`);
      else if (!child.columns.has(join.foreignKey)) {
        fail(view, `join "${join.as}": table "${join.table}" has no column "${join.foreignKey}"`);
      }
      if (!base.columns.has(join.references)) {
        fail(
          view,
          `join "${join.as}": base table "${view.base}" has no column "${join.references}"`,
        );
      }
      if (names.has(join.as)) fail(view, `join "${join.as}": the name is already a column or join`);
      names.add(join.as);
    }
    out.set(view.name, view);
  }
  return out;
}

/** The distinct values a join looks up (its `references` column), in chunks of `size`. */
export function joinKeyChunks(rows: Row[], join: JoinInfo, size: number): unknown[][] {
  const keys = [...new Set(rows.map((r) => r[join.references]).filter((v) => v != null))];
  const chunks: unknown[][] = [];
  for (let i = 0; i < keys.length; i += size) chunks.push(keys.slice(i, i + size));
  return chunks;
}

/**
 * Gives each base row its join array: the child rows whose foreign key equals the row's
 * `references` value, in the order given. Keys match as text, as the database matched
 * them (SQLite with affinity, PostgreSQL by type).
 */
export function attachChildren(rows: Row[], join: JoinInfo, children: Iterable<Row>): void {
  const groups = new Map<string, Row[]>();
  for (const child of children) {
    const k = String(child[join.foreignKey]);
    const group = groups.get(k);
    if (group) group.push(child);
    else groups.set(k, [child]);
  }
  for (const row of rows) {
    const value = row[join.references];
    row[join.as] = value == null ? [] : (groups.get(String(value)) ?? []);
  }
}
