import type { ColumnKind, Filter, Row, SortKey } from "../../core/data/query.ts";
import type { Dialect, Discovered } from "../dialect.ts";
import {
  badBody,
  badQuery,
  COMPARISONS,
  type ForeignKey,
  filterValue,
  orderBy,
  quote,
  type ServedTable,
  type SqlColumn,
  tableInfo,
} from "../schema.ts";

/**
 * PostgreSQL's dialect (postgres.js is its driver): `$n` placeholders, each column read in
 * the form the planner compares (see PgColumn), text compared by code point (`COLLATE
 * "C"`), NULLs first in ascending order, rows locked by the write that reads them, and the
 * catalog read from pg_catalog.
 */

const COMPONENT = "postgres";

/**
 * How a column's values are read and compared. PostgreSQL types are strict, so each
 * column is read in the form the planner compares correctly:
 * - "number": integers, floats, numeric and booleans (0 and 1, as SQLite stores them),
 *   read as JS numbers. int8 and numeric beyond 2^53 lose precision in the planner's
 *   comparisons (documented).
 * - "date": ISO 8601 text of fixed width per column (UTC with `Z` for timestamptz), so
 *   code point order is time order, and compared as that text in SQL as well.
 * - "text": everything else, as text compared by code point (`COLLATE "C"`).
 */
export interface PgColumn extends SqlColumn {
  /** The SQL that reads the column in its data API form; also the comparison operand. */
  read: string;
  /** The same for another reference to the column (`OLD."name"` in a trigger). */
  readOf(ref: string): string;
  /** The stored type is text-like, so comparisons need no cast. */
  textual: boolean;
  /** PostgreSQL assigns the value when absent: a serial, identity or DEFAULT. */
  assigned: boolean;
}

export type PgTable = ServedTable<PgColumn> & {
  /** `"schema"."table"` */
  qualified: string;
  /** The select list that reads every column in its data API form. */
  selectList: string;
};

/**
 * PostgreSQL's dialect for the tables of `schema`.
 */
export function postgresDialect(schema: string): Dialect<PgColumn, PgTable> {
  return {
    placeholder: (n, column) => (column ? parameter(column, n) : `$${n}`),
    bind: bindable,
    tableName: (table) => table.qualified,
    selectList: (table) => table.selectList,
    keyMatch,
    filter: compileFilter,
    orderBy: compileSort,
    window: (limit, offset) => `LIMIT ${limit}::int8 OFFSET ${offset}::int8`,
    keyOrder: (table) => `${comparable(table.pk)} ASC NULLS FIRST`,
    lock: " FOR UPDATE",
    // DEFAULT is NULL for a column without one.
    resetValue: () => "DEFAULT",
    assignsKey: (table) => table.pk.assigned,
    checkValues: checkText,
    // PostgreSQL stores a value in its column's type or refuses it.
    checkStored: () => {},
    refuseConverted: () => {},
    *discover() {
      const columnRows = yield {
        sql: `SELECT c.relname AS table, a.attname AS name, t.typname AS type, t.typcategory AS category,
              a.atttypmod AS typmod, a.attnotnull AS notnull, a.attidentity AS identity,
              a.attgenerated AS generated, pg_get_expr(d.adbin, d.adrelid) AS default
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         JOIN pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
        ORDER BY c.relname, a.attnum`,
        params: [schema],
      };
      const keyRows = yield {
        sql: `SELECT c.relname AS table, a.attname AS name
         FROM pg_constraint k
         JOIN pg_class c ON c.oid = k.conrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.conkey[1]
        WHERE n.nspname = $1 AND k.contype = 'p' AND cardinality(k.conkey) = 1`,
        params: [schema],
      };
      return tablesOf(schema, columnRows, keyRows);
    },
    *foreignKeys(tables) {
      const rows = yield { sql: FOREIGN_KEYS_SQL, params: [schema] };
      return foreignKeysOf(
        tables,
        rows.filter((r) => Number(r.width) === 1),
      );
    },
    *foreignKeyActions() {
      const rows = yield { sql: FOREIGN_KEYS_SQL, params: [schema] };
      return rows.map((r) => ({
        parent: String(r.parent),
        child: String(r.child),
        onDelete: ACTIONS[String(r.on_delete)] ?? "NO ACTION",
        onUpdate: ACTIONS[String(r.on_update)] ?? "NO ACTION",
      }));
    },
    *triggerBodies(table) {
      const rows = yield {
        sql: `SELECT p.prosrc AS src FROM pg_trigger t
         JOIN pg_class c ON c.oid = t.tgrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_proc p ON p.oid = t.tgfoid
       WHERE NOT t.tgisinternal AND n.nspname = $1 AND c.relname = $2
         AND t.tgname NOT LIKE 'edgecache\\_%'`,
        params: [schema, table],
      };
      return rows.map(({ src }) => String(src ?? ""));
    },
  };
}

