import type { ListFilter, SortKey } from "../../core/data/query.ts";
import type { SqlDialect } from "./parse.ts";

/** The shapes `sqlShape` reads a select as: what it depends on, table by table. */

export type { SqlDialect };

/**
 * How the planner compares a column's values:
 * - "text" by code point, "number" as numbers;
 * - "float": PostgreSQL's double precision, as numbers, but NaN and the infinities are not
 *   followed (PostgreSQL sorts NaN above every number; capture records them as text): a
 *   result holding one has no window, a change carrying one changes its table as a whole;
 * - "instant": a PostgreSQL timestamp, ordered by its canonical form (see forms.ts),
 *   never compared with a query's value;
 * - "ordered": a SQLite column of another declared type (DATETIME, NUMERIC, BOOLEAN...),
 *   which holds numbers or text as they were written: ordered by as SQLite orders any
 *   column (NULLs, then numbers, then text by code point), never compared with a query's
 *   value (its affinity may turn the value into a number first);
 * - "other": neither compared nor ordered by.
 * "float" and "instant" only where the cache's captured changes are put in the same form
 * (the query caches' own capture, see QueryCapture).
 */
export type SqlColumnKind = "text" | "number" | "float" | "instant" | "ordered" | "other";

/**
 * How a driver gives the numbers stored in an "ordered" column: "iso", always as
 * `Date#toISOString()` text (`2024-05-17T09:41:07.123Z`; Prisma's better-sqlite3 adapter,
 * for a DATETIME); "decimal", as `String(number)` (`12`, `1.5`, `1e+21`) in a result whose
 * column holds other text, as numbers in any other (Prisma's D1 adapter, which types a
 * column by its values). Other values come as stored.
 */
export type NumberText = "iso" | "decimal";

/** What is known of one table. */
export interface SqlTable {
  /** Its single-column primary key; without one the table is registered at table level. */
  primaryKey?: string;
  /**
   * Its columns' kinds, by column name. A column not listed is "other": conditions on it
   * and orders by it are not evaluated (only equality on the primary key is).
   */
  columns?: Readonly<Record<string, SqlColumnKind>>;
  /**
   * How its text columns compare with no `collate` written, as the database's catalog
   * tells (see TextCollation); a column not listed compares as its dialect's default does
   * (SQLite by code point, PostgreSQL by bytes for equality only).
   */
  collations?: Readonly<Record<string, TextCollation>>;
  /**
   * Its "instant" columns whose every value a JavaScript `Date` holds exactly, as
   * node-postgres and postgres.js return them: a `timestamptz` of at most 3 fractional
   * digits (`timestamptz(3)`, `(0)`). A `Date` of any other (microseconds lost; a
   * `timestamp` without time zone read as a local time) is not compared (forms.ts).
   */
  dates?: readonly string[];
  /**
   * Its "ordered" columns (and "number" ones, for "decimal") whose numbers the driver gives
   * as text (see NumberText): a value
   * of that text's form may be a number as stored, which SQLite orders before all text, so
   * a result showing one is neither ordered by it nor patched (see forms.ts, `asStored`).
   */
  numberTexts?: Readonly<Record<string, NumberText>>;
  /**
   * Its "instant" columns (each: whether a timestamptz) whose values come as Prisma's pg
   * adapter gives them (`2024-05-17T09:41:07.123+00:00`), read in that form: only while
   * that adapter's session is known to be UTC (see forms.ts).
   */
  isoInstants?: Readonly<Record<string, boolean>>;
  /**
   * Columns each of which holds another value in every row (UNIQUE and NOT NULL): one the
   * result shows names its rows where the key is not shown (group patches).
   */
  unique?: readonly string[];
  /**
   * Sets of two or more columns that together name at most one row (a composite primary
   * key): a subquery equal on all of them finds one row or none (group patches).
   */
  keys?: readonly (readonly string[])[];
}

/**
 * How a text column compares with no `collate` written: "binary" by code point (SQLite's
 * BINARY, PostgreSQL's C); "bytes-equal" equal by bytes but ordered otherwise (a
 * PostgreSQL language collation); "other" neither (SQLite's NOCASE or RTRIM, a
 * nondeterministic PostgreSQL collation): only equality on it... is not followed either.
 */
export type TextCollation = "binary" | "bytes-equal" | "other";

/** What is known of a table, by name (`schema.table`, or the bare name). */
export type SqlSchema = (table: string) => SqlTable | undefined;

/** Why a select is registered at table level. */
export type FallbackReason =
  | "parse"
  | "not-select"
  | "statements"
  | "set-operation"
  | "cte"
  | "subquery"
  | "join"
  | "aggregate"
  | "group-by"
  | "distinct"
  | "window-function"
  | "unknown-table"
  | "no-primary-key"
  | "disjuncts";

