import type { ListFilter, SortKey } from "../../core/data/query.ts";
import type { WriteEvent } from "../../core/deps/planner.ts";
import type { Restriction } from "./group-statements.ts";
import { reader } from "./rows.ts";
import { NO_LIMIT, type OutputRead, type SqlShape } from "./shape-types.ts";

/**
 * Group patches: a cached result whose rows are keyed, one per row of its base table (grouped
 * by the base's key, or joined to parents only), is kept after a write that only changes
 * values of some of its rows (a favourite's count, a tag list, a flag, an author's name, the
 * base row's own columns no condition or order reads), or brings a new base row into a list
 * with no WHERE, by running the same statement for just those rows (group-statements.ts) and
 * splicing them in. Pure: the statement cache runs it (query-cache/group-patches.ts).
 */
/** How a result's rows are maintained by group patches (see `groupPlan`). */
export interface GroupPlan {
  /** The base table, its key, and the name the statement gives it. */
  table: string;
  primaryKey: string;
  ref: string;
  /** The result column that names each row: the key, or a unique column standing in. */
  key: string;
  /** Each result column's base column and name, by position (to read a row's key). */
  columns: (string | undefined)[];
  names: (string | undefined)[];
  /** Every table the statement reads. */
  tables: string[];
  /** How a write to each feeding table names the base rows it changes. */
  feeds: Feed[];
  /** Tables a write to which is not group-patched (the base, those deciding membership). */
  blocked: string[];
  /** What each result column reads (ShapeLists' `outputs`), where that is known. */
  outputs?: OutputRead[];
  /** Result columns that say whether a table has a row for the result row (see Presence). */
  presences: Presence[];
  /**
   * Result columns that count a table's rows for the result row (`(select count(*) ...)`
   * on its link and conditions that name no key): told like presences, by adding up.
   */
  tallies: Presence[];
  /**
   * Tables read by presences and tallies alone: a write to them is told by its rows, with
   * no statement (see group-rows.ts, `toldRows`).
   */
  told: string[];
  /**
   * The base columns a keyed statement carries after the result's columns: its key, then
   * those that name the rows a feed or a presence reaches where the result does not show
   * them (`a.author_id`, for an author's update or a follow).
   */
  carried: string[];
  /**
   * Its order and window, where its rows are ordered by base columns its updates are
   * patched around: from its first row (`offset` 0), a row its statement returns for an
   * inserted key enters where it sorts; any window can be read again whole (see
   * window-slides.ts).
   */
  window?: { sort: SortKey[]; limit: number; offset: number };
}

/**
 * A result column whose value is whether `table` has a row with `column` equal to the
 * result row's base column `from` and matching `filters` (equalities that, with the link,
 * name a key of the table: one row or none). A write to the table tells it for the rows
 * it names: set where it inserts such a row, cleared where it deletes one.
 */
export interface Presence {
  output: number;
  table: string;
  column: string;
  from: string;
  filters: ListFilter[];
}

/** A place where a table feeds the values of result rows. */
interface Feed {
  table: string;
  /** The table's column whose values name the base rows it feeds... */
  column: string;
  /** ...by the base's column that equals it. */
  base: string;
  /** "update": only its updates (a parent's rows, an inner join's children). */
  ops: "any" | "update";
  /** Columns an update must leave as they were (its key, those that decide membership). */
  keep: string[];
  /**
   * Named by a base column the result does not show (other than the key): only a keyed
   * statement, which carries it, tells the rows it reaches (see `sharedColumns`).
   */
  hidden?: true;
  /**
   * Joined inner: an insert can only bring rows in (a held row joined none before), which
   * the keyed statement tells (see `closedTo`). A left join's new parent may take a held
   * row out (`where u.id is null`).
   */
  inner?: true;
}

export type { Restriction };

/** Most base rows one group patch restricts its statement to: past it, the result is dropped. */
export const MOST_PATCHED_ROWS = 256;

const plans = new WeakMap<SqlShape, GroupPlan | string>();

/**
 * The group plan of a select whose result can be maintained, or undefined; worked out once
 * per shape (a read's shape goes from its lookup to its store, its stats and its patches).
 */
export function groupPlan(shape: SqlShape): GroupPlan | undefined {
  const plan = planned(shape);
  return typeof plan === "string" ? undefined : plan;
}

