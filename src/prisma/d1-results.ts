import type { ColumnType, SqlResultSet } from "@prisma/driver-adapter-utils";
import type { Conversion } from "../query-cache/columns.ts";

/**
 * Results as @prisma/adapter-d1 gives them (7.x: its getColumnTypes and mapRow), which types
 * each column by the values of each result: the first value that is not null decides, text
 * like a date (ISO 8601 or SQLite's `YYYY-MM-DD HH:MM:SS`) DateTime and other text Text;
 * after numbers, any text of the other form makes it Text; a column of nulls is Int32. A Text
 * column's numbers come as `String(number)`; every other value as D1 gives it (a number as a
 * number). So a number stored in a column holding other text is text in that result alone.
 */

/** What the adapter converts of any SQLite column, whatever its declared type. */
export const d1Conversion = (): Conversion => "numbers-as-text";

// ColumnTypeEnum's values (@prisma/driver-adapter-utils).
const INT32 = 0 as ColumnType;
const TEXT = 7 as ColumnType;
const DATE_TIME = 10 as ColumnType;
const UNKNOWN_NUMBER = 128 as ColumnType;

/** The types a D1 result of numbers and text has: a patch may make such a result again. */
export const D1_PATCHABLE: ReadonlySet<ColumnType> = new Set([
  INT32,
  TEXT,
  DATE_TIME,
  UNKNOWN_NUMBER,
]);

// The adapter's own patterns of a date.
const ISO_DATE =
  /^(\d{4}-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-5]\d\.\d+([+-][0-2]\d:[0-5]\d|Z))$|^(\d{4}-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-5]\d([+-][0-2]\d:[0-5]\d|Z))$|^(\d{4}-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d([+-][0-2]\d:[0-5]\d|Z))$/;
const SQLITE_DATE = /^\d{4}-[0-1]\d-[0-3]\d [0-2]\d:[0-5]\d:[0-5]\d$/;

/**
 * A kept D1 result with `rows` in their stored form (a patch's): the column types the
 * adapter would give them and their numbers as it gives them; an empty result has no
 * columns, as the adapter's. Undefined for a value that is neither text nor a number.
 */
export function d1Result(kept: unknown, rows: unknown[]): SqlResultSet | undefined {
  const result = kept as SqlResultSet;
  if (rows.length === 0) return { ...result, columnNames: [], columnTypes: [], rows: [] };
  const width = result.columnNames.length;
  const columnTypes: ColumnType[] = [];
  for (let i = 0; i < width; i++) {
    let type: ColumnType | undefined;
    for (const row of rows) {
      const v = (row as unknown[])[i];
      if (v === null) continue;
      let inferred: ColumnType;
      if (typeof v === "number") inferred = UNKNOWN_NUMBER;
      else if (typeof v === "string") {
        inferred = ISO_DATE.test(v) || SQLITE_DATE.test(v) ? DATE_TIME : TEXT;
      } else return undefined;
      if (type === undefined || inferred === TEXT) type = inferred;
      if (inferred !== UNKNOWN_NUMBER) break;
    }
    columnTypes.push(type ?? INT32);
  }
  const out = rows.map((row) =>
    (row as unknown[]).map((v, i) =>
      typeof v === "number" && columnTypes[i] === TEXT ? String(v) : v,
    ),
  );
  return { ...result, columnTypes, rows: out };
}
