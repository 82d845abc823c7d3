import type { Resource, Row } from "../../core/data/query.ts";
import { neighbourRows, patchItem, patchList } from "../../core/deps/patch.ts";
import { type ListDependency, rowTag, type WriteEvent } from "../../core/deps/planner.ts";
import {
  asStored,
  canonicalInstant,
  instantDate,
  instantReading,
  isoInstant,
  isServerInstant,
  serverInstant,
} from "./forms.ts";
import type { NumberText } from "./shape-types.ts";
import { MAX_ROW_TAGS, type SqlShape, type SqlTable } from "./shapes.ts";

/**
 * Patch in place for query results (the Drizzle adapter, the raw SQL entry): a cached
 * result after a write, computed from its rows and the write's rows with the data API's
 * rules (deps/patch.ts), so that a page an insert shifts, or a row an update changes, is
 * still a hit. Pure, like those rules.
 *
 * Only where a result row is a table row in another dress: a select of every column of
 * one table, each of a kind whose driver form is known (text and numbers as capture
 * records them, also in a SQLite column of another declared type, "ordered", where the
 * driver gives the values as stored; PostgreSQL's timestamps as the server's text, or as
 * `Date`s where those hold them exactly, see forms.ts; a decimal or bytes may come in yet
 * another form), and a window the planner orders totally (its
 * sort ends with the primary key), or a primary-key lookup. Anything else is invalidated,
 * as before.
 */

/** How a cached result's rows are its table's rows (see `resultPlan`); kept in the entry's meta. */
export interface ResultPlan {
  table: string;
  primaryKey: string;
  /** Each result column's table column, by position. */
  columns: string[];
  /** Each result column's name in a row read by name. */
  names: (string | undefined)[];
  /** Each result column's kind: what form the driver's values must have to be patched. */
  kinds: PatchableKind[];
  /** The instant columns whose values a `Date` holds exactly (SqlTable's `dates`). */
  dates?: string[];
  /** The "ordered" columns whose numbers the driver gives as text (SqlTable's `numberTexts`). */
  numberTexts?: Record<string, NumberText>;
  /** The instant columns read in Prisma's pg form (SqlTable's `isoInstants`). */
  isoInstants?: Record<string, boolean>;
  /** A primary-key lookup: the key looked up (the result holds its row or nothing). */
  lookup?: string | number;
}

/** The kinds of column a patched result may hold. */
type PatchableKind = "text" | "number" | "float" | "instant" | "ordered";
const PATCHABLE = new Set<unknown>(["text", "number", "float", "instant", "ordered"]);

/** What a patched result is: its rows, in the driver's form, and its list registration. */
export interface PatchedResult {
  rows: unknown[];
  list?: ListDependency;
  tags: string[];
}

/**
 * The plan of a select whose results can be patched, or undefined. `table` is what the
 * application taught of the shape's table (its columns' kinds).
 */
export function resultPlan(shape: SqlShape, table: SqlTable | undefined): ResultPlan | undefined {
  const s = shape.lists;
  if (!s || shape.fallback || shape.widened.length > 0) return undefined;
  // Joined rows, subqueries and aggregates are not patched: their values are not the row's.
  if (s.joins || s.subqueries || s.grouping) return undefined;
  const kinds = table?.columns;
  if (!kinds) return undefined;
  const all = Object.keys(kinds);
  const columns = s.columns;
  if (columns.length !== all.length || new Set(columns).size !== columns.length) return undefined;
  for (const c of columns) if (c === undefined || !PATCHABLE.has(kinds[c])) return undefined;
  const plan: ResultPlan = {
    table: s.table,
    primaryKey: s.primaryKey,
    columns: columns as string[],
    names: [...s.names],
    kinds: columns.map((c) => kinds[c!] as PatchableKind),
  };
  const dates = table.dates?.filter((c) => columns.includes(c));
  if (dates?.length) plan.dates = dates;
  const texts = Object.entries(table.numberTexts ?? {}).filter(([c]) => columns.includes(c));
  if (texts.length > 0) plan.numberTexts = Object.fromEntries(texts);
  const iso = Object.entries(table.isoInstants ?? {}).filter(([c]) => columns.includes(c));
  if (iso.length > 0) plan.isoInstants = Object.fromEntries(iso);
  // A lookup's other conditions (`id = ? AND deleted = 0`) are not kept: not patched.
  const lookup =
    s.rowIds.length === 1 && s.lookupsAlone && s.disjuncts.length === 0 && s.offset === 0;
  if (lookup) return { ...plan, lookup: s.rowIds[0]! };
  const total = s.ordered && s.sort.at(-1)?.column === s.primaryKey;
  return s.rowIds.length === 0 && s.disjuncts.length === 1 && total ? plan : undefined;
}