/** Why a select's result is not maintained by group patches (`explain`); undefined if it is. */
export function unmaintained(shape: SqlShape): string | undefined {
  const plan = planned(shape);
  return typeof plan === "string" ? plan : undefined;
}

function planned(shape: SqlShape): GroupPlan | string {
  let plan = plans.get(shape);
  if (plan === undefined) {
    plan = planOf(shape);
    plans.set(shape, plan);
  }
  return plan;
}

function planOf(shape: SqlShape): GroupPlan | string {
  const s = shape.lists;
  if (!s || shape.fallback) return "followed by its tables";
  if (s.ref === undefined) return "its base table has no name the statement can be restricted by";
  if (s.grouping === "aggregate") return "an aggregate over all its rows";
  // Its rows must name their base rows: by its key, or a unique column the result shows.
  const once = (c: string) =>
    s.columns.indexOf(c) >= 0 && s.columns.indexOf(c) === s.columns.lastIndexOf(c);
  const key = [s.primaryKey, ...(s.unique ?? [])].find(once);
  if (key === undefined) return "it shows neither its base's key nor a unique column of it";
  const joins = s.joins ?? [];
  // Children joined without GROUP BY repeat a base row: the rows are not keyed.
  if (s.grouping !== "key" && joins.some((j) => j.kind === "children")) {
    return "children joined without a group by its base's key: a base row repeats";
  }
  // An order by anything but the base's columns (a count, an author's name) could move a
  // row a group patch changes; no ORDER BY leaves the planner's default sort, unordered.
  const unordered = s.sort.length === 1 && s.sort[0]!.column === s.primaryKey && !s.sort[0]!.desc;
  if (!s.ordered && !unordered) {
    return "not ordered by its base's columns as the planner follows them (a joined table's, an expression, a kind not known)";
  }
  const windowed = s.offset > 0 || s.limit < NO_LIMIT;
  if (windowed && !s.ordered) return "a window without an order of its base's columns";
  // A sort key named like an output column of another value (`... as at order by at`)
  // sorts by that value.
  for (const k of s.sort) {
    const at = s.names.indexOf(k.column);
    if (at >= 0 && s.columns[at] !== k.column)
      return `ordered by ${k.column}, an output column named like a base column it is not`;
  }
  // A condition on a table other than a parent of the base picks which joined rows are
  // aggregated, and which base rows have any: a write to it may change both.
  if (joins.some((j) => j.filters && !(j.kind === "parent" && j.anchor === undefined))) {
    return "a condition on a joined table other than a parent";
  }
  const feeds: Feed[] = [];
  // The base's own updates, where what decides its rows is known and they leave it: only
  // its row's values change (the key standing in for it too: a held row is found by it).
  const blocked = new Set(s.deciding ? [] : [s.table]);
  if (s.deciding) {
    const keep = [...new Set([s.primaryKey, key, ...s.deciding])];
    feeds.push({ table: s.table, column: s.primaryKey, base: s.primaryKey, ops: "update", keep });
  }
  for (const j of joins) {
    // Registered whole for want of a key in the result, its links are still known.
    const linked = !j.whole || j.whole === "key-not-selected";
    if (!linked || j.anchor !== undefined) {
      blocked.add(j.table);
    } else if (j.kind === "children") {
      // A left join's children come and go without taking their base row along.
      const ops = j.inner ? "update" : "any";
      feeds.push({
        ...{ table: j.table, column: j.column, base: j.from, ops, keep: [j.column] },
        ...(j.inner && { inner: true as const }),
      });
    } else {
      // A parent's rows: an update that leaves its key and the columns deciding the
      // result's rows (its conditions, its order) as they were.
      const decides = j.whole ? j.decides : j.reach ? j.reach.columns : [];
      if (!decides) blocked.add(j.table);
      else {
        const keep = [j.column, ...decides];
        feeds.push({
          ...{ table: j.table, column: j.column, base: j.from, ops: "update" as const, keep },
          ...(j.inner && { inner: true as const }),
        });
      }
    }
  }
  for (const q of s.subqueries ?? []) {
    const link = q.link ?? q.unshown;
    if (q.in === "where" || q.whole || !link || link.anchor !== undefined) {
      blocked.add(q.table);
    } else {
      feeds.push({ table: q.table, column: link.column, base: link.from, ops: "any", keep: [] });
    }
  }
  // A feed named by a base column the result does not show reaches rows only a keyed
  // statement tells (it carries the column). A held row such a write reaches that left
  // meanwhile (a later write, not yet applied) is not told, and needs not be: that write's
  // record concerns the result too, and removes it, or fences this patch out.
  const shown = (c: string) => c === s.primaryKey || s.columns.includes(c);
  for (const f of feeds) if (!shown(f.base)) f.hidden = true;
  const usable = feeds.filter((f) => !blocked.has(f.table));
  // A select of the base alone is the row patches' and the reloads' (see the engine).
  if (!usable.some((f) => f.table !== s.table)) return baseAlone(s.table, blocked);
  const presences: Presence[] = [];
  const tallies: Presence[] = [];
  for (const q of s.subqueries ?? []) {
    const link = q.link ?? q.unshown;
    if (!(q.presence || q.tally) || q.output === undefined || !link || blocked.has(q.table)) {
      continue;
    }
    const filters = q.disjuncts[0] ?? [];
    (q.presence ? presences : tallies).push({
      output: q.output,
      table: q.table,
      column: link.column,
      from: link.from,
      filters,
    });
  }
  const told = toldTables(s, blocked, [...presences, ...tallies]);
  const carried = [s.primaryKey];
  for (const c of [
    ...usable.map((f) => f.base),
    ...[...presences, ...tallies].map((p) => p.from),
  ]) {
    if (!shown(c) && !carried.includes(c)) carried.push(c);
  }
  const plan: GroupPlan = {
    ...(s.outputs && { outputs: s.outputs.map((o) => ({ ...o, tables: [...o.tables] })) }),
    ...(s.ordered &&
      s.deciding && {
        window: { sort: s.sort.map((k) => ({ ...k })), limit: s.limit, offset: s.offset },
      }),
    presences,
    tallies,
    told,
    carried,
    table: s.table,
    primaryKey: s.primaryKey,
    ref: s.ref,
    key,
    columns: [...s.columns],
    names: [...s.names],
    tables: [...shape.tables],
    feeds: usable,
    blocked: [...blocked],
  };
  // Without a keyed statement for its writes, a hidden feed is not followed.
  for (const f of usable) {
    if (f.hidden && !sharedColumns(plan, [{ table: f.table, op: "update" }])) blocked.add(f.table);
  }
  plan.feeds = usable.filter((f) => !blocked.has(f.table));
  plan.blocked = [...blocked];
  return plan.feeds.some((f) => f.table !== s.table) ? plan : baseAlone(s.table, blocked);
}

