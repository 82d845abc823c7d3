import { type GroupPlan, identity } from "./groups.ts";
import { reader } from "./rows.ts";
import type { SqlShape } from "./shape-types.ts";

/**
 * Lookups of one row (the single article by its slug), and that row found in a held result
 * of the same rows source (query-cache/held-results.ts answers from it). Pure.
 */

/**
 * The column and value a select looks its one row up by, where its WHERE is nothing but
 * its base's key, or a unique column its result shows, equal to a value, and its window
 * starts at that row: undefined for any other select.
 */
export function lookedUp(shape: SqlShape): { column: string; value: string | number } | undefined {
  const s = shape.lists;
  if (s === undefined) return undefined;
  if (s.offset !== 0 || s.limit < 1) return undefined;
  // A condition the planner read as TRUE, on a joined table, or in a subquery: not alone.
  const loose = ["expression", "type", "collation", "like"];
  if (shape.widened.some((w) => loose.includes(w))) return undefined;
  if (s.joins?.some((j) => j.filters) || s.subqueries?.some((q) => q.in === "where")) {
    return undefined;
  }
  const shown = (c: string) => {
    const at = s.columns.indexOf(c);
    return at >= 0 && at === s.columns.lastIndexOf(c);
  };
  if (s.rowIds.length === 1 && s.disjuncts.length === 0 && s.lookupsAlone) {
    return shown(s.primaryKey) ? { column: s.primaryKey, value: s.rowIds[0]! } : undefined;
  }
  const [only] = s.disjuncts;
  if (s.rowIds.length > 0 || s.disjuncts.length !== 1 || only?.length !== 1) return undefined;
  const f = only[0]!;
  const value = (f as { value?: unknown }).value;
  const plain = typeof value === "string" || typeof value === "number";
  const unique = s.unique?.includes(f.column) && shown(f.column);
  return unique && f.op === "eq" && plain
    ? { column: f.column, value: value as string | number }
    : undefined;
}

/** The row of `rows` whose `column` is `value`, or undefined. */
export function rowOf(
  plan: GroupPlan,
  rows: readonly unknown[],
  { column, value }: { column: string; value: unknown },
): unknown {
  const read = reader(plan.columns, plan.names);
  const wanted = identity(value);
  return wanted === undefined ? undefined : rows.find((r) => identity(read(r, column)) === wanted);
}
