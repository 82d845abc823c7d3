import type { Filter, ListFilter } from "../data/query.ts";
import { ABOVE, BELOW, type Bound, compareBounds } from "./intervals.ts";
import type { ListDependency } from "./planner.ts";

/**
 * Where the dependency index files a list (see DependencyIndex): the text its pages share,
 * the bucket of its first equality, and where a write's row may reach it. Each a property
 * of the list's query, made once and remembered.
 */

/**
 * What the pages of one list share: its table, filters and order (not the window). A
 * list's filters and sort are its query's, fixed once registered, so the text is made once
 * per query and remembered.
 */
const families = new WeakMap<object, { table: string; sort: object; family: string }>();
export function listFamily(list: ListDependency): string {
  // Remembered by the filters' array, which a patched window's list shares with the list
  // it came from (the same query, another count or last row).
  const known = families.get(list.filters);
  if (known?.table === list.table && known.sort === list.sort) return known.family;
  const family = JSON.stringify([list.table, list.filters, list.sort]);
  families.set(list.filters, { table: list.table, sort: list.sort, family });
  return family;
}

/**
 * Where a list is filed for listsFor: its first equality filter's column and value, or ""
 * when it has none. A row can match the list only if its value there has the same eqKey.
 */
const buckets = new WeakMap<readonly ListFilter[], readonly [string, string]>();
export function bucketOf(list: ListDependency): readonly [string, string] {
  // Remembered by the filters' array, as listFamily is: a patched window's list shares it.
  let bucket = buckets.get(list.filters);
  if (bucket === undefined) {
    const eq = list.filters.find((f): f is Filter => f.op === "eq");
    bucket = eq ? [eq.column, eqKey(eq.value)] : ["", ""];
    buckets.set(list.filters, bucket);
  }
  return bucket;
}

/** Prefixes are filed by this many UTF-16 units at most (see fileList). */
export const PREFIX_KEY = 64;

/**
 * Where a list is filed for listsFor, the first that applies:
 * - `eq`: its first equality filter's column and value (bucketOf);
 * - `prefix`: its first prefix filter's column and text (a row matches only if its value
 *   starts with it);
 * - `range`: the values of one column a row must have to reach the list (match it and sort
 *   into or before its window, see reachesWindow): bounded by the list's range filters on
 *   its first range-filtered column, or else on its first sort column; and there by the
 *   window's last row when the window is full (a row sorting after it does not reach it);
 * - `all`: nothing bounds a column, so every row may reach it.
 * Each is a necessary condition only: the planner still tests every list it is given.
 */
export type Filing =
  | { kind: "eq"; column: string; value: string }
  | { kind: "prefix"; column: string; prefix: string }
  | { kind: "range"; column: string; low: Bound; high: Bound }
  | { kind: "all" };

/** Whether two filings put a list in the same place (an interval never counts as the same). */
export function sameFiling(a: Filing, b: Filing): boolean {
  switch (a.kind) {
    case "eq":
      return b.kind === "eq" && a.column === b.column && a.value === b.value;
    case "prefix":
      return b.kind === "prefix" && a.column === b.column && a.prefix === b.prefix;
    case "all":
      return b.kind === "all";
    default:
      return false;
  }
}

const filings = new WeakMap<ListDependency, Filing>();
export function filingOf(list: ListDependency): Filing {
  let filing = filings.get(list);
  if (filing === undefined) {
    filing = fileList(list);
    filings.set(list, filing);
  }
  return filing;
}

function fileList(list: ListDependency): Filing {
  const [column, value] = bucketOf(list);
  if (column !== "") return { kind: "eq", column, value };
  const prefix = list.filters.find((f): f is Filter => f.op === "prefix");
  if (prefix) {
    // Filed by its first PREFIX_KEY units at most: a write looks up every length up to the
    // longest filed, so one list with a long prefix must not make each write's lookups
    // grow with it (a row that starts with the filed part may still not match: the planner
    // tests the whole filter).
    const text = String(prefix.value).slice(0, PREFIX_KEY);
    return { kind: "prefix", column: prefix.column, prefix: text };
  }
  const ranged = list.filters.find((f) => f.op !== "null" && f.op !== "notNull");
  const on = ranged?.column ?? list.sort[0]?.column;
  if (on === undefined) return { kind: "all" };
  let low: Bound = BELOW;
  let high: Bound = ABOVE;
  for (const f of list.filters) {
    if (f.column !== on || f.op === "null" || f.op === "notNull") continue;
    if ((f.op === "gt" || f.op === "gte") && compareBounds(f.value, low) > 0) low = f.value;
    if ((f.op === "lt" || f.op === "lte") && compareBounds(f.value, high) < 0) high = f.value;
  }
  // A full window takes no row that sorts after its last: on an ascending first sort key
  // that is a value above the last row's; on a descending one, below it. A key that places
  // its NULLs itself is left out (NULL is not where compareValues puts it).
  const key = list.sort[0];
  const full = list.count >= list.limit && list.last !== undefined;
  if (full && key?.column === on && key.nulls === undefined) {
    const last = list.last![0] ?? null;
    if (key.desc && compareBounds(last, low) > 0) low = last;
    if (!key.desc && compareBounds(last, high) < 0) high = last;
  }
  if (low === BELOW && high === ABOVE) return { kind: "all" };
  return { kind: "range", column: on, low, high };
}

/**
 * One text for values an "eq" filter takes as equal: compareValues (predicate.ts) orders
 * NULL, then numbers (and booleans, bigints) by numeric value, then text by code point,
 * then everything else as one class. A property test checks the two agree.
 */
export function eqKey(value: unknown): string {
  if (value === null || value === undefined) return "0";
  switch (typeof value) {
    case "number":
    case "bigint":
    case "boolean":
      return `1${Number(value)}`;
    case "string":
      return `2${value}`;
    default:
      return "3";
  }
}
