import type { Row } from "../../core/data/query.ts";
import type { WriteEvent } from "../../core/deps/planner.ts";
import { identity, integer, keyLike, sameKey } from "./groups.ts";
import type { ShapeJoin, ShapeSubquery, SqlShape } from "./shape-types.ts";

/**
 * Memberships (see ShapeSubquery's `member`): a result whose WHERE holds
 * `base.col IN (select x from T where y = ?)` reads only the base rows whose `col` value T
 * holds with its conditions (a feed: the articles of the authors a viewer follows; a
 * tag's list: the articles T tags with it). A write of base rows none of whose values T
 * holds so leaves the result as it was: one read of T for the rows' values, shared by
 * every result of the select list whatever their parameters (`select x, y from T where x
 * in (...)`), tells which results those rows are outside of. A new article by an author
 * nobody follows keeps every feed and its count; one tagged `dragons` keeps every other
 * tag's list.
 *
 * The rest of the write must leave the result as it was too: a write to T whose rows its
 * conditions do not admit (another viewer's follow), rows of a table joined or read by a
 * select-list subquery only along the key of a base row the write names (a new article's
 * tags and favourites), and writes to tables the select does not read. A parent joined to
 * the base (a user) is outside where no base row the write did not write names its key:
 * one read of the base for the written keys tells it, for any result of the base, with
 * or without memberships (a new user keeps every list that joins authors). Everything
 * else (a base row read twice, a grandparent) is not told here.
 *
 * The read sees the database after the write, maybe later writes too: those are records
 * after this one, whose changes the fence holds the kept result against (it is stored as a
 * load that began at the record). Its rows are compared as SQL compares them, and where
 * that is not sure (a number as text, a column missing) as a match: a result is kept only
 * where no row could admit a written one.
 */

/** What one write needs read before its rows can be told outside a result (see `outsideOf`). */
export interface Outside {
  /** The base table and its key. */
  base: string;
  key: string;
  /** The written base rows' images (an update's both). */
  rows: Row[];
  /** Per membership, the distinct values of its base column among them (NULLs are never in). */
  reads: { member: ShapeSubquery; values: unknown[] }[];
  /**
   * Per parent joined to the base, the keys of its written rows: base rows that name one
   * (other than those written) would take it along (see `outsideAll`).
   */
  parents: { join: ShapeJoin; values: unknown[] }[];
  /** Each row's sign: +1 for an image the write brought (new), -1 for one it took (old). */
  signs: (1 | -1)[];
  /**
   * For a count told by deltas (see count-deltas.ts), per parent inner-joined to the base,
   * the values the written rows name it by: whether it has a row of each.
   */
  exists?: { join: ShapeJoin; values: unknown[] }[];
}

/**
 * The rows read for a write (see `Outside`), by what asked for them: a membership's table's
 * for the written values (its ShapeSubquery), a written parent's base rows that name its
 * key (its `parents` entry), a parent's rows of the written rows' values (its `exists`
 * entry).
 */
export type MemberRows = ReadonlyMap<object, readonly Record<string, unknown>[]>;

/**
 * What `events` need read to be told outside a result of `shape`, or undefined where one
 * of them may change it however the reads come out.
 */
