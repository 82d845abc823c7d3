import type { Row } from "../../core/data/query.ts";
import type { WriteEvent } from "../../core/deps/planner.ts";
import type { NumberText, SqlColumnKind } from "./shape-types.ts";

/**
 * Values as the query caches' planner compares them, whatever form they came in.
 *
 * PostgreSQL timestamps ("instant" columns). The same instant comes in two
 * forms: capture records `2024-05-17T09:41:07.123Z` (fixed width per column, see the
 * PostgreSQL dialect's isoText), while drizzle-orm's postgres.js driver hands the query
 * the server's text, `2024-05-17 09:41:07.123+00` (DateStyle ISO, trailing zeros of the
 * fraction dropped). Both become one canonical form, `2024-05-17T09:41:07.123000Z`, whose
 * text order is time order; `timestamp` without time zone the same without the `Z`.
 *
 * Only UTC is read: text at another offset (a session whose TimeZone is not UTC), a year
 * before 1 or after 9999, or infinity has no canonical form, so a result showing one is
 * neither ordered by it nor patched, and a captured change carrying one changes its table
 * as a whole. A `Date` (node-postgres, postgres.js without drizzle-orm's parsers) holds
 * milliseconds: it has one only for a column whose values have no more digits
 * (SqlTable's `dates`, a `timestamptz(3)` or less), where both drivers give the instant
 * exactly; of another column, microseconds may be lost, so none.
 *
 * Prisma's pg adapter gives the server's text with a `T` and its offset replaced by
 * `+00:00` (`2024-05-17T09:41:07.123+00:00`), a `timestamp` without time zone with
 * `+00:00` added: the instant only in a session whose TimeZone is UTC, so that form is read
 * only where the application's adapter says so (SqlTable's `isoInstants`).
 */

const CAPTURED = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z?)$/;
const SERVER = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(\+00)?$/;

const ISO_TEXT = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00:00$/;

/** Which other forms than the two texts a column's instants are read in (SqlTable's lists). */
export interface InstantReading {
  /** A `Date` holds the column's values exactly (`dates`). */
  dates?: boolean;
  /** Prisma's pg text, in a UTC session (`isoInstants`); `zoned`: a timestamptz. */
  isoText?: { zoned: boolean };
}

/**
 * The canonical form of a timestamp in either text form, or undefined; in the forms
 * `reading` allows too.
 */
export function canonicalInstant(value: unknown, reading: InstantReading = {}): string | undefined {
  if (value instanceof Date) return reading.dates ? dateInstant(value) : undefined;
  if (typeof value !== "string") return undefined;
  if (reading.isoText) {
    const iso = ISO_TEXT.exec(value);
    if (iso) {
      if (iso[1]!.startsWith("0000")) return undefined;
      const zone = reading.isoText.zoned ? "Z" : "";
      const c = `${iso[1]}T${iso[2]}.${(iso[3] ?? "").padEnd(6, "0")}${zone}`;
      // As the server writes it: no trailing zero in the fraction.
      return isoInstant(c) === value ? c : undefined;
    }
  }
  const m = CAPTURED.exec(value) ?? SERVER.exec(value);
  if (!m || m[1]!.startsWith("0000")) return undefined;
  const zone = m[4] === "Z" || m[4] === "+00" ? "Z" : "";
  return `${m[1]}T${m[2]}.${(m[3] ?? "").padEnd(6, "0")}${zone}`;
}

/** How `column`'s instants are read, by a table's (a shape's, a plan's) lists of columns. */
export function instantReading(
  column: string,
  of: {
    dates?: readonly string[] | undefined;
    isoInstants?: Readonly<Record<string, boolean>> | undefined;
  },
): InstantReading {
  const reading: InstantReading = {};
  if (Array.isArray(of.dates) && of.dates.includes(column)) reading.dates = true;
  const zoned =
    of.isoInstants && Object.hasOwn(of.isoInstants, column) ? of.isoInstants[column] : undefined;
  if (typeof zoned === "boolean") reading.isoText = { zoned };
  return reading;
}