/**
 * The result after `events`, or undefined when it cannot be told exactly. `list` is the
 * result's registered list (none for a lookup); `pages` and `rowsOf` show the other cached
 * pages of that list where the result is known to be no further along than the records
 * applied (`aligned`; see patchList), each page's rows as table rows. `exactFractions`:
 * whether a captured number with a fraction is the value stored (SQLite capture's
 * triggers installed by an earlier version wrote REALs with 15 significant digits), or
 * for which such numbers it is.
 */
export function patchResult(
  plan: ResultPlan,
  cached: { list: ListDependency | undefined; tags: readonly string[] },
  raw: readonly unknown[],
  events: readonly WriteEvent[],
  aligned: boolean,
  pages?: {
    key: string;
    of: Iterable<readonly [string, ListDependency]>;
    rowsOf: (key: string) => readonly Row[] | undefined;
  },
  exactFractions: boolean | ((value: number) => boolean) = false,
): PatchedResult | undefined {
  const exact = typeof exactFractions === "function" ? exactFractions : () => exactFractions;
  for (const event of events) {
    if (event.table !== plan.table) continue;
    for (const row of [event.old, event.new]) {
      if (!row) continue;
      if (plan.columns.some((c) => !(c in row))) return undefined; // captured otherwise
      const inexact = (c: string) => {
        const v = row[c];
        return typeof v === "number" && !Number.isInteger(v) && !exact(v);
      };
      if (plan.columns.some(inexact)) return undefined;
      // A number the driver would give as ISO text: not made. One it gives as `String(n)`
      // where the result's column holds other text is given as stored: the driver's result
      // form makes it so (Prisma's D1 adapter: ResultForm's `patched`).
      if (plan.columns.some((c) => numberText(plan, c) === "iso" && typeof row[c] === "number")) {
        return undefined;
      }
    }
  }
  const byColumn = columnRows(plan, raw);
  const forms = byColumn && driverForms(plan, byColumn);
  if (!byColumn || !forms) return undefined;
  const rows = canonical(plan, byColumn);
  if (!rows) return undefined;
  const list = cached.list;
  const resource: Resource = {
    kind: "table",
    name: plan.table,
    table: { name: plan.table, primaryKey: plan.primaryKey, columns: [] },
  };
  const keys = { primaryKey: (t: string) => (t === plan.table ? plan.primaryKey : undefined) };
  let out: Row[];
  let next: ListDependency | undefined;
  if (plan.lookup !== undefined) {
    if (rows.length > 1) return undefined;
    const patched = patchItem(resource, String(plan.lookup), rows[0], events, keys);
    if (!patched) return undefined;
    out = patched.row ? [patched.row] : [];
  } else {
    if (!list) return undefined;
    const near =
      aligned && pages ? () => neighbourRows(pages.key, list, pages.of, pages.rowsOf) : undefined;
    const patched =
      patchList(resource, list, rows, events, keys, undefined, aligned) ??
      (near ? patchList(resource, list, rows, events, keys, near(), aligned) : undefined);
    if (!patched) return undefined;
    out = patched.rows;
    next = patched.list;
  }
  // The event's rows too must be comparable (a change of the whole table has none).
  const comparable = canonical(plan, out);
  if (!comparable) return undefined;
  out = comparable;
  // A row in the driver's form is made after one the result held.
  const template = raw[0];
  if (out.length > 0 && template === undefined) return undefined;
  const dressed: unknown[] = [];
  for (const row of out) {
    const r = dressedAs(plan, forms, template, row);
    if (r === undefined) return undefined;
    dressed.push(r);
  }
  const tags = patchedTags(plan, cached.tags, rows, out);
  return { rows: dressed, tags, ...(next && { list: next }) };
}

