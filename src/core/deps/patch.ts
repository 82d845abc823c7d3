import type { JoinInfo, Resource, Row, SortKey } from "../data/query.ts";
import { extend } from "../entries/extend.ts";
import { type ListDependency, type PlanSchema, tagValue, type WriteEvent } from "./planner.ts";
import { compareRows, matches, sortValues } from "./predicate.ts";

/**
 * Patch in place: what a cached data API response becomes after a write, computed from
 * the response and the write's rows alone, with no query. Pure functions, so the rules
 * can be tested against the database (the consistency property test does).
 *
 * Each returns undefined when the result cannot be told exactly from what is cached (a
 * row leaving a full window lets an unseen row in; a row entering a view list needs its
 * joined rows); the caller then invalidates as before.
 *
 * The engine asks for patches only with records in the source's commit order. A response
 * may still show a write already (another node loaded it after the write committed and
 * before this node applied its record): so a row the response holds must equal the
 * event's old row, and a row it does not hold must not be the event's new one. Where that
 * can happen (`aligned` false: a shared log), no place is inferred from a row's absence
 * (a row sorting before the window) nor taken from another page, which may show another
 * moment, and a new row is placed only where the response held its old one. A response
 * patched so shows each row as the records applied here left it or as a later write did.
 */

type PrimaryKeys = Pick<PlanSchema, "primaryKey">;

/** An item response: the row, or undefined for a cached 404. */
export function patchItem(
  resource: Resource,
  id: string,
  row: Row | undefined,
  events: readonly WriteEvent[],
  keys: PrimaryKeys,
): { row: Row | undefined } | undefined {
  const table = resource.table.name;
  const pk = resource.table.primaryKey;
  let current = row;
  if (joinsOn(resource, table).length > 0) return undefined; // a view joined to itself
  for (const event of events) {
    if (!event.old && !event.new) return undefined; // a change without rows: unknown
    if (event.table === table) {
      const before = event.old && same(event.old[pk], id);
      const after = event.new && same(event.new[pk], id);
      if (!before && !after) {
        // Another spelling of the same number ("05" for 5): what the source does with it
        // is the source's business; leave it to invalidation.
        const loose = [event.old, event.new].some((r) => r && tagValue(r[pk]) === tagValue(id));
        if (loose) return undefined;
        continue;
      }
      if (event.op === "delete") {
        if (current !== undefined && !(before && holds(current, event.old!))) return undefined;
        current = undefined;
      } else if (event.op === "insert") {
        if (current !== undefined) return undefined;
        // A view's new row needs its joined rows: those the write read for it, if any.
        const row = newRow(resource, event);
        if (!row) return undefined;
        current = row;
      } else {
        if (!before || !after || current === undefined) return undefined;
        if (!holds(current, event.old!)) return undefined;
        current = updatedBase(resource, current, event.old!, event.new!);
        if (!current) return undefined;
      }
      continue;
    }
    const joins = joinsOn(resource, event.table);
    // A table this response does not read, or a 404, which holds no joined rows.
    if (joins.length === 0 || current === undefined) continue;
    const next = patchJoined(current, joins, event, keys);
    if (!next) return undefined;
    current = next;
  }
  return { row: current };
}

/**
 * Rows of the same list next to a window, from other cached windows: what moves into the
 * window when a write shifts it (a row inserted before it brings in the row at
 * `offset - 1`; one removed before it, the row after its end).
 */
export interface Neighbours {
  /** Rows ending just before the window (position offset - 1), in order. */
  before: Row[];
  /** Rows starting just after the window (position offset + its row count). */
  after?: { rows: Row[]; toEnd: boolean };
}

/**
 * Rows of other cached pages of the same list just before and after `list`'s window, for
 * `patchList`: `pages` are the pages of that list the index knows (`Cache.pagesOf`),
 * `rowsOf` a page's rows as cached, or undefined when that page cannot be used.
 */
export function neighbourRows(
  key: string,
  list: ListDependency,
  pages: Iterable<readonly [key: string, list: ListDependency]>,
  rowsOf: (key: string) => readonly Row[] | undefined,
): Neighbours | undefined {
  const end = list.offset + list.count;
  let found: Neighbours | undefined;
  for (const [other, dep] of pages) {
    if (other === key) continue;
    const coversBefore = dep.offset < list.offset && list.offset <= dep.offset + dep.count;
    const coversAfter =
      list.count >= list.limit &&
      dep.offset <= end &&
      (end < dep.offset + dep.count || (end === dep.offset + dep.count && dep.count < dep.limit));
    if (!coversBefore && !coversAfter) continue;
    const data = rowsOf(other);
    if (!data) continue;
    found ??= { before: [] };
    if (coversBefore && found.before.length === 0) {
      found.before = data.slice(0, list.offset - dep.offset);
    }
    if (coversAfter && !found.after) {
      found.after = { rows: data.slice(end - dep.offset), toEnd: dep.count < dep.limit };
    }
  }
  return found;
}

