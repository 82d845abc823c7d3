import type { ListFilter, Row, Schema, SortKey } from "../data/query.ts";
import { compareSortValues, matches, sortValues } from "./predicate.ts";

/**
 * The invalidation planner: a pure function from a write to the cache keys it can change.
 * No I/O; the dependency index is passed in, so the planner can be property-tested.
 */

/** A change to one row. `old` is the row before (update, delete), `new` after (insert, update). */
export interface WriteEvent {
  table: string;
  op: "insert" | "update" | "delete";
  old?: Row;
  new?: Row;
  /**
   * An insert's new row as each view over its table shows it (view name to row, joined
   * arrays and all), read right after the statement while its writer held the write turn
   * (the data API's inserts): a cached page of a view takes the new row without a query.
   * `tables`: what those rows joined, which the record's order is checked against as if
   * it changed them (see changedTables): a change to one between its turn and its place in
   * the log may be missing from them.
   */
  views?: { rows: Readonly<Record<string, Row>>; tables: readonly string[] };
}

/**
 * What a cached list depends on beyond the rows it holds: its predicate and window. Not
 * changed once registered (the index files it by its values once): a patch makes a new one.
 */
export interface ListDependency {
  table: string;
  /** Every one holds (AND). An OR is registered as one list per disjunct, same window. */
  filters: ListFilter[];
  /** Total order (ends with the primary key). */
  sort: SortKey[];
  offset: number;
  limit: number;
  /** Rows in the window. Fewer than `limit` means every matching row past the offset is in it. */
  count: number;
  /** Sort values of the last row of the window; absent when the window is empty. */
  last?: unknown[];
  /**
   * When set, every column of `table` besides its primary key whose value may decide
   * whether a row is in the result, where, or what the result shows of it: an update that
   * leaves each of them and the key as they were (both images holding them) cannot change
   * the result through this list, and is not planned against it. A result whose entry
   * carries the tag of every row it shows (the data API's pages, margins included) leaves
   * out the columns that only show: the row's tag plans the update against it. A joined
   * parent that only has to exist registers `[]` (its rows' coming and going).
   */
  columns?: readonly string[];
}

/** How entries find each other: tags to keys, and the list registrations per table. */
export interface DependencyLookup {
  keysForTag(tag: string): Iterable<string>;
  listsOn(table: string): Iterable<readonly [key: string, list: ListDependency]>;
  /**
   * The lists on `table` that one of `rows` may match: those of `listsOn` less any whose
   * equality filter none of the rows satisfies (an index by filter value finds them
   * without a scan). Each at most once. Without it, `listsOn` is scanned.
   */
  listsFor?(
    table: string,
    rows: readonly Row[],
  ): Iterable<readonly [key: string, list: ListDependency]>;
  /**
   * Whether `key` registered a list on `table`. Without it, no entry counts as having one
   * (a keyless table's write then takes every entry with its table tag).
   */
  listedOn?(key: string, table: string): boolean;
}

/** What the planner needs to know of the schema. */
export interface PlanSchema {
  primaryKey(table: string): string | undefined;
  /** Child-table columns that views join on (`orders.userId`). */
  joinColumns(table: string): readonly string[];
  /**
   * Whether `table` is known to have no single-column primary key (a link table keyed by
   * two columns, a rowid table), and every entry that read its rows by a SQL shape
   * registered lists covering them: its writes are then planned by those lists.
   */
  keyless?(table: string): boolean;
  /** Its keys of several columns (a link table's primary key), where known: group patches read them. */
  keys?(table: string): readonly (readonly string[])[] | undefined;
}

export interface Plan {
  keys: Set<string>;
  /** True when the write could not be analysed and the whole table was dropped. */
  fallback: boolean;
  /**
   * How many keys each rule chose: `row` (entries holding the row, or joined to it),
   * `predicate` (lists the row matches, whose window is not full), `window` (full lists
   * the row sorts into or before), `table` (the whole table: policy or fallback).
   */
  rules: PlanRules;
}

export type PlanRule = "row" | "predicate" | "window" | "table";
export type PlanRules = Record<PlanRule, number>;

const noRules = (): PlanRules => ({ row: 0, predicate: 0, window: 0, table: 0 });

/** How a write becomes invalidations: exact (rows and predicates), table-level, or none (TTL only). */
export type InvalidationPolicy = "exact" | "table" | "none";

/**
 * A key value as it appears in tags. A URL's "05" and a row's 5 name one row of a number
 * key, so numeric text is written as its number; two text keys that read as one number
 * ("007", "7") then share a tag, which costs an extra invalidation, never a stale read.
 */
export function tagValue(value: unknown): string {
  if (typeof value !== "string") return String(value);
  // Text that starts with a letter never reads as a finite number: most text keys, which
  // a page's tags name a row of each, are known so without parsing them.
  const first = value.charCodeAt(0) | 32;
  if (first >= 97 && first <= 122) return value;
  if (value.trim() !== "") {
    const n = Number(value);
    if (Number.isFinite(n)) return String(n);
  }
  return value;
}

