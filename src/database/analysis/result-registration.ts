import type { ListDependency } from "../../core/deps/planner.ts";
import { rowTag, tableTag } from "../../core/deps/planner.ts";
import { asStored, canonicalInstant, instantReading } from "./forms.ts";
import { joinRegistration } from "./joins.ts";
import { plain } from "./predicates.ts";
import { reader, wholeTable } from "./rows.ts";
import { MAX_ROW_TAGS, type SqlShape } from "./shape-types.ts";
import { subqueryRegistration } from "./subqueries.ts";

/**
 * What a stored result registers, from its statement's shape (shapes.ts) and its rows: the
 * tags and lists the planner matches writes against. Pure: no I/O.
 */

/** What an entry registers once its result is known. */
export interface Registration {
  /** Table tags (the planner's fallback) and row tags (`table#id`). */
  tags: string[];
  lists: ListDependency[];
  /** Why it is wider than the shape said: the joined table at table level once the rows were read. */
  widened?: "join" | "subquery";
}

/**
 * The registration of a stored result: table tags for every table read; at table level, a
 * list of the whole table for each (`wholeTable`); otherwise the
 * row tags of the looked-up keys and of the result rows that carry the primary key, and
 * one list per disjunct with the window's count and last sort values taken from the rows,
 * and for a join what its other table's rows reach (`joinRegistration`).
 * `rows` are the result's rows, each an array by result column or an object by column
 * name; undefined when unknown (then no window is registered, only predicates).
 */
export function registrationOf(
  shape: SqlShape,
  rows: readonly unknown[] | undefined,
): Registration {
  const tags = shape.tables.map(tableTag);
  const s = shape.lists;
  if (!s || shape.fallback) return { tags, lists: shape.tables.map(wholeTable) };
  const lists: ListDependency[] = [];
  for (const id of s.rowIds) tags.push(rowTag(s.table, id));
  const read = rows ? reader(s.columns, s.names) : undefined;
  // Row tags of the result are a shortcut for the planner (its lists cover the same rows):
  // kept for results of a bounded size only.
  if (rows && read && rows.length <= MAX_ROW_TAGS) {
    for (const row of rows) {
      const id = plain(read(row, s.primaryKey));
      if (typeof id === "number" || typeof id === "string") tags.push(rowTag(s.table, id));
    }
  }
  let last: unknown[] | undefined;
  const lastRow = rows?.[rows.length - 1];
  if (s.ordered && read && lastRow !== undefined && s.disjuncts.length > 0) {
    const values = s.sort.map((k) => {
      const v = plain(read(lastRow, k.column));
      const numberText = s.numberTexts?.[k.column];
      if (v !== null && numberText) return asStored(v, numberText);
      if (v === null || !s.instants?.includes(k.column)) return v;
      return canonicalInstant(v, instantReading(k.column, s));
    });
    const comparable = (v: unknown) =>
      v === null || (typeof v === "number" && Number.isFinite(v)) || typeof v === "string";
    if (values.every(comparable)) last = values;
  }
  const count = rows?.length ?? 0;
  for (const filters of s.disjuncts) {
    const list: ListDependency = {
      table: s.table,
      filters,
      sort: s.sort,
      offset: s.offset,
      limit: s.limit,
      // Without `last` the planner takes any matching row (the predicate rule).
      count,
      ...(s.decides && { columns: s.decides }),
    };
    if (last) list.last = last;
    lists.push(list);
  }
  const registration: Registration = { tags, lists };
  for (const j of s.joins ?? []) {
    if (!joinRegistration(s, j, rows, tags, lists) && !j.whole) registration.widened ??= "join";
  }
  for (const q of s.subqueries ?? []) {
    if (!subqueryRegistration(s, q, rows, tags, lists)) registration.widened ??= "subquery";
  }
  registration.tags = [...new Set(tags)];
  return registration;
}