/**
 * How the driver gives the numbers of a plan's column, where as text. A plan kept by an
 * earlier version in a shared tier lists its ISO columns as `isoNumbers`.
 */
function numberText(plan: ResultPlan, column: string): NumberText | undefined {
  const earlier = (plan as { isoNumbers?: unknown }).isoNumbers;
  if (Array.isArray(earlier) && earlier.includes(column)) return "iso";
  const text = plan.numberTexts?.[column];
  return text === "iso" || text === "decimal" ? text : undefined;
}

/** How the driver gives an instant column's values: the server's text, `Date`s, Prisma's text. */
type InstantForm = "text" | "date" | "iso";

/**
 * Whether the cached rows show that the driver returns values in the form patched rows are
 * given: a text column's as strings, a number column's as numbers (not libSQL's bigints or
 * text in its other `intMode`s), a float's finite, an instant's as the server's text or as
 * `Date`s that hold them exactly (see forms.ts), an "ordered" column's as numbers or
 * strings, with some value a number to show that the driver's integers are numbers. The
 * form of each instant column, by position (undefined where no value shows it: such a
 * column's values are not made), or undefined when the rows are not in such forms.
 */
function driverForms(
  plan: ResultPlan,
  rows: readonly Row[],
): (InstantForm | undefined)[] | undefined {
  if (!Array.isArray(plan.kinds) || plan.kinds.length !== plan.columns.length) return undefined;
  const forms: (InstantForm | undefined)[] = plan.columns.map(() => undefined);
  let numbers = false;
  for (const row of rows) {
    for (let i = 0; i < plan.columns.length; i++) {
      const column = plan.columns[i]!;
      const v = row[column];
      if (v === null) continue;
      const kind = plan.kinds[i];
      if (kind === "instant") {
        const reading = instantReading(column, plan);
        const form: InstantForm | undefined = isServerInstant(v)
          ? "text"
          : canonicalInstant(v, reading) === undefined
            ? undefined
            : v instanceof Date
              ? "date"
              : reading.isoText
                ? "iso"
                : undefined;
        if (!form || (forms[i] !== undefined && forms[i] !== form)) return undefined;
        forms[i] = form;
      } else if (kind === "number" || kind === "float") {
        if (typeof v !== "number" || (kind === "float" && !Number.isFinite(v))) return undefined;
        numbers = true;
      } else if (kind === "ordered") {
        // Numbers or text, as stored: a number shows the driver's integers are numbers.
        const text = numberText(plan, column);
        if (text) {
          if (asStored(v, text) === undefined) return undefined; // maybe a number, converted
        } else if (typeof v === "number") numbers = true;
        else if (typeof v !== "string") return undefined;
      } else if (typeof v !== "string") return undefined;
    }
  }
  // Numbers of an "ordered" column whose numbers come as text are not shown in their form.
  const needs = (k: PatchableKind, i: number) =>
    k === "number" || k === "float" || (k === "ordered" && !numberText(plan, plan.columns[i]!));
  const shown = numbers || !plan.kinds.some(needs);
  return shown ? forms : undefined;
}

/**
 * A cached result's rows as table rows (by column), their values as the planner compares
 * them (instants canonical, floats finite), or undefined when one cannot be read so.
 */
export function tableRows(plan: ResultPlan, raw: readonly unknown[]): Row[] | undefined {
  const rows = columnRows(plan, raw);
  // Not a page showing what may be a number the driver gave as text (ISO or decimal).
  const stored = (row: Row) =>
    plan.columns.every((c) => {
      const text = numberText(plan, c);
      return !text || row[c] === null || asStored(row[c], text) !== undefined;
    });
  return rows?.every(stored) ? canonical(plan, rows) : undefined;
}