/**
 * The tables of `s` that only `values` (its presences and tallies) read: not its base, not
 * joined, in no condition, and every result column reading one is one of those values and
 * reads nothing else but its link's base column.
 */
function toldTables(
  s: NonNullable<SqlShape["lists"]>,
  blocked: ReadonlySet<string>,
  values: readonly Presence[],
): string[] {
  const outputs = s.outputs;
  if (!outputs) return [];
  const joined = new Set((s.joins ?? []).map((j) => j.table));
  const subqueries = s.subqueries ?? [];
  const tables = new Set(subqueries.map((q) => q.table));
  return [...tables].filter((t) => {
    if (t === s.table || joined.has(t) || blocked.has(t)) return false;
    if (
      !subqueries.every(
        (q) => q.table !== t || values.some((v) => v.output === q.output && v.table === t),
      )
    ) {
      return false;
    }
    return outputs.every((o, i) => {
      // `*` is any of the select's own tables (an aggregate of its joined rows): not `t`.
      if (!o.tables.includes(t)) return true;
      // Its link reads the base's column too.
      const alone = o.tables.every((x) => x === t || x === s.table);
      return alone && values.some((v) => v.output === i && v.table === t);
    });
  });
}

/** Why a select no write to another table than its base can keep is not maintained. */
function baseAlone(base: string, blocked: ReadonlySet<string>): string {
  const others = [...blocked].filter((t) => t !== base);
  return others.length > 0
    ? `a write to ${others.join(", ")} may bring a row in, take one out or name rows it does not show`
    : "no write to another table can keep it (its base's own are patched in place or reloaded)";
}

/**
 * The base rows `events` change in a result of `plan`, or undefined when one of them may
 * do more than change values of rows (a write to the base, to a table its conditions read,
 * an insert of a parent). An empty restriction: the events leave the result as it was.
 */
