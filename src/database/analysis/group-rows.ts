import type { WriteEvent } from "../../core/deps/planner.ts";
import { compareValues, matches } from "../../core/deps/predicate.ts";
import { CARRIED } from "./group-statements.ts";
import {
  closesOn,
  type GroupPlan,
  identity,
  integer,
  keyLike,
  type Presence,
  positional,
  type Restriction,
  rowsByKey,
  sameKey,
  type sharedColumns,
} from "./groups.ts";
import { reader } from "./rows.ts";

/**
 * How a keyed statement's rows come into a held result of a group plan (groups.ts): its
 * rows merged with the held ones (the per-viewer columns each result keeps of its own),
 * and new base rows placed where they sort in a window.
 */

/**
 * A keyed statement's rows as `held`'s result has them: its carried columns dropped, the
 * columns a parameter enters taken from the held row, or told by `events` (a presence).
 * New rows of `inserted` keys come apart to be placed (`placedRows`), where the statement
 * ran with `held`'s own parameters (`own`), none enters the result, or each such column is
 * a presence told without them (see `viewerColumns`; `probes`: the presences whose probe
 * the statement carries after the base columns). Undefined where a row cannot be read so.
 */
export function mergedRows(
  plan: GroupPlan,
  held: readonly unknown[],
  fresh: readonly unknown[],
  events: readonly WriteEvent[],
  shared: NonNullable<ReturnType<typeof sharedColumns>>,
  entering: Entering = {},
): { rows: unknown[]; entering: { row: unknown; key: unknown }[]; all: unknown[] } | undefined {
  const {
    inserted = [],
    own = false,
    probes = [],
    closed,
    sliding = false,
    written = [],
  } = entering;
  const read = reader(plan.columns, plan.names);
  const byKey = rowsByKey(plan, held);
  if (!byKey) return undefined;
  const cell = cellOf(plan);
  const out: unknown[] = [];
  const placed: { row: unknown; key: unknown }[] = [];
  // Every row, in the statement's order.
  const all: unknown[] = [];
  for (const row of fresh) {
    const byPosition = positional(row);
    const values = byPosition ? Array.from(row as ArrayLike<unknown>) : undefined;
    const named = byPosition ? undefined : { ...(row as Record<string, unknown>) };
    // The base columns it carries, then its probes: its last ones.
    const carried = new Map<string, unknown>();
    const probed = new Map<Presence, unknown>();
    const n = plan.carried.length + probes.length;
    if (values && values.length !== plan.names.length + n) return undefined;
    for (let i = 0; i < n; i++) {
      const v = values ? values[values.length - n + i] : named?.[`${CARRIED}${i}`];
      if (named) delete named[`${CARRIED}${i}`];
      if (i < plan.carried.length) carried.set(plan.carried[i]!, v);
      else probed.set(probes[i - plan.carried.length]!, v);
    }
    if (values) values.length -= n;
    const bare = values ?? named!;
    const key = carried.get(plan.primaryKey);
    // A base row the record wrote in or out is new whatever held row shares its name.
    const renewed = written.some((k) => sameKey(k, key));
    const before = renewed ? undefined : byKey.get(identity(read(bare, plan.key)) ?? "");
    const enters = before === undefined && (sliding || inserted.some((k) => sameKey(k, key)));
    const base = (p: Presence) => (carried.has(p.from) ? carried.get(p.from) : read(bare, p.from));
    if (before === undefined) {
      const column = (c: string) => (carried.has(c) ? carried.get(c) : read(bare, c));
      if (!enters && closed && closesOn(closed, column)) return undefined;
      all.push(bare);
      if (!enters) out.push(bare);
      else if (
        own ||
        shared.params.length === 0 ||
        viewerColumns(plan, shared.params, bare, held, events, base, probed, entering)
      ) {
        placed.push({ row: bare, key });
      } else return undefined;
      continue;
    }
    for (const at of shared.params) {
      if (!cell.readable(bare, at)) return undefined;
      const presence = shared.told.get(at);
      const was = cell.get(before, at);
      const value = presence ? told(presence, was, base(presence), events) : was;
      if (value === undefined) return undefined;
      cell.set(bare, at, value);
    }
    out.push(bare);
    all.push(bare);
  }
  return { rows: out, entering: placed, all };
}