function canonical(plan: ResultPlan, rows: Row[]): Row[] | undefined {
  const instants: string[] = [];
  const floats: string[] = [];
  plan.columns.forEach((c, i) => {
    if (plan.kinds[i] === "instant") instants.push(c);
    else if (plan.kinds[i] === "float") floats.push(c);
  });
  if (instants.length === 0 && floats.length === 0) return rows;
  const out: Row[] = [];
  for (const row of rows) {
    const r = { ...row };
    for (const c of instants) {
      if (r[c] === null) continue;
      const v = canonicalInstant(r[c], instantReading(c, plan));
      if (v === undefined) return undefined;
      r[c] = v;
    }
    for (const c of floats) {
      if (r[c] !== null && (typeof r[c] !== "number" || !Number.isFinite(r[c]))) return undefined;
    }
    out.push(r);
  }
  return out;
}

/** A cached result's rows by table column, values as the driver gave them. */
function columnRows(plan: ResultPlan, raw: readonly unknown[]): Row[] | undefined {
  const rows: Row[] = [];
  for (const r of raw) {
    if (typeof r !== "object" || r === null) return undefined;
    const byIndex = Array.isArray(r) || typeof (r as { length?: unknown }).length === "number";
    const row: Row = {};
    for (let i = 0; i < plan.columns.length; i++) {
      const name = plan.names[i];
      if (!byIndex && (name === undefined || plan.names.indexOf(name) !== i)) return undefined;
      const value = (r as Record<string | number, unknown>)[byIndex ? i : name!];
      if (value === undefined) return undefined;
      row[plan.columns[i]!] = value;
    }
    rows.push(row);
  }
  return rows;
}

/**
 * `row` in the form of `template`, a row of the driver's result: an array by position, or
 * an object (libSQL's rows carry indexes, a length and names) with the same properties.
 */
function dressedAs(
  plan: ResultPlan,
  forms: readonly (InstantForm | undefined)[],
  template: unknown,
  row: Row,
): unknown {
  let made = true;
  const value = (i: number) => {
    const v = row[plan.columns[i]!];
    if (plan.kinds[i] !== "instant" || v === null) return v;
    // In the form the cached rows show; with none shown, not made.
    const dressed =
      typeof v !== "string"
        ? undefined
        : forms[i] === "text"
          ? serverInstant(v)
          : forms[i] === "date"
            ? instantDate(v)
            : forms[i] === "iso"
              ? isoInstant(v)
              : undefined;
    if (dressed === undefined) made = false;
    return dressed;
  };
  if (Array.isArray(template)) {
    const out = plan.columns.map((_, i) => value(i));
    return made ? out : undefined;
  }
  if (typeof template !== "object" || template === null) return undefined;
  const out = Object.create(Object.getPrototypeOf(template)) as object;
  for (const p of Object.getOwnPropertyNames(template)) {
    const d = Object.getOwnPropertyDescriptor(template, p)!;
    if (!("value" in d)) return undefined;
    let v = d.value as unknown;
    if (/^(0|[1-9]\d*)$/.test(p)) {
      const i = Number(p);
      if (i >= plan.columns.length) return undefined;
      v = value(i);
    } else if (p !== "length") {
      const i = plan.names.indexOf(p);
      if (i < 0 || plan.names.lastIndexOf(p) !== i) return undefined;
      v = value(i);
    }
    Object.defineProperty(out, p, { ...d, value: v });
  }
  return made ? out : undefined;
}

/**
 * The tags of a patched result: those of the cached one, less the row tags of rows it no
 * longer holds, plus those of rows it now holds (the looked-up key's stays).
 */
function patchedTags(
  plan: ResultPlan,
  tags: readonly string[],
  before: readonly Row[],
  after: readonly Row[],
): string[] {
  const tagOf = (r: Row) => rowTag(plan.table, r[plan.primaryKey]);
  const kept = new Set(plan.lookup === undefined ? [] : [rowTag(plan.table, plan.lookup)]);
  const gone = new Set(before.map(tagOf).filter((t) => !kept.has(t)));
  const out = tags.filter((t) => !gone.has(t));
  if (after.length <= MAX_ROW_TAGS) out.push(...after.map(tagOf));
  return [...new Set(out)];
}