/**
 * Whether the database's default collation orders text by code point: a libc C locale by
 * name, and so by the database's own comparisons (an ICU default keeps the name of the
 * libc locale beside it, and orders 'a' before 'B').
 */
const DEFAULT_BINARY = `((SELECT datcollate IN ('C', 'POSIX', 'C.UTF-8', 'C.utf8') FROM pg_database
    WHERE datname = current_database()) AND 'B' < 'a' AND 'Z' < 'a' AND 'f' < 'é')`;

/**
 * How a column of information_schema.columns (`c.`, or unqualified) compares its text with
 * no `collate` written: see CatalogColumn.collation.
 */
export const textCollationSql = (c = "") =>
  `CASE WHEN ${c}collation_name IS NULL THEN
        CASE WHEN ${DEFAULT_BINARY} THEN 'binary' ELSE 'bytes-equal' END
      WHEN ${c}collation_name IN ('C', 'POSIX', 'ucs_basic') THEN 'binary'
      WHEN (SELECT k.collisdeterministic FROM pg_collation k JOIN pg_namespace n ON n.oid = k.collnamespace
              WHERE k.collname = ${c}collation_name AND n.nspname = ${c}collation_schema) THEN 'bytes-equal'
      ELSE 'other' END`;

/**
 * Whether a column of information_schema.columns (as `prefix`) names its table's rows: NOT
 * NULL, and held unique by a valid index of it alone that is neither partial, on an
 * expression, deferred, nor the primary key's.
 */
export function uniqueColumnSql(prefix = ""): string {
  return `(${prefix}is_nullable = 'NO' AND EXISTS (SELECT 1 FROM pg_index i
      WHERE i.indrelid = to_regclass(format('%I.%I', ${prefix}table_schema, ${prefix}table_name))
        AND i.indisunique AND NOT i.indisprimary AND i.indisvalid AND i.indimmediate
        AND i.indnkeyatts = 1 AND i.indkey[0] = ${prefix}ordinal_position
        AND i.indpred IS NULL AND i.indexprs IS NULL))`;
}

/**
 * A table's columns in order (`name`, the catalog's `type`, how its text compares,
 * `collation`, its timestamp's `precision`, and whether it names its rows, `uniq`: see
 * uniqueColumnSql) in schema $1, table $2: the clients' catalog.
 */
export const COLUMNS_SQL = `SELECT column_name AS name, data_type AS type, ${textCollationSql()} AS collation,
    datetime_precision AS precision, ${uniqueColumnSql()} AS uniq
  FROM information_schema.columns
  WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`;

/** The names of the ordinary tables in the connection's current schema. */
export const CURRENT_TABLES_SQL = `SELECT table_name AS name FROM information_schema.tables
  WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`;

/**
 * The foreign keys between tables of schema $1: their first columns (`from`, `to`), their
 * width (columns) and their one-letter actions (see ACTIONS).
 */
const FOREIGN_KEYS_SQL = `SELECT child.relname AS child, ca.attname AS "from", parent.relname AS parent,
    pa.attname AS "to", cardinality(k.conkey) AS width,
    k.confdeltype AS on_delete, k.confupdtype AS on_update
   FROM pg_constraint k
   JOIN pg_class child ON child.oid = k.conrelid
   JOIN pg_class parent ON parent.oid = k.confrelid
   JOIN pg_namespace n ON n.oid = child.relnamespace
   JOIN pg_namespace pn ON pn.oid = parent.relnamespace
   JOIN pg_attribute ca ON ca.attrelid = child.oid AND ca.attnum = k.conkey[1]
   JOIN pg_attribute pa ON pa.attrelid = parent.oid AND pa.attnum = k.confkey[1]
  WHERE k.contype = 'f' AND n.nspname = $1 AND pn.nspname = $1`;