/** A `Date`'s canonical form (always UTC, whole milliseconds), or undefined out of range. */
function dateInstant(date: Date): string | undefined {
  const year = date.getUTCFullYear();
  if (!(year >= 1 && year <= 9999)) return undefined; // NaN for an invalid Date
  // toISOString: `2024-05-17T09:41:07.123Z` for the years 0 to 9999.
  return `${date.toISOString().slice(0, 23)}000Z`;
}

/**
 * A canonical instant as the `Date` node-postgres and postgres.js give for it, or undefined
 * where none holds it (a time without zone, or finer than milliseconds).
 */
export function instantDate(canonical: string): Date | undefined {
  if (!canonical.endsWith("000Z")) return undefined;
  const date = new Date(`${canonical.slice(0, 23)}Z`);
  return dateInstant(date) === canonical ? date : undefined;
}

/** A canonical instant as Prisma's pg adapter gives it (`2024-05-17T09:41:07.123+00:00`). */
export function isoInstant(canonical: string): string {
  const server = serverInstant(canonical).replace(" ", "T");
  return canonical.endsWith("Z") ? `${server.slice(0, -3)}+00:00` : `${server}+00:00`;
}

/** A canonical instant as the server's text (`2024-05-17 09:41:07.123+00`). */
export function serverInstant(canonical: string): string {
  const zone = canonical.endsWith("Z");
  const fraction = canonical.slice(20, 26).replace(/0+$/, "");
  return `${canonical.slice(0, 10)} ${canonical.slice(11, 19)}${fraction && `.${fraction}`}${zone ? "+00" : ""}`;
}

/** Whether `value` is a timestamp in the server's text form, as serverInstant writes it. */
export function isServerInstant(value: unknown): boolean {
  if (typeof value !== "string" || !SERVER.test(value)) return false;
  const c = canonicalInstant(value);
  return c !== undefined && serverInstant(c) === value;
}

/** `Date#toISOString()`'s text, as Prisma's better-sqlite3 adapter gives a stored number. */
const ISO_OF_NUMBER = /^(?:\d{4}|[+-]\d{6})-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/**
 * A value of a column whose numbers the driver gives as text (`numberText`, SqlTable's
 * `numberTexts`) as stored, or undefined where it may not be: text of any other form is the
 * stored text; text of that form may be a number. A number is as stored where the driver
 * gives some numbers as they are ("decimal"); "iso" never gives one.
 */
export function asStored(value: unknown, numberText: NumberText): string | number | undefined {
  if (typeof value === "number") return numberText === "decimal" ? value : undefined;
  if (typeof value !== "string") return undefined;
  // `String(number)` is the one text of each number, NaN and the infinities included.
  const number = numberText === "iso" ? ISO_OF_NUMBER.test(value) : String(Number(value)) === value;
  return number ? undefined : value;
}

/**
 * A captured change with its values in the forms the planner compares (`kinds`, its
 * table's column kinds): instants canonical, floats finite. A value that has none (NaN,
 * infinity, a timestamp at another offset) drops the rows: the change then concerns its
 * table as a whole.
 */
export function comparableEvent(
  event: WriteEvent,
  kinds: Readonly<Record<string, SqlColumnKind>> | undefined,
): WriteEvent {
  if (!kinds) return event;
  const converted = (row: Row | undefined): Row | undefined | null => {
    if (!row) return row;
    let out: Row | undefined;
    for (const [column, kind] of Object.entries(kinds)) {
      const v = row[column];
      if (v === null || v === undefined) continue;
      if (kind === "float" && (typeof v !== "number" || !Number.isFinite(v))) return null;
      if (kind !== "instant") continue;
      const c = canonicalInstant(v);
      if (c === undefined) return null;
      if (c !== v) {
        out ??= { ...row };
        out[column] = c;
      }
    }
    return out ?? row;
  };
  const old = converted(event.old);
  const neu = converted(event.new);
  if (old === null || neu === null) return { table: event.table, op: event.op };
  if (old === event.old && neu === event.new) return event;
  return { ...event, ...(old && { old }), ...(neu && { new: neu }) };
}