/** What `mergedRows` is told of new base rows (see `viewerColumns`). */
export interface Entering {
  /** The rows not held that may enter the result: none may come back (see `closedTo`). */
  closed?: Restriction;
  /** The keys of the new base rows (see `insertedKeys`). */
  inserted?: readonly unknown[];
  /** Every row the result does not hold enters (rows from past a window's end, see window-slides.ts). */
  sliding?: boolean;
  /**
   * Keys of base rows the record inserted or deleted (a window read again whole): a row of
   * one is not the held row of the same name (a slug deleted and written again), it enters.
   */
  written?: readonly unknown[];
  /** Whether the statement ran with the held result's own parameters. */
  own?: boolean;
  /** The presences whose probes the statement carries after its base columns. */
  probes?: readonly Presence[];
  /** The rows of presences' tables read for link values (see `linkedRowsStatement`). */
  linked?: ReadonlyMap<Presence, ReadonlyMap<string, readonly Record<string, unknown>[]>>;
  /** Filled with the link values whose rows would tell a presence no other way could. */
  asked?: { presence: Presence; link: unknown }[];
}

/**
 * The per-viewer columns (`params`) of a new base row a statement run with another result's
 * parameters returned, put in `row` as `held`'s own parameters give them; false where one
 * cannot be told. Each must be a presence, whose value depends on its link's value and the
 * parameters alone: a held row with the same link value has it (then `events` tell it on),
 * and a probe that found no row of its table for that value says it is false for everyone.
 */
function viewerColumns(
  plan: GroupPlan,
  params: readonly number[],
  row: unknown,
  held: readonly unknown[],
  events: readonly WriteEvent[],
  base: (p: Presence) => unknown,
  probed: ReadonlyMap<Presence, unknown>,
  entering: Entering,
): boolean {
  const read = reader(plan.columns, plan.names);
  const cell = cellOf(plan);
  // Every flag looked at, so that each one rows could tell is asked for at once.
  let all = true;
  for (const at of params) {
    const presence = plan.presences.find((p) => p.output === at);
    if (!presence || !cell.readable(row, at)) return false;
    const link = base(presence);
    if (!keyLike(link)) return false;
    const twin = held.find((h) => sameKey(read(h, presence.from), link));
    const like = cell.get(row, at);
    let value: unknown;
    if (twin !== undefined) value = told(presence, cell.get(twin, at), link, events);
    else if (absent(probed.get(presence))) value = flagAs(like, false);
    else {
      const rows = entering.linked?.get(presence)?.get(identity(link) ?? "");
      const present = rows && presentIn(presence, rows);
      if (present !== undefined) value = flagAs(like, present);
      else if (linkable(presence)) entering.asked?.push({ presence, link });
    }
    if (value === undefined) all = false;
    else cell.set(row, at, value);
  }
  return all;
}

/** The presences whose probes a keyed statement for new base rows carries (see `viewerColumns`). */
export function probesOf(
  plan: GroupPlan,
  shared: NonNullable<ReturnType<typeof sharedColumns>>,
): Presence[] {
  return plan.presences.filter((p) => shared.params.includes(p.output));
}

/** Whether a probe's value says its table has no row (SQLite's 0, PostgreSQL's false). */
function absent(v: unknown): boolean {
  return v === false || v === 0 || v === 0n || v === "0";
}

/**
 * Whether a presence's rows read by its link value can tell it: its other conditions are
 * equalities to integers (a viewer's id), compared here as the database would.
 */
export function linkable(p: Presence): boolean {
  return p.filters.every((f) => f.op === "eq" && integer(f.value) !== undefined);
}

/** Whether one of `rows` (its table's rows of one link value) matches `p`'s conditions. */
function presentIn(p: Presence, rows: readonly Record<string, unknown>[]): boolean | undefined {
  if (!linkable(p)) return undefined;
  let present = false;
  for (const row of rows) {
    let all = true;
    for (const f of p.filters) {
      const v = integer(row[f.column]);
      if (v === undefined) return undefined;
      if (v !== integer((f as { value: unknown }).value)) all = false;
    }
    present ||= all;
  }
  return present;
}