/** Why a registration is coarser than the query (still exact about what it registers). */
export type WideningReason =
  /** A condition the planner does not evaluate (a function, NOT, BETWEEN, a cast...): taken as TRUE. */
  | "expression"
  /** A condition on a column of a kind it does not compare, or a value of another type. */
  | "type"
  /** A collation other than the binary one (PostgreSQL text ranges and orders need COLLATE "C"). */
  | "collation"
  /** A LIKE pattern read as a wider prefix (SQLite's LIKE ignores ASCII case). */
  | "like"
  /** An order the planner cannot reproduce, or a LIMIT without one: the window is dropped. */
  | "order"
  /**
   * A join whose other table the planner does not evaluate against a row: a condition or
   * an order on it taken as TRUE on this side, the other side's lists without a window,
   * or the other table at table level (see `ShapeJoin`).
   */
  | "join"
  /**
   * A subquery: a condition on it (`IN (select ...)`, `EXISTS`) taken as TRUE, its tables
   * registered by their own conditions (references to the outer query taken as TRUE), or
   * one of them at table level (see `ShapeSubquery`).
   */
  | "subquery";

/**
 * Why one table of an analysed select is registered at table level while the others are
 * not. `key-not-selected`: the join would be followed along its key, but the result does
 * not hold the column that names the joined rows (select it: `orders.user_id` for a
 * parent `users`, the base's key for children).
 */
export type TableReason = "join" | "unknown-table" | "subquery" | "key-not-selected";

/** The lists of an analysed select, before its result is known. */
export interface ShapeLists {
  table: string;
  primaryKey: string;
  /** The name the statement gives the base table in its FROM (its alias, else its name). */
  ref?: string;
  /** Its columns that name a row as its key does (SqlTable's `unique`). */
  unique?: string[];
  /** Each result column's table column, by position (undefined for an expression or another table's). */
  columns: (string | undefined)[];
  /** Each result column's name in a row read by name (its alias or its column's name). */
  names: (string | undefined)[];
  /** Primary-key values looked up: their rows' tags stand for the disjuncts naming them. */
  rowIds: (string | number)[];
  /**
   * Each lookup tests the primary key alone (`id = ?`, `id IN (...)`): no other condition
   * of its disjunct was dropped with it (`id = ? AND deleted = 0` is not alone). The row
   * tags do not need it; a patch of the result does.
   */
  lookupsAlone: boolean;
  /** The other disjuncts, each an AND of filters: one list each, same window. */
  disjuncts: ListFilter[][];
  sort: SortKey[];
  /** Whether the result's order is the planner's: only then does the window count. */
  ordered: boolean;
  offset: number;
  limit: number;
  /** Columns of the table that are instants: their values are compared in canonical form. */
  instants?: string[];
  /** Those of them whose values a `Date` holds exactly (SqlTable's `dates`). */
  dates?: string[];
  /** Its "ordered" columns whose numbers come as text (SqlTable's `numberTexts`). */
  numberTexts?: Record<string, NumberText>;
  /** Its instant columns read in Prisma's pg form (SqlTable's `isoInstants`). */
  isoInstants?: Record<string, boolean>;
  /**
   * How result rows stand for the base's rows: one each (unset); "key", GROUP BY its primary
   * key (one row per base row, aggregates over its joined children); "aggregate", one row
   * over every matching row (aggregates without GROUP BY: no window, no row read back).
   */
  grouping?: "key" | "aggregate";
  /**
   * Its one column is `count(*)` of its rows (grouping "aggregate"): a base row written
   * that comes or goes changes it by one, where that is told exactly (memberships).
   */
  counted?: true;
  /**
   * Every column of the base besides its key that the select may read anywhere (result,
   * conditions, order, joins, subqueries): its lists name them, and an update of a base row
   * that leaves them all as they were is not planned against them (ListDependency's
   * `columns`). Unset when that cannot be told (a `*`).
   */
  decides?: string[];
  /**
   * The base's columns its conditions, joins, order and grouping read (subqueries there
   * included): an update of a base row that leaves them and its key as they were cannot
   * bring the row in, take it out or move it, only change its values (group patches).
   * Unset when that cannot be told.
   */
  deciding?: string[];
  /** The other tables of the FROM clause, each joined along a key to one before it. */
  joins?: ShapeJoin[];
  /** The tables read by subqueries, at any depth. */
  subqueries?: ShapeSubquery[];
  /**
   * What each result column's value reads, by position (see outputReads); unset where a
   * parameter is bound outside the select list and its WHERE, ORDER BY and window.
   */
  outputs?: OutputRead[];
}

/** What a result column's value reads: its tables, and whether a parameter enters it. */
export interface OutputRead {
  /** The tables it reads, `*` for any of the select's. */
  tables: string[];
  /** The base's columns it reads (see columnsRead); unset when that cannot be told. */
  base?: string[];
  params: boolean;
}

/**
 * A joined table of a select, joined on `joined.column = anchor.from` where the anchor is
 * the base or a parent joined before it, one of the two columns a primary key (see
 * `joinsOf`): which of its rows the result reads, named by the anchor's values in the
 * result (`from`) and by `ids` (a lookup's keys).
 */