/**
 * A list response's rows after the write, with the list registration they now have.
 *
 * The rows known around the window (the window itself, and any neighbours) are a
 * stretch of the whole list whose first position is known. Each event removes its old
 * row from the stretch or shifts the stretch when it left before it, and puts its new row
 * in or shifts the stretch when it lands before it. The window is then cut back out of the
 * stretch, if the stretch still covers it.
 */
export function patchList(
  resource: Resource,
  list: ListDependency,
  rows: readonly Row[],
  events: readonly WriteEvent[],
  keys: PrimaryKeys,
  neighbours?: Neighbours,
  aligned = true,
): { rows: Row[]; list: ListDependency; around?: Neighbours } | undefined {
  const table = resource.table.name;
  const pk = resource.table.primaryKey;
  if (joinsOn(resource, table).length > 0) return undefined; // a view joined to itself
  const full = rows.length >= list.limit;
  const around = aligned ? neighbours : undefined;
  const after = full ? around?.after : undefined;
  const before = around?.before ?? [];
  let stretch = [...before, ...rows, ...(after?.rows ?? [])];
  let start = list.offset - before.length;
  // Whether the stretch runs to the end of the list: rows sorting after it are then new.
  const toEnd = full ? (after?.toEnd ?? false) : true;

  for (const event of events) {
    if (!event.old && !event.new) return undefined; // a change without rows: unknown
    if (event.table !== table) {
      const joins = joinsOn(resource, event.table);
      if (joins.length === 0) continue; // a table this response does not read
      const next: Row[] = [];
      for (const row of stretch) {
        const patched = patchJoined(row, joins, event, keys);
        if (!patched) return undefined;
        next.push(patched);
      }
      stretch = next;
      continue;
    }
    if ((event.op !== "insert" && !event.old) || (event.op !== "delete" && !event.new)) {
      return undefined;
    }
    // Nothing known to place a row against, past the start of the list.
    if (stretch.length === 0 && start > 0) return undefined;
    let kept: Row | undefined;
    let keptAt = -1;
    if (event.old) {
      const at = stretch.findIndex((r) => same(r[pk], event.old![pk]));
      if (at >= 0) {
        kept = stretch[at];
        keptAt = at;
        if (!holds(kept!, event.old)) return undefined;
        stretch.splice(at, 1);
      } else if (matches(event.old, list.filters)) {
        const first = stretch[0];
        const last = stretch[stretch.length - 1];
        if (first && compareRows(event.old, first, list.sort) < 0 && start > 0 && aligned) start--;
        else if (!(last && compareRows(event.old, last, list.sort) > 0 && !toEnd)) return undefined;
      }
    }
    // Its new row already held: the response has seen this write.
    if (event.new && stretch.some((r) => same(r[pk], event.new![pk]))) return undefined;
    if (event.new && matches(event.new, list.filters)) {
      // A held row whose sort values did not change keeps its place, first or last of the
      // stretch included (where, placed anew, it could as well sort beyond it).
      const stays =
        kept !== undefined && list.sort.length > 0 && compareRows(event.new, kept, list.sort) === 0;
      const at = stays ? keptAt : insertionPoint(stretch, event.new, list.sort);
      if (!stays && at === 0 && start > 0) {
        if (!aligned) return undefined;
        start++; // it lands before the stretch, which shifts down a place
      } else if (!stays && at === stretch.length && !toEnd) {
        // it lands after the stretch, among rows not cached: no change within it
      } else if (!aligned && kept === undefined) {
        // Nothing shows the response had not seen this row's write: it may hold the row
        // elsewhere, or not at all, because of later writes. Only its old row, held, says so.
        return undefined;
      } else {
        const row =
          kept === undefined
            ? newRow(resource, event)
            : updatedBase(resource, kept, event.old!, event.new);
        if (!row) return undefined;
        stretch.splice(at, 0, row);
      }
    }
  }
  const from = list.offset - start;
  if (from < 0) return undefined;
  const { rows: window, around: known } = windowOf(stretch, from, list.limit, toEnd);
  if (window.length < list.limit && !toEnd) return undefined;
  const last = window[window.length - 1];
  const next: ListDependency = { ...list, count: window.length };
  if (last) next.last = sortValues(last, list.sort);
  else delete next.last;
  if (!aligned) return { rows: window, list: next };
  // The rows known around the window now, for the caller to keep.
  return { rows: window, list: next, around: known };
}

/**
 * At most `k` rows of `around` on each side of the window, those next to it: the margin a
 * cached page keeps. Rows after it run to the end of the list only if none were cut.
 */
export function marginOf(around: Neighbours, k: number): Neighbours {
  const margin: Neighbours = { before: around.before.slice(Math.max(0, around.before.length - k)) };
  if (around.after) {
    const { rows, toEnd } = around.after;
    margin.after = { rows: rows.slice(0, k), toEnd: toEnd && rows.length <= k };
  }
  return margin;
}

/**
 * Rows around a window from two sources, both as of the same moment (a page's margin and
 * other pages): on each side the longer run, which holds the shorter.
 */
export function widest(
  a: Neighbours | undefined,
  b: Neighbours | undefined,
): Neighbours | undefined {
  if (!a || !b) return a ?? b;
  const before = a.before.length >= b.before.length ? a.before : b.before;
  const after =
    !a.after || (b.after && (b.after.toEnd || b.after.rows.length > a.after.rows.length))
      ? b.after
      : a.after;
  return after ? { before, after } : { before };
}

