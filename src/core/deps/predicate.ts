import type { Filter, ListFilter, Row, SortKey } from "../data/query.ts";

/**
 * In-memory evaluation of list predicates and sort order. These mirror what the sources
 * compile to SQL (SQLite's BINARY collation, NULLs first in ascending order), so the
 * planner can tell whether a row belongs to a cached list without asking the database.
 * A property test checks the two agree.
 */

/**
 * Whether `row` satisfies every filter. NULL (or a missing value) matches only `null`, as
 * a comparison with NULL is never true in SQL.
 */
export function matches(row: Row, filters: readonly ListFilter[]): boolean {
  for (const f of filters) {
    if (!matchesOne(row[f.column], f)) return false;
  }
  return true;
}

function matchesOne(value: unknown, filter: ListFilter): boolean {
  const isNull = value === null || value === undefined;
  if (filter.op === "null" || filter.op === "notNull") return isNull === (filter.op === "null");
  if (isNull) return false;
  const f = filter as Filter;
  if (f.op === "prefix") return typeof value === "string" && value.startsWith(String(f.value));
  const c = compareValues(value, f.value);
  switch (f.op) {
    case "eq":
      return c === 0;
    case "gt":
      return c > 0;
    case "gte":
      return c >= 0;
    case "lt":
      return c < 0;
    case "lte":
      return c <= 0;
  }
}

// SQLite orders storage classes NULL < numbers < text < blob.
function typeRank(v: unknown): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") return 1;
  if (typeof v === "string") return 2;
  return 3;
}

/** Total order of two column values as SQLite sorts them. */
export function compareValues(a: unknown, b: unknown): number {
  const ra = typeRank(a);
  const rb = typeRank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 1) {
    const x = Number(a);
    const y = Number(b);
    // NaN after every other number and equal to itself, as PostgreSQL orders it (SQLite
    // stores none): a total order, which the planner's indexes need.
    if (Number.isNaN(x) || Number.isNaN(y))
      return Number(Number.isNaN(x)) - Number(Number.isNaN(y));
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (ra === 2) return compareCodePoints(a as string, b as string);
  return 0;
}

/**
 * Compares strings by Unicode code point, which is how SQLite's BINARY collation orders
 * UTF-8 text. JavaScript's `<` compares UTF-16 units, which differs for astral characters.
 */
export function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0; // an equality filter's value, a shared sort value: compared whole
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (0xD800-0xDFFF) encode code points above 0xFFFF: they sort after all
    // other BMP units in code point order.
    const sx = x >= 0xd800 && x <= 0xdfff;
    const sy = y >= 0xd800 && y <= 0xdfff;
    if (sx !== sy) return sx ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

/** The values of a row's sort columns, in sort order. */
export function sortValues(row: Row, sort: readonly SortKey[]): unknown[] {
  return sort.map((s) => row[s.column] ?? null);
}

/**
 * Compares two rows' sort-value tuples under `sort` (ASC puts NULL first, DESC last, unless
 * a key says where its NULLs go).
 */
export function compareSortValues(
  a: readonly unknown[],
  b: readonly unknown[],
  sort: readonly SortKey[],
): number {
  for (let i = 0; i < sort.length; i++) {
    const c = compareUnder(sort[i]!, a[i] ?? null, b[i] ?? null);
    if (c !== 0) return c;
  }
  return 0;
}

/** compareSortValues of two rows' sort values, read from the rows in place. */
export function compareRows(a: Row, b: Row, sort: readonly SortKey[]): number {
  for (const key of sort) {
    const c = compareUnder(key, a[key.column] ?? null, b[key.column] ?? null);
    if (c !== 0) return c;
  }
  return 0;
}

/** Two values of one sort key, in its order. */
function compareUnder(key: SortKey, x: unknown, y: unknown): number {
  if (key.nulls !== undefined && (x === null) !== (y === null)) {
    return (x === null) === (key.nulls === "first") ? -1 : 1;
  }
  const c = compareValues(x, y);
  return key.desc ? -c : c;
}