export function restrictionOf(
  plan: GroupPlan,
  events: readonly WriteEvent[],
  keyed = false,
  entering = false,
): Restriction | undefined {
  const out: Restriction = new Map();
  let count = 0;
  for (const e of events) {
    // A new base row, where its statement tells whether it enters (see insertedKeys).
    if (entering && e.table === plan.table && e.op === "insert") {
      const v = e.new?.[plan.primaryKey];
      if (!keyLike(v)) return undefined;
      const values = out.get(plan.primaryKey) ?? [];
      values.push(v);
      out.set(plan.primaryKey, values);
      count++;
      continue;
    }
    if (plan.blocked.includes(e.table)) return undefined;
    const feeds = plan.feeds.filter((f) => f.table === e.table);
    if (feeds.length === 0) {
      if (plan.tables.some((t) => t.toLowerCase() === e.table.toLowerCase())) return undefined;
      continue;
    }
    for (const f of feeds) {
      if (f.hidden && !keyed) return undefined;
      // A new parent (an inner join's new child): the keyed statement tells whether a row
      // it joins is there, which only an unheld row can be (see `closedTo`).
      const joined = keyed && e.op === "insert" && f.inner === true;
      if (f.ops === "update" && e.op !== "update" && !joined) {
        return undefined;
      }
      if (e.op === "update") {
        if (!e.old || !e.new) return undefined;
        for (const c of f.keep)
          if (!(c in e.old) || !sameValue(e.old[c], e.new[c])) return undefined;
      }
      for (const row of [e.old, e.new]) {
        if (!row) continue;
        if (!(f.column in row)) return undefined;
        const v = row[f.column];
        if (v === null) continue;
        const values = out.get(f.base) ?? [];
        if (!values.some((x) => sameValue(x, v))) {
          values.push(v);
          count++;
        }
        out.set(f.base, values);
      }
    }
  }
  return count > MOST_PATCHED_ROWS ? undefined : out;
}

/**
 * The base rows `events` may bring into a result by inserting a row where only updates feed
 * it, joined inner (a new user, for `inner join users u on u.id = a.author_id`): as values
 * of the base column that names them (`author_id` 7). A row the keyed statement returns
 * that the result does not hold and that is one of them may be one that enters it, and the
 * result cannot be kept (see mergedRows's `closed`); other such rows are named by the
 * record's other writes (a favourite of an article on another page) and leave it as it was.
 * A value the inserted row does not show is undefined: any row may be one. Empty where
 * none is inserted.
 */
export function closedTo(plan: GroupPlan, events: readonly WriteEvent[]): Restriction {
  const out: Restriction = new Map();
  for (const e of events) {
    if (e.op !== "insert") continue;
    for (const f of plan.feeds) {
      if (f.table !== e.table || f.ops !== "update" || !f.inner) continue;
      const values = out.get(f.base) ?? [];
      values.push(e.new?.[f.column]);
      out.set(f.base, values);
    }
  }
  return out;
}

/**
 * Whether a row not held, whose base columns `value` reads, may be one of the rows `closed`
 * (see closedTo) names: a value not known, or equal to one of them.
 */
export function closesOn(closed: Restriction, value: (column: string) => unknown): boolean {
  for (const [column, values] of closed) {
    const v = value(column);
    if (!keyLike(v) || values.some((x) => !keyLike(x) || sameKey(x, v))) return true;
  }
  return false;
}

/**
 * One statement for every result of a select list whatever its parameters, where the
 * columns `events` change hold no parameter or are presences the events tell: the result
 * columns a parameter enters (each viewer's flags), and the presences among them. Such
 * results take the changed rows from the statement run with any one's parameters (keyed:
 * see `restrictedStatement`), and those columns from their own rows (see `mergedRows`).
 */
