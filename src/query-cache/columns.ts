import type {
  NumberText,
  SqlColumnKind,
  SqlDialect,
  SqlTable,
  TextCollation,
} from "../database/analysis/shapes.ts";
import type { CatalogColumn } from "../database/client.ts";

/**
 * How the planner may compare a column's values, by its declared SQL type (`integer`,
 * `text`, `varchar(20)`...): as the driver returns them and as the database compares them.
 * 64-bit integers and decimals come back as text from the PostgreSQL drivers: "other",
 * never compared. PostgreSQL's double precision is a "float" (it may hold NaN, above every
 * number there) and its timestamps "instant"s (see database/analysis/forms.ts); SQLite's dates are
 * whatever text or numbers the application stores: "ordered" (ordered by as SQLite orders
 * them, never compared with a query's value).
 */
export function sqlTypeKind(declared: string, dialect: SqlDialect): SqlColumnKind {
  const type = declared.toLowerCase();
  const numbers =
    dialect === "sqlite"
      ? /^(integer|int|real)$/
      : /^(integer|int|int4|smallint|int2|serial|smallserial)$/;
  if (numbers.test(type)) return "number";
  // Not char(n): PostgreSQL pads it and compares without the padding.
  if (/^(text|varchar|character varying)(\(\d+\))?$/.test(type)) return "text";
  // SQLite: any other type but BLOB's affinity (BLOB, or none: such a column may hold bytes,
  // which capture records as hex text and SQLite orders after all text).
  if (dialect !== "postgres") return type === "" || type.includes("blob") ? "other" : "ordered";
  if (/^(double precision|float8)$/.test(type)) return "float";
  if (/^(timestamp|timestamptz)( ?\(\d\))?( with(out)? time zone)?$/.test(type)) return "instant";
  return "other";
}

/**
 * Which values of a SQLite column of another declared type ("ordered") a driver gives in
 * another form than stored: none; only its numbers, as `Date#toISOString()` text (Prisma's
 * better-sqlite3 adapter, for a DATETIME) or as `String(number)` where the result's column
 * holds other text (Prisma's D1 adapter, also for an INTEGER or REAL column, which may hold
 * text), so it is ordered by where its values show text of another form (SqlTable's
 * `numberTexts`); or any ("other").
 */
export type Conversion = "none" | "numbers-as-iso" | "numbers-as-text" | "any";

const NUMBER_TEXTS: Partial<Record<Conversion, NumberText>> = {
  "numbers-as-iso": "iso",
  "numbers-as-text": "decimal",
};

/**
 * What the catalog's columns tell the planner: each one's kind by its declared type, and
 * how its text compares with no `collate`. `converts`: the driver
 * gives some values in another form than stored (see StatementDatabase.converts), so a
 * column of SQLite's "ordered" kind is "other"; or, by its declared type, which (see
 * Conversion). `isoInstants` lists every instant column (whether a timestamptz): a query
 * cache keeps it only where its driver gives them so (StatementDatabase.isoInstants).
 * `unique`: the columns whose values name their rows (CatalogColumn's `unique`).
 */
export function catalogKinds(
  catalog: readonly CatalogColumn[],
  dialect: SqlDialect,
  converts: boolean | ((declared: string) => Conversion) = false,
): Required<Pick<SqlTable, "columns" | "collations" | "dates" | "numberTexts" | "isoInstants">> &
  Pick<SqlTable, "unique"> {
  const columns: Record<string, SqlColumnKind> = {};
  const collations: Record<string, TextCollation> = {};
  const dates: string[] = [];
  const numberTexts: Record<string, NumberText> = {};
  const isoInstants: Record<string, boolean> = {};
  const unique: string[] = [];
  for (const c of catalog) {
    if (c.unique) unique.push(c.name);
    const kind = sqlTypeKind(c.type, dialect);
    const conversion =
      typeof converts === "function" ? converts(c.type) : converts ? "any" : "none";
    columns[c.name] = kind === "ordered" && conversion === "any" ? "other" : kind;
    // An INTEGER or REAL column may hold text too (SQLite keeps text that is not a number).
    const text = NUMBER_TEXTS[conversion];
    if ((kind === "ordered" || kind === "number") && text) numberTexts[c.name] = text;
    if (c.collation !== undefined) collations[c.name] = c.collation;
    if (kind === "instant" && c.precision !== undefined && c.precision <= 3 && zoned(c.type)) {
      dates.push(c.name);
    }
    if (kind === "instant") isoInstants[c.name] = zoned(c.type);
  }
  return {
    columns,
    collations,
    dates,
    numberTexts,
    isoInstants,
    ...(unique.length > 0 && { unique }),
  };
}

/** A timestamp with time zone: a JavaScript `Date` of it is the instant, not a local time. */
const zoned = (declared: string) => /^timestamptz\b|with time zone$/i.test(declared);

/**
 * A table's kinds for an engine whose captured changes are not put in the query caches'
 * form (a data API's engine, shared): floats and instants neither compared nor ordered by.
 */
export function withoutCapturedForms(table: SqlTable): SqlTable {
  const columns = table.columns;
  if (!columns) return table;
  const out: Record<string, SqlColumnKind> = {};
  for (const [name, kind] of Object.entries(columns)) {
    out[name] = kind === "float" || kind === "instant" ? "other" : kind;
  }
  return { ...table, columns: out };
}

/**
 * A table's name as the query caches key it: as written, less a leading `public.`
 * (PostgreSQL's default schema, which Drizzle and most SQL leave out), so `users` and
 * `public.users` name one table.
 */
export function plainTableName(name: string): string {
  return name.startsWith("public.") ? name.slice("public.".length) : name;
}