export function outsideOf(shape: SqlShape, events: readonly WriteEvent[]): Outside | undefined {
  const s = shape.lists;
  if (!s || shape.fallback) return undefined;
  // The base read once: a row of it outside the result reads as nothing anywhere else.
  if ((s.joins ?? []).some((j) => j.table === s.table)) return undefined;
  if ((s.subqueries ?? []).some((q) => q.table === s.table)) return undefined;
  const members = (s.subqueries ?? []).filter((q) => q.member);
  const rows: Row[] = [];
  const signs: (1 | -1)[] = [];
  for (const e of events) {
    if (e.table !== s.table) continue;
    const images = imagesOf(e);
    if (!images) return undefined;
    rows.push(...images);
    if (e.op !== "insert") signs.push(-1);
    if (e.op !== "delete") signs.push(1);
  }
  // Base rows are told outside by memberships, or counted (see count-deltas.ts).
  if (rows.length > 0 && members.length === 0 && !counted(shape)) return undefined;
  const parents = new Map<ShapeJoin, Map<string, unknown>>();
  for (const e of events) {
    if (e.table === s.table || !shape.tables.includes(e.table)) continue;
    const images = imagesOf(e);
    if (!images?.every((row) => unread(shape, e.table, row, rows, parents))) return undefined;
  }
  if (rows.length === 0 && parents.size === 0) return undefined;
  const reads: Outside["reads"] = [];
  for (const member of rows.length > 0 ? members : []) {
    const values = distinct(rows, member.member!.from);
    if (!values) return undefined;
    reads.push({ member, values });
  }
  const exists: Outside["exists"] = [];
  for (const join of counted(shape) && parents.size === 0 ? (s.joins ?? []) : []) {
    const values = join.inner ? distinct(rows, join.from) : [];
    if (!values) return undefined;
    if (join.inner) exists.push({ join, values });
  }
  return {
    base: s.table,
    key: s.primaryKey,
    rows,
    reads,
    parents: [...parents].map(([join, values]) => ({ join, values: [...values.values()] })),
    signs,
    ...(counted(shape) && parents.size === 0 && { exists }),
  };
}

/** The distinct non-NULL values of `column` in `rows`; undefined where one is missing or no key. */
function distinct(rows: readonly Row[], column: string): unknown[] | undefined {
  const values = new Map<string, unknown>();
  for (const row of rows) {
    if (!(column in row)) return undefined;
    const v = row[column];
    if (v === null) continue;
    const id = identity(v);
    if (id === undefined) return undefined;
    values.set(id, v);
  }
  return [...values.values()];
}

/**
 * Whether every written base row is outside a result whose memberships' conditions are
 * `member.disjuncts` (the result's own parameters): for some membership, its table holds
 * no row of the written value that the conditions admit.
 */
export function outsideAll(outside: Outside, found: MemberRows): boolean {
  // A written parent's key named by a base row not written: that row takes it along.
  const { key } = outside;
  for (const parent of outside.parents) {
    const rows = found.get(parent);
    if (!rows?.every((r) => outside.rows.some((w) => sameKey(w[key], r[key])))) return false;
  }
  const admitted = outside.reads.map(({ member, values }) => {
    const rows = found.get(member);
    if (!rows) return undefined;
    const { column } = member.member!;
    const out: unknown[] = [];
    for (const row of rows) {
      if (!admits(member, row)) continue;
      // A row naming none of the values asked for is not placed: it may admit any of them.
      if (!values.some((v) => sameKey(row[column], v))) return undefined;
      out.push(row[column]);
    }
    return out;
  });
  return outside.rows.every((row) =>
    outside.reads.some(({ member }, i) => {
      const v = row[member.member!.from];
      if (v === null) return true;
      const held = admitted[i];
      return held !== undefined && !held.some((h) => sameKey(h, v));
    }),
  );
}

/**
 * The columns of a membership's table its read takes: the selected column, then its
 * conditions' (the same for every result of the select list).
 */
export function memberColumns(member: ShapeSubquery): string[] {
  const m = member.member!;
  return [m.column, ...Object.keys(m.filters ?? {}).filter((c) => c !== m.column)];
}

/** An event's row images: an insert's new row, a delete's old one, an update's both. */
function imagesOf(e: WriteEvent): Row[] | undefined {
  if (e.op === "insert") return e.new ? [e.new] : undefined;
  if (e.op === "delete") return e.old ? [e.old] : undefined;
  return e.old && e.new ? [e.old, e.new] : undefined;
}

/**
 * Whether a row of `table` (not the base) is read by no part of the result that a written
 * base row outside it does not take along, or that a base row not written takes along
 * (to be read: `parents`). Every place the select reads the table must be a membership
 * whose conditions do not admit it, a join of children of the base or a select-list
 * subquery linked to the base's key where the row links to one of `base`, or a parent
 * joined to the base (its key noted in `parents`).
 */