/** `present` in the form `like` (a presence's value) has; undefined for a form not known. */
function flagAs(like: unknown, present: boolean): unknown {
  if (typeof like === "boolean") return present;
  if (typeof like === "number" && (like === 0 || like === 1)) return present ? 1 : 0;
  if (typeof like === "bigint" && (like === 0n || like === 1n)) return present ? 1n : 0n;
  if (like === "0" || like === "1") return present ? "1" : "0";
  return undefined;
}

/** A result column by position, in a row of values or of names (unique names only). */
function cellOf(plan: GroupPlan) {
  const name = (at: number) => plan.names[at];
  const unique = (at: number) => {
    const n = name(at);
    return n !== undefined && plan.names.indexOf(n) === plan.names.lastIndexOf(n);
  };
  return {
    readable: (row: unknown, at: number) => positional(row) || unique(at),
    get: (row: unknown, at: number) =>
      positional(row)
        ? (row as ArrayLike<unknown>)[at]
        : (row as Record<string, unknown>)[name(at)!],
    set(row: unknown, at: number, value: unknown) {
      if (Array.isArray(row)) row[at] = value;
      else (row as Record<string, unknown>)[name(at)!] = value;
    },
  };
}

/**
 * `held`'s rows after `events`, each a write to a table only presences and tallies read
 * (`plan.told`: a favourite, a follow), told by the write's rows with no statement; undefined
 * where some cannot be. A tally adds the write's rows to its count: only for a result whose
 * load saw the database exactly (`exact`: no change it shows is still to come as a write).
 */
export function toldRows(
  plan: GroupPlan,
  held: readonly unknown[],
  events: readonly WriteEvent[],
  exact: boolean,
): unknown[] | undefined {
  const values = toldValues(plan, events, exact);
  if (!values) return undefined;
  const read = reader(plan.columns, plan.names);
  const cell = cellOf(plan);
  const out: unknown[] = [];
  for (const row of held) {
    const copy = positional(row)
      ? Array.from(row as ArrayLike<unknown>)
      : { ...(row as Record<string, unknown>) };
    for (const [p, tell] of values) {
      if (!cell.readable(copy, p.output)) return undefined;
      const value = tell(p, cell.get(row, p.output), read(row, p.from), events);
      if (value === undefined) return undefined;
      cell.set(copy, p.output, value);
    }
    out.push(copy);
  }
  return out;
}

/**
 * The presences and tallies `events` change, each with how it is told, where `toldRows`
 * can tell them: every event a write to `plan.told`, every link's column shown, a tally
 * only for an `exact` result. Undefined otherwise.
 */
export function toldValues(plan: GroupPlan, events: readonly WriteEvent[], exact: boolean) {
  if (events.length === 0 || !events.every((e) => plan.told.includes(e.table))) return undefined;
  const written = new Set(events.map((e) => e.table));
  const values = [
    ...plan.presences.filter((p) => written.has(p.table)).map((p) => [p, told] as const),
    ...plan.tallies.filter((t) => written.has(t.table)).map((t) => [t, tallied] as const),
  ];
  const tallies = values.filter(([, tell]) => tell === tallied);
  if (tallies.length > 0 && (!exact || tallies.some(([t]) => repeats(t, events)))) {
    return undefined;
  }
  return values.every(([p]) => plan.columns.includes(p.from)) ? values : undefined;
}

/**
 * Whether `events` write one row of `t`'s table twice the same way (a row deleted twice:
 * SQLite's REPLACE with recursive triggers is recorded so): a tally would count it twice.
 */
function repeats(t: Presence, events: readonly WriteEvent[]): boolean {
  const seen = new Set<string>();
  for (const [row, by] of rowsOf(t, events)) {
    const id = `${by}:${JSON.stringify(row ?? null, (_, v) => (typeof v === "bigint" ? `${v}n` : v))}`;
    if (seen.has(id)) return true;
    seen.add(id);
  }
  return false;
}

/** A tally's value after `events`, in the form `was` has; undefined where it cannot be told. */
function tallied(t: Presence, was: unknown, base: unknown, events: readonly WriteEvent[]): unknown {
  if (!keyLike(base)) return undefined;
  let delta = 0;
  for (const [row, by] of rowsOf(t, events)) {
    if (!row) return undefined;
    if (sameKey(row[t.column], base) && matches(row, t.filters)) delta += by;
  }
  if (delta === 0) return was;
  if (typeof was === "number" && Number.isSafeInteger(was) && was + delta >= 0) return was + delta;
  if (typeof was === "bigint" && was + BigInt(delta) >= 0n) return was + BigInt(delta);
  const now = integer(was) === undefined ? -1n : BigInt(was as string) + BigInt(delta);
  return typeof was === "string" && now >= 0n ? String(now) : undefined;
}

