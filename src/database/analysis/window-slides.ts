import type { SortKey } from "../../core/data/query.ts";
import type { WriteEvent } from "../../core/deps/planner.ts";
import { compareValues } from "../../core/deps/predicate.ts";
import type { SortedValue } from "./group-statements.ts";
import { type GroupPlan, keyLike, sameKey } from "./groups.ts";
import { reader } from "./rows.ts";

/**
 * Base rows deleted under a window (issue 71). A result of a group plan with a window from
 * its first row, whose statement has no WHERE (every base row its joins keep is in it, in
 * its order), loses the deleted rows it holds and takes in as many from past its end: the
 * rows its statement has now at those places, read by one statement shared by every result
 * of the select list with that window (group-patches.ts). A deleted row it does not hold
 * sorted past its end, and leaves it as it was.
 */

/** A record's deletes of base rows, and its other events. */
export interface Leaving {
  /** The base rows the record writes in or out: their keys. */
  keys: unknown[];
  /**
   * The values that name the deleted rows in a result (`plan.key`'s: every one the record
   * gave them, a rename before the delete included), as `nameOf` writes them.
   */
  named: Set<string>;
  /**
   * Each deleted row's image before the record (to tell where one the result does not hold
   * sorted), and every name it had in the record.
   */
  deleted: { image: Record<string, unknown>; names: Set<string> }[];
  /**
   * The record's other events, less those that reach the deleted rows alone (their tags,
   * their favourites): what the result's remaining rows may see.
   */
  rest: WriteEvent[];
  /** The window is read again whole (see movedOf). */
  whole?: true;
}

/**
 * The base rows `events` delete from results of `plan`, where a window from its first row
 * and a statement with no WHERE (`whereless`) let them slide; undefined where none is
 * deleted, one is inserted (a new row is placed, see insertedKeys, not both at once), a
 * deleted row's image does not name it, or a subquery of the base itself reads other rows.
 */
export function leavingOf(
  plan: GroupPlan,
  events: readonly WriteEvent[],
  whereless: boolean,
): Leaving | undefined {
  if (plan.window?.offset !== 0 || !whereless || baseRead(plan)) return undefined;
  const deletes = events.filter((e) => e.table === plan.table && e.op === "delete");
  if (deletes.length === 0) return undefined;
  if (events.some((e) => e.table === plan.table && e.op === "insert")) return undefined;
  const keys: unknown[] = [];
  const named = new Set<string>();
  const deleted: Leaving["deleted"] = [];
  for (const e of deletes) {
    const key = e.old?.[plan.primaryKey];
    const name = nameOf(e.old?.[plan.key]);
    if (!keyLike(key) || name === undefined || !e.old) return undefined;
    keys.push(key);
    deleted.push({ image: e.old, names: new Set([name]) });
  }
  // A deleted row renamed earlier in the record (or given its key by an update) is held by
  // an older name: updates are followed back from the delete, newest first.
  for (const e of [...events].reverse()) {
    if (e.table !== plan.table || e.op !== "update") continue;
    const one = deleted.find((d) => sameKey(d.image[plan.primaryKey], e.new?.[plan.primaryKey]));
    const earlier = one && nameOf(e.old?.[plan.key]);
    if (one && (earlier === undefined || !keyLike(e.old?.[plan.primaryKey]))) return undefined;
    if (!one) continue;
    one.names.add(earlier!);
    keys.push(e.old![plan.primaryKey]);
    // Where it sorted before the record: its image before its first update.
    one.image = e.old!;
  }
  for (const d of deleted) for (const n of d.names) named.add(n);
  const rest = events.filter((e) => !deletes.includes(e) && !reachesOnly(plan, e, keys));
  return { keys, named, deleted, rest };
}

/**
 * A value naming a row, as one string whatever form the driver gives it in (postgres.js
 * reads an int8 as text, capture's image as a number); undefined for one that cannot name.
 */
function nameOf(v: unknown): string | undefined {
  return keyLike(v) ? String(v) : undefined;
}

/**
 * Base rows written into or out of a window where neither a slide nor a new row's placement
 * (insertedKeys) can keep it: one further on (a row before it moves every row), or both
 * at once. Its statement, keyed and probed, reads the window again whole, once for every
 * viewer's list of that window; the rows it held keep their per-viewer columns, told on
 * by the rest of the record. Undefined where the record writes no base row, one's image
 * does not name it, or a subquery of the base itself reads other rows.
 */
