import { matches } from "../../core/deps/predicate.ts";
import { positional, sameKey } from "./groups.ts";
import { admitted, type MemberRows, type Outside } from "./memberships.ts";
import type { SqlShape } from "./shape-types.ts";

/**
 * Count deltas: a count of a select's rows (`select count(*) from articles a join users u
 * on u.id = a.author_id where a.author_id in (select following_id from follows where
 * follower_id = ?)`, a feed's size; see memberships.ts's `counted`) changes by one for each
 * written base row it counts after the write, less each it counted before: a new article
 * by an author the viewer follows adds one, a deleted one takes one, whatever else the
 * result held. Whether a row is counted is told exactly from what the write's shared reads
 * found: its own conditions as the planner evaluates them, each membership by its table's
 * rows for the row's value that its conditions admit, each inner-joined parent by its row.
 * Anything not sure leaves the count to its statement. Only from a result whose load saw
 * the database exactly (the engine's `exact`), as a tally (see group-rows.ts).
 */

/** By how much the written rows change a count of `shape`; undefined where not told. */
export function countDelta(
  shape: SqlShape,
  outside: Outside,
  found: MemberRows,
): number | undefined {
  const s = shape.lists;
  if (!s || !outside.exists) return undefined;
  let delta = 0;
  for (const [i, row] of outside.rows.entries()) {
    const counts = countedRow(s.disjuncts, outside, found, row);
    if (counts === undefined) return undefined;
    if (counts) delta += outside.signs[i]!;
  }
  return delta;
}

/** Whether the count holds `row` (an image of a written base row); undefined where not told. */
function countedRow(
  disjuncts: NonNullable<SqlShape["lists"]>["disjuncts"],
  outside: Outside,
  found: MemberRows,
  row: Record<string, unknown>,
): boolean | undefined {
  if (disjuncts.some((d) => d.some((f) => !(f.column in row)))) return undefined;
  if (!disjuncts.some((d) => matches(row, d))) return false;
  for (const { member, values } of outside.reads) {
    const { column, from } = member.member!;
    const v = row[from];
    const rows = found.get(member);
    if (v === null) return false;
    if (!rows) return undefined;
    let held = false;
    for (const r of rows) {
      if (!values.some((w) => sameKey(r[column], w))) return undefined;
      if (!sameKey(r[column], v)) continue;
      const admits = admitted(member, r);
      if (admits === undefined) return undefined;
      held ||= admits;
    }
    if (!held) return false;
  }
  for (const entry of outside.exists ?? []) {
    const { column, from } = entry.join;
    const v = row[from];
    const rows = found.get(entry);
    if (v === null) return false;
    if (!rows) return undefined;
    // A row read for none of the values as compared here: the join compares otherwise.
    if (!rows.every((r) => entry.values.some((w) => sameKey(r[column], w)))) return undefined;
    if (!rows.some((r) => sameKey(r[column], v))) return false;
  }
  return true;
}

/**
 * A count's one row with its value moved by `delta`, in the form it came (a number, a
 * bigint, digits as text: PostgreSQL's count; an array, an object, a driver's row read by
 * position and by name alike: libSQL's); undefined where the rows are no count's.
 */
export function recounted(rows: readonly unknown[], delta: number): unknown[] | undefined {
  const row = rows.length === 1 ? rows[0] : undefined;
  if (typeof row !== "object" || row === null) return undefined;
  const byPosition = positional(row);
  const cells = byPosition ? Array.from(row as ArrayLike<unknown>) : Object.values(row);
  if (cells.length !== 1) return undefined;
  const value = moved(cells[0], delta);
  if (value === undefined) return undefined;
  if (Array.isArray(row)) return [[value]];
  // Every own property that holds the count (its name, its position), the rest as it was.
  const next = Object.create(Object.getPrototypeOf(row) as object | null) as object;
  for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(row))) {
    const holds = name !== "length" && "value" in d && d.value === cells[0];
    Object.defineProperty(next, name, holds ? { ...d, value } : d);
  }
  return [next];
}

function moved(v: unknown, delta: number): unknown {
  if (typeof v === "number") {
    return Number.isSafeInteger(v) && v + delta >= 0 ? v + delta : undefined;
  }
  if (typeof v === "bigint") return v + BigInt(delta) >= 0n ? v + BigInt(delta) : undefined;
  if (typeof v === "string" && /^(0|[1-9][0-9]*)$/.test(v)) {
    const n = BigInt(v) + BigInt(delta);
    return n >= 0n ? String(n) : undefined;
  }
  return undefined;
}