export function sharedColumns(
  plan: Omit<GroupPlan, "feeds" | "blocked">,
  events: readonly WriteEvent[],
): { params: number[]; told: Map<number, Presence> } | undefined {
  if (!plan.outputs) return undefined;
  const written = new Set(events.map((e) => e.table.toLowerCase()));
  const base = plan.table.toLowerCase();
  // The base's columns its updates change (`*`: any, for any other write to it).
  const changedBase = new Set<string>();
  for (const e of events) {
    // A new row changes no held row's values (it is placed, see placedRows).
    if (e.table.toLowerCase() !== base || e.op === "insert") continue;
    if (e.op !== "update" || !e.old || !e.new) changedBase.add("*");
    else {
      for (const c of new Set([...Object.keys(e.old), ...Object.keys(e.new)])) {
        if (!sameValue(e.old[c], e.new[c])) changedBase.add(c);
      }
    }
  }
  const reads = (o: OutputRead, table: string) => {
    const t = table.toLowerCase();
    if (t === "*") return true;
    if (t !== base) return written.has(t);
    return changedBase.has("*") || o.base === undefined || o.base.some((c) => changedBase.has(c));
  };
  const params: number[] = [];
  const told = new Map<number, Presence>();
  for (const [i, o] of plan.outputs.entries()) {
    if (!o.params) continue;
    params.push(i);
    if (!o.tables.some((t) => reads(o, t))) continue;
    const presence = plan.presences.find((p) => p.output === i);
    if (!presence || o.tables.some((t) => t !== presence.table && reads(o, t))) return undefined;
    told.set(i, presence);
  }
  return { params, told };
}

export function keyLike(v: unknown): boolean {
  return typeof v === "number" || typeof v === "bigint" || typeof v === "string";
}

/** An integer's value as text (a number, a bigint or its digits), else undefined. */
export function integer(v: unknown): string | undefined {
  if (typeof v === "number") return Number.isSafeInteger(v) ? String(v) : undefined;
  if (typeof v === "bigint") return String(v);
  if (typeof v === "string" && /^(0|-?[1-9][0-9]*)$/.test(v)) return v;
  return undefined;
}

/** Whether two values name one key, an integer read as a number, a bigint or text alike. */
export function sameKey(a: unknown, b: unknown): boolean {
  return keyLike(a) && keyLike(b) && String(a) === String(b);
}

/**
 * The held rows with those `fresh` has for their keys, in place; undefined when a row's
 * key cannot be read, or a row the restriction names is missing from `fresh` (it left the
 * result: not a group patch's to tell).
 */
export function splicedRows(
  plan: GroupPlan,
  held: readonly unknown[],
  fresh: readonly unknown[],
  restriction: Restriction,
): unknown[] | undefined {
  // Rows read by position and rows read by name are not one form (an ORM's mapped result).
  const form = held[0] === undefined ? undefined : positional(held[0]);
  if (form !== undefined && fresh.some((r) => positional(r) !== form)) return undefined;
  const read = reader(plan.columns, plan.names);
  const byKey = rowsByKey(plan, fresh);
  if (!byKey) return undefined;
  // Without its key shown, each base row the restriction names that still exists comes
  // back once: one fewer, and a held row may be one that left.
  const keys = restriction.get(plan.primaryKey);
  if (keys && !plan.columns.includes(plan.primaryKey) && fresh.length !== keys.length) {
    return undefined;
  }
  const out: unknown[] = [];
  for (const row of held) {
    const k = identity(read(row, plan.key));
    if (k === undefined) return undefined;
    const next = byKey.get(k);
    if (next === undefined) {
      // Named by the restriction where the result shows the column: it should be there.
      for (const [column, values] of restriction) {
        if (!plan.columns.includes(column)) continue;
        const v = read(row, column);
        if (values.some((x) => identity(x) === identity(v))) return undefined;
      }
    }
    out.push(next ?? row);
  }
  return out;
}

/** `rows` by the value of the column that names them; undefined where one cannot be read. */
export function rowsByKey(
  plan: GroupPlan,
  rows: readonly unknown[],
): Map<string, unknown> | undefined {
  const read = reader(plan.columns, plan.names);
  const keys = rows.map((row) => identity(read(row, plan.key)));
  return keys.includes(undefined) ? undefined : new Map(keys.map((k, i) => [k!, rows[i]]));
}

export function positional(row: unknown): boolean {
  return Array.isArray(row) || typeof (row as { length?: unknown } | null)?.length === "number";
}

/** A key's value as one string per value, whatever the type (1 and "1" differ). */
export function identity(v: unknown): string | undefined {
  if (typeof v === "number" || typeof v === "bigint") return `n:${String(v)}`;
  if (typeof v === "string") return `s:${v}`;
  return undefined;
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a === "object" && typeof b === "object" && a !== null && b !== null) {
    return JSON.stringify(a) === JSON.stringify(b);
  }
  return false;
}