export function movedOf(
  plan: GroupPlan,
  events: readonly WriteEvent[],
  whereless: boolean,
): Leaving | undefined {
  if (!plan.window || !whereless || baseRead(plan)) return undefined;
  const written = events.filter(
    (e) => e.table === plan.table && (e.op === "insert" || e.op === "delete"),
  );
  const both = new Set(written.map((e) => e.op)).size === 2;
  if (written.length === 0 || (plan.window.offset === 0 && !both)) return undefined;
  const keys: unknown[] = [];
  for (const e of written) {
    const key = (e.op === "insert" ? e.new : e.old)?.[plan.primaryKey];
    if (!keyLike(key)) return undefined;
    keys.push(key);
  }
  const rest = events.filter((e) => !written.includes(e) && !reachesOnly(plan, e, keys));
  return { keys, named: new Set(), deleted: [], rest, whole: true };
}

/** Whether a subquery of the base itself (a count of an author's articles) reads other rows. */
function baseRead(plan: GroupPlan): boolean {
  return plan.feeds.some((f) => f.table === plan.table && f.ops === "any");
}

/**
 * Whether `e` changes only values of the deleted base rows `keys`: every place its table
 * feeds the result names rows by the base's key, and each of its images names one of them.
 */
function reachesOnly(plan: GroupPlan, e: WriteEvent, keys: readonly unknown[]): boolean {
  const feeds = plan.feeds.filter((f) => f.table === e.table);
  if (feeds.length === 0) return false;
  return feeds.every(
    (f) =>
      f.base === plan.primaryKey &&
      [e.old, e.new].every(
        (row) => !row || (f.column in row && keys.some((k) => sameKey(k, row[f.column]))),
      ),
  );
}

/**
 * `held` without the deleted rows, and how many rows come in from past the window's end:
 * as many as it lost where it was full, none where it held every row there was. Undefined
 * where a row's name cannot be read, or a deleted row the full window does not hold is
 * not surely sorted past its last row (its image's sort values against that row's), nor
 * among `absent`: base keys the statement that made `held` looked for and did not find
 * (a new row deleted before the statement ran), so it shows them gone already.
 */
export function slidRows(
  plan: GroupPlan,
  held: readonly unknown[],
  leaving: Leaving,
  absent: readonly unknown[] = [],
): { rows: unknown[]; refill: number } | undefined {
  const window = plan.window;
  if (!window) return undefined;
  const read = reader(plan.columns, plan.names);
  const rows: unknown[] = [];
  const found = new Set<string>();
  for (const row of held) {
    const name = nameOf(read(row, plan.key));
    if (name === undefined) return undefined;
    if (leaving.named.has(name)) found.add(name);
    else rows.push(row);
  }
  const full = held.length >= window.limit;
  const last = held[held.length - 1];
  if (full && last !== undefined) {
    for (const { image, names } of leaving.deleted) {
      if ([...names].some((n) => found.has(n))) continue;
      if (absent.some((k) => sameKey(k, image[plan.primaryKey]))) continue;
      if (
        !sortsAfter(window.sort, image, (c) =>
          plan.columns.includes(c) ? read(last, c) : undefined,
        )
      ) {
        return undefined;
      }
    }
  }
  return { rows, refill: full ? held.length - rows.length : 0 };
}

/**
 * The sort values of `row` (a result's row of `plan`) where its window's order ends with
 * the base's key, so that the rows sorted after it are told by them alone (see
 * slidStatement); undefined where one is not shown or is NULL, or the order names a
 * collation (a condition on the column compares by its own).
 */
export function sortedValues(plan: GroupPlan, row: unknown): SortedValue[] | undefined {
  const sort = plan.window?.sort;
  if (!sort?.length || sort.at(-1)!.column !== plan.primaryKey) return undefined;
  if (sort.some((k) => k.collated)) return undefined;
  const read = reader(plan.columns, plan.names);
  const values: SortedValue[] = [];
  for (const { column, desc, nulls } of sort) {
    const value = plan.columns.includes(column) ? read(row, column) : undefined;
    if (value === undefined || value === null) return undefined;
    // NULLs sort first ascending and last descending where the order does not say.
    values.push({ column, desc, value, nullsAfter: nulls ? nulls === "last" : desc });
  }
  return values;
}

/**
 * Whether a row's image sorts after a held row (`value` reads its shown columns) by
 * `sort`: told by the first sort column where they differ, both values of one kind
 * (numbers, text, bigints); false where that cannot be told.
 */
function sortsAfter(
  sort: readonly SortKey[],
  image: Record<string, unknown>,
  value: (column: string) => unknown,
): boolean {
  for (const k of sort) {
    const a = image[k.column];
    const b = value(k.column);
    if (a === null || b === null || a === undefined || b === undefined) return false;
    if (typeof a !== typeof b || !["number", "string", "bigint"].includes(typeof a)) return false;
    const c = compareValues(a, b);
    if (c !== 0) return k.desc ? c < 0 : c > 0;
  }
  return false;
}