/** The served tables from pg_attribute's rows and the primary keys' rows, and the others' columns. */
function tablesOf(schema: string, columnRows: Row[], keyRows: Row[]): Discovered<PgTable> {
  const keyOf = new Map(keyRows.map((r) => [String(r.table), String(r.name)]));
  const byTable = new Map<string, Row[]>();
  for (const r of columnRows) {
    const name = String(r.table);
    byTable.set(name, [...(byTable.get(name) ?? []), r]);
  }
  const tables = new Map<string, PgTable>();
  const skipped = new Map<string, Map<string, PgColumn>>();
  for (const [name, rows] of byTable) {
    const pkName = keyOf.get(name);
    const columns = new Map<string, PgColumn>();
    for (const r of rows) columns.set(String(r.name), columnOf(r, String(r.name) === pkName));
    if (pkName === undefined) {
      skipped.set(name, columns);
      continue;
    }
    const pk = columns.get(pkName)!;
    const info = tableInfo(name, columns.values(), pk);
    const selectList = [...columns.values()]
      .map((c) => (c.read === quote(c.name) ? c.read : `${c.read} AS ${quote(c.name)}`))
      .join(", ");
    const qualified = `${quote(schema)}.${quote(name)}`;
    tables.set(name, { source: COMPONENT, info, columns, pk, qualified, selectList });
  }
  return { tables, skipped };
}

/** Single-column foreign keys between served tables, keyed by the parent table. */
function foreignKeysOf(tables: Map<string, PgTable>, rows: Row[]): Map<string, ForeignKey[]> {
  const out = new Map<string, ForeignKey[]>();
  for (const r of rows) {
    const parent = String(r.parent);
    if (!tables.has(parent) || !tables.has(String(r.child))) continue;
    const fk: ForeignKey = {
      table: String(r.child),
      from: String(r.from),
      to: String(r.to),
      onDelete: ACTIONS[String(r.on_delete)] ?? "NO ACTION",
      onUpdate: ACTIONS[String(r.on_update)] ?? "NO ACTION",
    };
    out.set(parent, [...(out.get(parent) ?? []), fk]);
  }
  return out;
}

/** pg_constraint's one-letter foreign key actions. */
const ACTIONS: Record<string, string> = {
  a: "NO ACTION",
  r: "RESTRICT",
  c: "CASCADE",
  n: "SET NULL",
  d: "SET DEFAULT",
};

/** Type categories (pg_type.typcategory) read as numbers: numeric and boolean. */
const NUMBER_CATEGORIES = new Set(["N", "B"]);

/** Types read as "date": fixed-width ISO 8601 text, see isoText. */
const DATE_TYPES = new Set(["date", "timestamp", "timestamptz", "time"]);

/**
 * Text types read and compared without a cast. char(n) (bpchar) is read as ::text, which
 * drops its padding as its own comparisons do; citext is read as ::text, compared exactly.
 */
const TEXT_TYPES = new Set(["text", "varchar", "name"]);

function columnOf(r: Row, isKey: boolean): PgColumn {
  const name = String(r.name);
  const type = String(r.type);
  const category = String(r.category);
  const defaultSql = r.default == null ? null : String(r.default);
  const assigned = defaultSql !== null || r.identity !== "" || r.generated !== "";
  let kind: ColumnKind = "text";
  let readOf = (ref: string) => ref;
  if (DATE_TYPES.has(type)) {
    kind = "date";
    readOf = (ref) => isoText(ref, type, Number(r.typmod));
  } else if (category === "B") {
    kind = "number";
    readOf = (ref) => `${ref}::int`;
  } else if (NUMBER_CATEGORIES.has(category)) {
    kind = "number";
    // int8 and numeric come back from the driver as strings; the planner needs numbers.
    if (type === "int8" || type === "numeric") readOf = (ref) => `${ref}::float8`;
  } else if (!TEXT_TYPES.has(type)) {
    readOf = (ref) => `${ref}::text`;
  }
  return {
    name,
    kind,
    nullable: r.notnull !== true && !isKey,
    defaultSql,
    read: readOf(quote(name)),
    readOf,
    textual: kind === "text" || kind === "date",
    assigned,
  };
}

/**
 * A date column as ISO 8601 text of one width per column, so that text order is time
 * order: `2024-05-17T09:41:07Z` for timestamptz(0), `...07.123Z` for precision 1-3,
 * `...07.123456Z` otherwise; timestamp without time zone has no `Z`; date is
 * `2024-05-17`, time `09:41:07` (with the same fractions).
 */
function isoText(column: string, type: string, typmod: number): string {
  const precision = typmod < 0 ? 6 : typmod;
  const fraction = precision === 0 ? "" : precision <= 3 ? ".MS" : ".US";
  switch (type) {
    case "date":
      return isoOrText(column, `to_char(${column}, 'YYYY-MM-DD')`);
    case "time":
      return `to_char(${column}, 'HH24:MI:SS${fraction}')`;
    case "timestamp":
      return isoOrText(column, `to_char(${column}, 'YYYY-MM-DD"T"HH24:MI:SS${fraction}')`);
    default:
      return isoOrText(
        column,
        `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS${fraction}"Z"')`,
      );
  }
}