function unread(
  shape: SqlShape,
  table: string,
  row: Row,
  base: readonly Row[],
  parents: Map<ShapeJoin, Map<string, unknown>>,
): boolean {
  const s = shape.lists!;
  const linked = (column: string, from: string) =>
    from === s.primaryKey &&
    keyLike(row[column]) &&
    base.some((b) => sameKey(b[s.primaryKey], row[column]));
  for (const j of s.joins ?? []) {
    if (j.table !== table || j.anchor !== undefined) {
      if (j.table === table) return false;
      continue;
    }
    if (j.kind === "children") {
      if (!linked(j.column, j.from)) return false;
      continue;
    }
    // A parent: base rows that name its key take it along (NULL names none).
    if (!(j.column in row)) return false;
    const v = row[j.column];
    if (v === null) continue;
    const id = identity(v);
    if (id === undefined) return false;
    const keys = parents.get(j) ?? new Map<string, unknown>();
    keys.set(id, v);
    parents.set(j, keys);
  }
  for (const q of s.subqueries ?? []) {
    if (q.table !== table) continue;
    if (q.member) {
      if (admits(q, row)) return false;
      continue;
    }
    const link = q.link ?? q.unshown;
    if (q.in !== "select" || !link || link.anchor !== undefined) return false;
    if (!linked(link.column, link.from)) return false;
  }
  return true;
}

/** Whether a membership's conditions may admit `row`: any that cannot be told does. */
function admits(q: ShapeSubquery, row: Record<string, unknown>): boolean {
  return admitted(q, row) !== false;
}

/**
 * Whether a membership's conditions admit `row`, as SQL would; undefined where that cannot
 * be told (no conditions told, a number written as text, a column missing).
 */
export function admitted(q: ShapeSubquery, row: Record<string, unknown>): boolean | undefined {
  const kinds = q.member!.filters;
  if (!kinds) return undefined;
  let unsure = false;
  for (const d of q.disjuncts) {
    let all: boolean | undefined = true;
    for (const f of d) {
      const equal = f.op === "eq" ? sqlEqual(row[f.column], f.value, kinds[f.column]) : undefined;
      if (equal === false) {
        all = false;
        break;
      }
      if (equal === undefined) all = undefined;
    }
    if (all === true) return true;
    if (all === undefined) unsure = true;
  }
  return unsure ? undefined : false;
}

/** Whether SQL's `=` holds between a row's value and a condition's; undefined where not sure. */
function sqlEqual(
  value: unknown,
  wanted: unknown,
  kind: "number" | "text" | undefined,
): boolean | undefined {
  if (value === null) return false;
  if (value === undefined || wanted === null || wanted === undefined) return undefined;
  if (kind === "text") {
    return typeof value === "string" && typeof wanted === "string" ? value === wanted : undefined;
  }
  if (kind !== "number") return undefined;
  const a = integer(value);
  const b = integer(wanted);
  if (a !== undefined && b !== undefined) return a === b;
  if (typeof value === "number" && typeof wanted === "number") return value === wanted;
  return undefined;
}

/**
 * Whether `shape` is a count (`select count(*) from ...`, no GROUP BY) whose every
 * condition is told exactly for a written base row: the base's own (no lookups, no
 * widening but its memberships'), memberships whose conditions are told, parents joined
 * along their keys with no conditions. A write then changes it by the rows it brings in
 * less those it takes out (see count-deltas.ts).
 */
export function counted(shape: SqlShape): boolean {
  const s = shape.lists;
  if (!s?.counted || shape.fallback || s.grouping !== "aggregate" || s.rowIds.length > 0) {
    return false;
  }
  if (shape.widened.some((w) => w !== "subquery")) return false;
  if ((s.subqueries ?? []).some((q) => q.in !== "where" || !q.member?.filters)) return false;
  return (s.joins ?? []).every(
    (j) => j.kind === "parent" && j.anchor === undefined && !j.filters && !j.whole,
  );
}