/** Tag of an entry that holds (or, for a 404, looked for) one row. */
export function rowTag(table: string, id: unknown): string {
  return `${table}#${tagValue(id)}`;
}

/** Tag of an entry that holds every row of `table` whose `column` equals `value` (a joined array). */
export function setTag(table: string, column: string, value: unknown): string {
  return `${table}@${column}=${tagValue(value)}`;
}

/** The table tag: every entry that reads `table` carries it (table-level fallback). */
export function tableTag(table: string): string {
  return table;
}

/** The table a row, set or table tag names (see rowTag, setTag, tableTag). */
export function tagTable(tag: string): string {
  return tag.split(/[#@]/, 1)[0]!;
}

export function planSchemaOf(schema: Schema): PlanSchema {
  const joins = new Map<string, string[]>();
  for (const view of schema.views.values()) {
    for (const j of view.joins) {
      const cols = joins.get(j.table) ?? [];
      if (!cols.includes(j.foreignKey)) cols.push(j.foreignKey);
      joins.set(j.table, cols);
    }
  }
  return {
    primaryKey: (table) => schema.tables.get(table)?.primaryKey,
    joinColumns: (table) => joins.get(table) ?? [],
  };
}

/**
 * The keys a write may have changed.
 *
 * - Entries that hold the row before or after the write (row tags), including a cached
 *   404 for the id an insert now fills.
 * - Joined arrays the row leaves or enters (set tags on the view's join column).
 * - Lists on the table whose predicate matches the old or new row at a position that
 *   reaches into the window: inside it, or before it (the window shifts). A full window
 *   is untouched by rows that sort after its last row.
 * Anything else stays cached. A write without the rows the analysis needs, or to a table
 * the schema does not know, falls back to the table tag. A keyless table's rows have no
 * tags: its write is planned by the lists alone, and takes every entry that read the table
 * without registering a list on it (by the table tag).
 */
export function planWrite(
  event: WriteEvent,
  schema: PlanSchema,
  deps: DependencyLookup,
  policy: InvalidationPolicy = "exact",
): Plan {
  const keys = new Set<string>();
  const rules = noRules();
  if (policy === "none") return { keys, fallback: false, rules };
  const pk = schema.primaryKey(event.table);
  const images = [event.old, event.new].filter((r): r is Row => r !== undefined);
  const keyless = pk === undefined && schema.keyless?.(event.table) === true;
  const analysable =
    (pk !== undefined || keyless) &&
    images.length > 0 &&
    (event.op === "insert" ? event.new : event.old) !== undefined &&
    (event.op !== "update" || event.new !== undefined);
  if (policy === "table" || !analysable) {
    addAll(keys, deps.keysForTag(tableTag(event.table)));
    rules.table = keys.size;
    return { keys, fallback: policy !== "table", rules };
  }

  if (pk === undefined) {
    for (const k of deps.keysForTag(tableTag(event.table))) {
      if (!deps.listedOn?.(k, event.table)) keys.add(k);
    }
    rules.table = keys.size;
  } else {
    for (const row of images) {
      addAll(keys, deps.keysForTag(rowTag(event.table, row[pk])));
      for (const column of schema.joinColumns(event.table)) {
        addAll(keys, deps.keysForTag(setTag(event.table, column, row[column])));
      }
    }
    rules.row = keys.size;
  }
  const lists = deps.listsFor?.(event.table, images) ?? deps.listsOn(event.table);
  for (const [key, list] of lists) {
    if (keys.has(key)) continue;
    if (list.columns && pk !== undefined && unchanged(event, pk, list.columns)) continue;
    if (images.some((row) => reachesWindow(row, list))) {
      keys.add(key);
      // A list not full takes every matching row; a full one only rows that sort into it.
      rules[list.count < list.limit || list.last === undefined ? "predicate" : "window"]++;
    }
  }
  return { keys, fallback: false, rules };
}

/**
 * Whether `event` is an update that leaves its key `pk` and every one of `columns` as they
 * were, each held by both images (a column an image lacks may have changed). Values compare
 * as `Object.is`: a blob or a Date is taken as changed, which only costs an invalidation.
 */
function unchanged(event: WriteEvent, pk: string, columns: readonly string[]): boolean {
  const { old, new: now } = event;
  if (event.op !== "update" || !old || !now) return false;
  if (!sameIn(old, now, pk)) return false;
  for (const column of columns) if (!sameIn(old, now, column)) return false;
  return true;
}

/** Whether both images hold `column` with the same value. */
function sameIn(old: Row, now: Row, column: string): boolean {
  return (
    Object.hasOwn(old, column) && Object.hasOwn(now, column) && Object.is(old[column], now[column])
  );
}

/** Whether a row matching the list's predicate sorts into or before its window. */
export function reachesWindow(row: Row, list: ListDependency): boolean {
  if (!matches(row, list.filters)) return false;
  if (list.count < list.limit || list.last === undefined) return true;
  return compareSortValues(sortValues(row, list.sort), list.last, list.sort) <= 0;
}

function addAll(into: Set<string>, from: Iterable<string>): void {
  for (const k of from) into.add(k);
}
