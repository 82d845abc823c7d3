import type { ListFilter } from "../../core/data/query.ts";
import type { ListDependency } from "../../core/deps/planner.ts";
import { isNode, plain } from "./predicates.ts";
import { MAX_ROW_TAGS, NO_LIMIT } from "./shape-types.ts";

/** Reading a stored select's result rows, and the lists its registration is made of. */

/**
 * Every row of `table` whose `column` equals `value`: what the data API's joined arrays
 * register as set tags, as a list here, since a set tag is followed only for the join
 * columns of the planner's schema (a shared engine's is its owner's) and a list on any
 * table is. The planner finds it by its value (`listsFor`), without a scan.
 */
export function valueList(table: string, column: string, value: string | number): ListDependency {
  return anyWindow(table, [{ column, op: "eq", value }]);
}

/**
 * A key and the same key in the other type: a foreign key may be stored, or captured, as
 * text or as a number where the result or the query gave the other ("5" and 5).
 */
export function twins(key: string | number): (string | number)[] {
  if (typeof key === "number") return [key, String(key)];
  const n = Number(key);
  return key.trim() !== "" && Number.isFinite(n) ? [key, n] : [key];
}

/**
 * A list every row of the table belongs to: a select registered at table level goes with
 * any write to the table. (The table tag alone is read only for writes the planner cannot
 * analyse; an analysable write looks at rows and lists.)
 */
export function wholeTable(table: string): ListDependency {
  return anyWindow(table, []);
}

/** A list without a window: every row matching `filters` goes with it. */
export function anyWindow(table: string, filters: ListFilter[]): ListDependency {
  return { table, filters, sort: [], offset: 0, limit: NO_LIMIT, count: 0 };
}

/**
 * The values of `column` in the result's rows (NULLs left out: they join nothing), or
 * undefined when a row's cannot be read, is not a key value, or there are too many.
 */
export function keysIn(
  rows: readonly unknown[] | undefined,
  read: (row: unknown) => unknown,
  into = new Set<string | number>(),
): Set<string | number> | undefined {
  if (!rows) return undefined;
  for (const row of rows) {
    const key = plain(read(row));
    if (key === null) continue;
    if (typeof key !== "number" && typeof key !== "string") return undefined;
    into.add(key);
    if (into.size > MAX_ROW_TAGS) return undefined;
  }
  return into;
}

/**
 * Reads a table's column of a result row, by position (arrays, libSQL rows) or by the
 * result column's name (undefined when two result columns share it: a row read by name
 * holds only one of them).
 */
export function reader(
  columns: readonly (string | undefined)[],
  names: readonly (string | undefined)[],
): (row: unknown, column: string) => unknown {
  return (row, column) => {
    if (typeof row !== "object" || row === null) return undefined;
    const r = row as Record<string | number, unknown>;
    const i = columns.indexOf(column);
    if (i < 0 || columns.indexOf(column, i + 1) >= 0) return undefined;
    if (Array.isArray(row) || typeof r.length === "number") return r[i];
    const name = names[i];
    if (name === undefined || names.indexOf(name) !== i || names.lastIndexOf(name) !== i) {
      return undefined;
    }
    return r[name];
  };
}

/** The rows of a driver's raw result: an array of rows, or an object with `rows`. */
export function resultRows(response: unknown): readonly unknown[] | undefined {
  if (Array.isArray(response)) return response;
  if (isNode(response) && Array.isArray(response.rows)) return response.rows;
  return undefined;
}