/**
 * `iso` where it says the value: to_char gives NULL for infinity and drops the era of a
 * date before year 1, so those are read as PostgreSQL's own text (`infinity`, `-infinity`,
 * `0044-03-15 BC`), which is no ISO date (the query caches take a change carrying one as
 * a change of the whole table).
 */
function isoOrText(column: string, iso: string): string {
  return `CASE WHEN isfinite(${column}) AND ${column} >= '0001-01-01' THEN ${iso} ELSE ${column}::text END`;
}

/** The column as a comparison operand: text by code point, numbers as stored. */
function comparable(column: PgColumn): string {
  return column.textual ? `(${column.read}) COLLATE "C"` : column.read;
}

/**
 * A bound parameter in a write or a key match, cast to the column's stored type where
 * PostgreSQL cannot infer it from an untyped literal.
 */
function parameter(column: PgColumn, n: number): string {
  return column.kind === "number" && column.read.endsWith("::int") ? `$${n}::int::bool` : `$${n}`;
}

/**
 * The key column equal to parameter n. Equality needs no COLLATE "C": a deterministic
 * collation calls strings equal only when their bytes are, and without it the primary
 * key's index serves the match.
 */
function keyMatch(table: PgTable, key: unknown, n: number): string {
  const pk = table.pk;
  if (pk.kind === "number") return `${pk.read} = $${n}::${numberCast(key)}`;
  return `${pk.read} = $${n}`;
}

/** A whole number as int8 keeps an index on an integer column usable. */
function numberCast(value: unknown): string {
  return Number.isSafeInteger(value) ? "int8" : "float8";
}

/** Values as postgres.js binds them: numbers as text keeps int8 and numeric exact. */
function bindable(value: unknown): unknown {
  return typeof value === "number" ? String(value) : value;
}

/**
 * PostgreSQL text cannot hold NUL, and a filter value may (`?name=a%00`). No stored
 * value contains one, so a comparison with `p + "\0" + rest` is one with `p` (every
 * stored value that extends p is greater): < and <= become <= p, > and >= become > p,
 * = and a prefix match nothing.
 */
function compileFilter(table: PgTable, filter: Filter, next: (value: unknown) => string): string {
  const column = table.columns.get(filter.column);
  if (!column) throw badQuery(COMPONENT, `unknown column "${filter.column}"`);
  const value = filterValue(COMPONENT, column, filter.value);
  if (filter.op === "prefix") {
    if (column.kind === "number" || typeof value !== "string") {
      throw badQuery(COMPONENT, `${column.name}: a prefix (value*) needs a text or date column`);
    }
    if (value.includes("\0")) return "FALSE";
    return `starts_with(${comparable(column)}, ${next(value)})`;
  }
  const op = COMPARISONS[filter.op];
  if (!op) throw badQuery(COMPONENT, `unknown filter operator "${String(filter.op)}"`);
  if (column.kind === "number") {
    return `${column.read} ${op} ${next(String(value))}::${numberCast(value)}`;
  }
  const text = value as string;
  const nul = text.indexOf("\0");
  if (nul < 0 && filter.op === "eq") return `${column.read} = ${next(text)}`;
  if (nul < 0) return `${comparable(column)} ${op} ${next(text)}`;
  const before = text.slice(0, nul);
  if (filter.op === "eq") return "FALSE";
  const lower = filter.op === "lt" || filter.op === "lte";
  return `${comparable(column)} ${lower ? "<=" : ">"} ${next(before)}`;
}

function compileSort(table: PgTable, sort: SortKey[]): string {
  // NULLs first in ascending order, as SQLite and the planner order them.
  return orderBy(table, sort, (column, desc) =>
    desc ? `${comparable(column)} DESC NULLS LAST` : `${comparable(column)} ASC NULLS FIRST`,
  );
}

/** PostgreSQL text cannot hold NUL: refused as the body's fault, not the database's. */
function checkText(table: PgTable, given: Map<string, unknown>): void {
  for (const [name, value] of given) {
    if (typeof value === "string" && value.includes("\0")) {
      throw badBody(
        table.source,
        `column "${name}": PostgreSQL text cannot contain the NUL character`,
      );
    }
  }
}