/**
 * The rows `events` write to `p`'s table, each with +1 (now there) or -1 (gone): an update
 * is its old row's delete, then its new row's insert. A row without the columns `p` reads
 * comes as undefined (it cannot be told).
 */
function rowsOf(p: Presence, events: readonly WriteEvent[]): [WriteEvent["old"], number][] {
  const columns = [p.column, ...p.filters.map((f) => f.column)];
  const out: [WriteEvent["old"], number][] = [];
  for (const e of events) {
    if (e.table !== p.table) continue;
    const rows: [WriteEvent["old"], number][] =
      e.op === "insert"
        ? [[e.new, 1]]
        : e.op === "delete"
          ? [[e.old, -1]]
          : [
              [e.old, -1],
              [e.new, 1],
            ];
    for (const [row, by] of rows) {
      out.push([row && columns.every((c) => c in row) ? row : undefined, by]);
    }
  }
  return out;
}

/** A presence's value after `events`, in the form `was` has; undefined where it cannot be told. */
function told(p: Presence, was: unknown, base: unknown, events: readonly WriteEvent[]): unknown {
  if (!keyLike(base)) return undefined;
  let present: boolean | undefined;
  for (const [row, by] of rowsOf(p, events)) {
    if (!row) return undefined;
    if (sameKey(row[p.column], base) && matches(row, p.filters)) present = by > 0;
  }
  return present === undefined ? was : flagAs(was, present);
}

/**
 * The keys of the base rows `events` insert, where a result of `plan` can take them in:
 * keyed (its statement tells the new rows), ordered from its first row, and `whereless`
 * (its statement with no WHERE: each row it returns for such a key is one of its rows,
 * but for its window). Undefined where there are none, or they cannot be taken in.
 */
export function insertedKeys(
  plan: GroupPlan,
  events: readonly WriteEvent[],
  whereless: boolean,
): unknown[] | undefined {
  const inserts = events.filter((e) => e.table === plan.table && e.op === "insert");
  if (inserts.length === 0 || plan.window?.offset !== 0 || !whereless) return undefined;
  // A subquery of the base itself (a count of replies) may change held rows too.
  if (plan.feeds.some((f) => f.table === plan.table && f.ops === "any")) return undefined;
  return inserts.map((e) => e.new?.[plan.primaryKey]);
}

/**
 * `rows` with `entering` (new base rows the statement returned, each with its key) placed
 * where they sort, the window's last rows falling out past its limit; undefined where a
 * place cannot be told (a sort value not shown, NULL, or equal to a held row's up to a key
 * the result does not show).
 */
export function placedRows(
  plan: GroupPlan,
  rows: readonly unknown[],
  entering: readonly { row: unknown; key: unknown }[],
): unknown[] | undefined {
  const window = plan.window;
  if (window?.offset !== 0) return undefined;
  const read = reader(plan.columns, plan.names);
  const keys = new Map<unknown, unknown>(entering.map((e) => [e.row, e.key]));
  const shown = (c: string) => plan.columns.includes(c);
  const value = (row: unknown, column: string) =>
    shown(column) ? read(row, column) : column === plan.primaryKey ? keys.get(row) : undefined;
  const before = (a: unknown, b: unknown): boolean | undefined => {
    for (const k of window.sort) {
      const x = value(a, k.column);
      const y = value(b, k.column);
      if (x === undefined || y === undefined || x === null || y === null) return undefined;
      const c = compareValues(x, y);
      if (c !== 0) return k.desc ? c > 0 : c < 0;
    }
    return undefined;
  };
  const out = [...rows];
  for (const e of entering) {
    let at = out.length;
    for (const [i, row] of out.entries()) {
      const first = before(e.row, row);
      if (first === undefined) return undefined;
      if (first) {
        at = i;
        break;
      }
    }
    if (at >= window.limit) continue;
    out.splice(at, 0, e.row);
    if (out.length > window.limit) out.length = window.limit;
  }
  return out;
}