/**
 * The window of `held` (a stretch of the list: loaded, or patched) from `start` rows in,
 * with the rows around it: before it only if they reach it (else the list ended before the
 * window); after it only for a full window, running to the list's end if `toEnd` (the
 * stretch does).
 */
export function windowOf(
  held: Row[],
  start: number,
  limit: number,
  toEnd: boolean,
): { rows: Row[]; around: Neighbours } {
  const rows = held.slice(start, start + limit);
  const around: Neighbours = { before: held.length >= start ? held.slice(0, start) : [] };
  if (rows.length >= limit) around.after = { rows: held.slice(start + limit), toEnd };
  return { rows, around };
}

/**
 * A page's registration reaching over the rows kept after its window, so that a write to
 * one of them, or one placing a row among them, is planned against the page (and patches
 * its margin). Past a margin that runs to the list's end, every matching row is.
 */
export function reaching(list: ListDependency, margin: Neighbours): ListDependency {
  const after = margin.after;
  if (list.count < list.limit || !after) return list;
  const last = after.rows[after.rows.length - 1];
  if (after.toEnd) {
    const { last: _, ...every } = list;
    return every;
  }
  return last ? { ...list, last: sortValues(last, list.sort) } : list;
}

/**
 * A row that enters `resource` with `event`: its new row, or for a view the row the write
 * read for it (WriteEvent.views), if it shows the new row; undefined when unknown (an
 * update that moves a row into a view's page, a captured insert).
 */
function newRow(resource: Resource, event: WriteEvent): Row | undefined {
  if (resource.kind !== "view") return { ...event.new };
  const row = event.op === "insert" ? event.views?.rows[resource.name] : undefined;
  if (!row || !holds(row, event.new!)) return undefined;
  for (const join of resource.view.joins) if (!Array.isArray(row[join.as])) return undefined;
  return { ...row };
}

/** The base row after an update, keeping its joined arrays; undefined if a join key moved. */
function updatedBase(resource: Resource, current: Row, old: Row, updated: Row): Row | undefined {
  if (resource.kind === "table") return { ...updated };
  // Copied so that it takes the joined arrays on V8's fast path (see extend).
  const row: Row = extend(updated, {});
  for (const join of resource.view.joins) {
    if (!same(old[join.references], updated[join.references])) return undefined;
    row[join.as] = current[join.as];
  }
  return row;
}

/** The joins through which `resource` reads `table` (none for a table resource). */
function joinsOn(resource: Resource, table: string): JoinInfo[] {
  return resource.kind === "view" ? resource.view.joins.filter((j) => j.table === table) : [];
}

/**
 * A base row with a child row changed: removed from the array it left, added (in primary
 * key order, as the source returns them) to the one it entered.
 */
function patchJoined(
  row: Row,
  joins: JoinInfo[],
  event: WriteEvent,
  keys: PrimaryKeys,
): Row | undefined {
  let out = row;
  for (const join of joins) {
    const key = row[join.references];
    const array = row[join.as];
    if (!Array.isArray(array)) return undefined;
    const leaves = event.old !== undefined && same(event.old[join.foreignKey], key);
    const enters = event.new !== undefined && same(event.new[join.foreignKey], key);
    if (!leaves && !enters) continue;
    const childPk = keys.primaryKey(event.table);
    if (childPk === undefined) return undefined;
    let children = array as Row[];
    const held = children.find((c) => same(c[childPk], (event.old ?? event.new)![childPk]));
    // The child must be held as the event's old row if it leaves, and not held if it only enters.
    if (leaves ? !(held && holds(held, event.old!)) : held) return undefined;
    if (leaves) children = children.filter((c) => c !== held);
    if (enters) {
      const child = { ...event.new! };
      const sort: SortKey[] = [{ column: childPk, desc: false }];
      children = [...children];
      children.splice(insertionPoint(children, child, sort), 0, child);
    }
    out = { ...out, [join.as]: children };
  }
  return out;
}

/** Whether a cached row (a view's base row may carry joined arrays too) shows `old`'s values. */
function holds(cached: Row, old: Row): boolean {
  for (const column in old) {
    if (JSON.stringify(cached[column]) !== JSON.stringify(old[column])) return false;
  }
  return true;
}

function insertionPoint(rows: readonly Row[], row: Row, sort: readonly SortKey[]): number {
  let at = rows.length;
  while (at > 0 && compareRows(rows[at - 1]!, row, sort) > 0) at--;
  return at;
}

/**
 * Two key values name the same row: equal, or a URL's text and a number key in its
 * canonical spelling ("5" and 5). Anything looser ("05") is left to invalidation.
 */
function same(a: unknown, b: unknown): boolean {
  if (a === null || a === undefined || b === null || b === undefined) return false;
  if (typeof a === typeof b) return a === b;
  if (typeof a === "number" && typeof b === "string") return String(a) === b;
  if (typeof a === "string" && typeof b === "number") return a === String(b);
  return false;
}