export interface ShapeJoin {
  table: string;
  /** Its primary key; a table without one is followed only as children. */
  primaryKey?: string;
  /** "parent": `column` is its primary key (row tags); "children": a foreign key (lists on its value). */
  kind: "parent" | "children";
  column: string;
  /** The anchor's column whose values in the result name the joined rows. */
  from: string;
  /** The anchor: the join of this index (a parent), or the base when unset. */
  anchor?: number;
  /** Values of `from` known from the query (a children join of looked-up base rows). */
  ids: (string | number)[];
  /** Each result column's column of this table, by position. */
  columns: (string | undefined)[];
  /** An inner join: `column` in the result holds `from`'s value too. */
  inner: boolean;
  /** The WHERE reads its columns (in a subquery too). */
  filters?: true;
  /**
   * Rows that may change the result beyond the linked ones: lookups and lists without a
   * window, and, when known, the only columns (besides the key) by which an update of such
   * a row can (see ListDependency's `columns`).
   */
  reach?: { rowIds: (string | number)[]; disjuncts: ListFilter[][]; columns?: string[] };
  /**
   * A parent read by nothing but its key: only its rows' coming and going (insert, delete,
   * a key changed) can change the result; registered so, without keys from the result.
   */
  existence?: true;
  /** Registered at table level, and why: the links cannot be followed. */
  whole?: TableReason;
  /**
   * A parent registered whole for want of its key in the result: the columns of it that
   * decide which rows are in the result and their order, where known (group patches).
   */
  decides?: string[];
}

/**
 * A table read by a subquery (one entry per occurrence). In the select list ("select") the
 * subquery only computes a value of each result row: with a `link` (its WHERE holds
 * `column = outer.from` as a conjunct, the outer column readable from the result) it reads
 * only rows whose `column` is one of the result's values of `from`. In WHERE ("where") it
 * decides which rows are in the result: any row its own conditions admit may change it.
 */
export interface ShapeSubquery {
  table: string;
  in: "select" | "where";
  /** Its own conditions (references to other tables taken as TRUE): lookups and disjuncts. */
  rowIds: (string | number)[];
  disjuncts: ListFilter[][];
  link?: {
    column: string;
    from: string;
    /** The outer table whose column `from` is: the join of this index, or the base when unset. */
    anchor?: number;
  };
  /**
   * A link whose outer column the result does not show: not followed (its rows are read by
   * its own conditions), but it names the outer rows each of its rows feeds (group patches).
   */
  unshown?: NonNullable<ShapeSubquery["link"]>;
  /** Why its own conditions are wider than the subquery's. */
  widened: WideningReason[];
  /**
   * Every column of the table the subquery may read, when that is known: an update that
   * leaves them (and the key) as they were cannot change it (ListDependency's `columns`).
   */
  columns?: string[];
  /** Registered at table level, and why. */
  whole?: TableReason;
  /**
   * In WHERE, a conjunct `from IN (select column from <this table> ...)`, `from` a column of
   * the base: a base row is in the result only where this table holds a row of its `from`
   * value (memberships: a write to base rows none of whose values it holds leaves the
   * result as it was, told by one read of this table for those values). `filters`, where
   * the subquery reads this table alone and nothing of the outer select, and its own
   * conditions are equalities on those columns (their kinds): then only a row they admit
   * holds a value.
   */
  member?: { column: string; from: string; filters?: Record<string, "number" | "text"> };
  /** In the select list: the position of the result column whose value it computes. */
  output?: number;
  /**
   * That value is whether it finds a row (`exists (...)`, or `count(*)` of it), and its
   * link and equalities to values name a key of its table: each write to the table
   * tells the value for the rows it names, with no query (group patches).
   */
  presence?: true;
  /**
   * That value is `count(*)` of it, its link and its own conditions all it reads: each
   * write to the table adds to it or takes from it for the rows it names (group patches,
   * from a result whose load saw the database exactly).
   */
  tally?: true;
}

export interface SqlShape {
  /** The tables read (`schema.table` or the bare name). */
  tables: string[];
  /** Set when registered on its tables only. */
  fallback?: FallbackReason;
  /** Why the lists are wider than the query; empty when exact. */
  widened: WideningReason[];
  lists?: ShapeLists;
  /**
   * Some table named without its schema could not be placed by the session's search path
   * (see ResolveTable): what it reads is not known, so it is not to be cached.
   */
  unresolved?: true;
}

/** A list without LIMIT: its window holds every row past the offset. */
export const NO_LIMIT = Number.MAX_SAFE_INTEGER;
/** Disjuncts past this many (after AND distributes over OR) fall back to the table. */
export const MAX_DISJUNCTS = 32;
/** Results with more rows register no row tags of their own (their lists cover them). */
export const MAX_ROW_TAGS = 256;
