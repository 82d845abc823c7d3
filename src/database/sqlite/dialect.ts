import type { ColumnKind, Filter, Row, SortKey } from "../../core/data/query.ts";
import { EdgecacheError, type ErrorCode } from "../../core/errors.ts";
import type { Dialect, Steps } from "../dialect.ts";
import {
  badBody,
  badQuery,
  COMPARISONS,
  type ForeignKey,
  type ForeignKeyAction,
  filterValue,
  literal,
  NUMERIC_STRING,
  orderBy,
  quote,
  type ServedTable,
  type SqlColumn,
  tableInfo,
} from "../schema.ts";
import { CAPTURE_PREFIX, isCaptureTrigger } from "./capture-sql.ts";

/**
 * SQLite's dialect, whatever the driver (better-sqlite3 here, D1 on Workers): how
 * declared types map to kinds and affinities, how filters and sorts compile so that
 * SQLite agrees with the planner's in-memory predicates, what a stored value must look
 * like, and how SQLite's error codes map to edgecache's.
 */

const COMPONENT = "sqlite";

/** SQLite's type affinity, which decides how a bound or stored value is converted. */
export type Affinity = "integer" | "real" | "numeric" | "text" | "blob";

export interface ColumnMeta extends SqlColumn {
  affinity: Affinity;
}

export interface TableMeta extends ServedTable<ColumnMeta> {
  /** INTEGER PRIMARY KEY of a rowid table: SQLite assigns it when absent. */
  rowidAlias: boolean;
}

/** SQLite allows 32,766 bound parameters; small IN lists keep statements cheap to prepare. */
export const MAX_IN_PARAMS = 500;

/** SQLITE_BUSY and its extended codes: another connection holds the lock. */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("SQLITE_BUSY");
}

/** The first pause between two tries for a lock; each next one doubles, up to the last. */
const FIRST_BUSY_PAUSE_MS = 2;
const MAX_BUSY_PAUSE_MS = 50;

/** How long a write waits for another connection's write lock by default, ms. */
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;

/**
 * Runs `attempt` (a synchronous statement or transaction on a connection whose
 * busy_timeout is 0, so that a taken lock fails it at once instead of blocking the event
 * loop, and every request with it) until it does not fail with SQLITE_BUSY, pausing between
 * tries, for at most `timeoutMs`; then the last SQLITE_BUSY is thrown. A failed try was
 * rolled back, so trying again is safe.
 */
export async function whenNotBusy<T>(attempt: () => T | Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (let pause = FIRST_BUSY_PAUSE_MS; ; pause = Math.min(pause * 2, MAX_BUSY_PAUSE_MS)) {
    try {
      return await attempt();
    } catch (err) {
      const left = deadline - performance.now();
      if (!isBusy(err) || left <= 0) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)));
    }
  }
}

export function toEdgecacheError(cause: unknown): EdgecacheError {
  if (cause instanceof EdgecacheError) return cause;
  const driverCode = (cause as { code?: unknown } | null)?.code;
  const code = typeof driverCode === "string" ? driverCode : undefined;
  const message = cause instanceof Error ? cause.message : "";
  const error = (errorCode: ErrorCode, text: string) =>
    new EdgecacheError(errorCode, COMPONENT, text, { cause });
  // STRICT tables refuse a value of the wrong storage class: the body's fault.
  if (code === "SQLITE_CONSTRAINT_DATATYPE") {
    return error("E_BAD_BODY", "a value has the wrong type for its column");
  }
  if (code?.startsWith("SQLITE_CONSTRAINT")) {
    return error("E_CONFLICT", constraintMessage(code, message));
  }
  if (isBusy(cause)) {
    return error("E_SOURCE_BUSY", "the database is locked by another connection; try again");
  }
  // RFC 4918 11.5: the database has no room for the write; retrying soon will not help.
  if (code === "SQLITE_FULL")
    return error("E_SOURCE_FULL", "the database has no room to store the write");
  if (code?.startsWith("SQLITE_READONLY")) {
    return error("E_SOURCE_UNAVAILABLE", "the database is read-only");
  }
  return error("E_SOURCE_UNAVAILABLE", `database error${code ? ` (${code})` : ""}`);
}

/**
 * SQLite's messages name columns as `table.column` for UNIQUE and NOT NULL; a CHECK
 * message may carry the constraint's expression, so only a plain name is repeated.
 */
export function constraintMessage(code: string, message: string): string {
  const detail = /constraint failed: (.+)$/.exec(message)?.[1];
  const columns = () =>
    (detail ?? "")
      .split(", ")
      .map((c) => c.slice(c.lastIndexOf(".") + 1))
      .filter((c) => c !== "")
      .map((c) => `"${c}"`)
      .join(", ");
  switch (code) {
    case "SQLITE_CONSTRAINT_PRIMARYKEY":
      return `a row with this primary key already exists${detail ? ` (column ${columns()})` : ""}`;
    case "SQLITE_CONSTRAINT_UNIQUE":
      return `unique constraint violated${detail ? ` on column ${columns()}` : ""}`;
    case "SQLITE_CONSTRAINT_NOTNULL":
      return `not null constraint violated${detail ? ` on column ${columns()}` : ""}`;
    case "SQLITE_CONSTRAINT_FOREIGNKEY":
      return "foreign key constraint violated";
    case "SQLITE_CONSTRAINT_CHECK":
      return detail && /^[A-Za-z_][A-Za-z0-9_]*$/.test(detail)
        ? `check constraint "${detail}" violated`
        : "check constraint violated";
    case "SQLITE_CONSTRAINT_TRIGGER":
      return "a trigger refused the write";
    default:
      return "constraint violated";
  }
}

/** The kind rules are documented in query.ts; numbers win over dates ("INT" before "TIME"). */
export function columnKind(declaredType: string): ColumnKind {
  const t = declaredType.toUpperCase();
  if (["INT", "REAL", "FLOA", "DOUB", "NUM", "DEC", "BOOL"].some((s) => t.includes(s))) {
    return "number";
  }
  if (t.includes("DATE") || t.includes("TIME")) return "date";
  return "text";
}

/** SQLite's affinity rules, in SQLite's order (https://sqlite.org/datatype3.html#affname). */
export function columnAffinity(declaredType: string): Affinity {
  const t = declaredType.toUpperCase();
  if (t.includes("INT")) return "integer";
  if (t.includes("CHAR") || t.includes("CLOB") || t.includes("TEXT")) return "text";
  if (t.includes("BLOB") || t === "") return "blob";
  if (t.includes("REAL") || t.includes("FLOA") || t.includes("DOUB")) return "real";
  return "numeric";
}

/**
 * True when SQLite might read `value` as a number. A superset of the literals numeric
 * affinity converts, so it errs on the side of the slower, exact comparison.
 */
export function mayLookNumeric(value: string): boolean {
  // SQLite's text-to-number conversion stops at a NUL: "1\0" converts as "1".
  const nul = value.indexOf("\0");
  return NUMERIC_STRING.test(nul >= 0 ? value.slice(0, nul) : value);
}

/**
 * The column as a comparison operand. For a text or date column with numeric affinity
 * (DATETIME, STRING, ...), SQLite converts a numeric-looking operand such as "2024" to a
 * number and then orders every stored text after it; unary + strips the column's
 * affinity so the comparison stays text against text, as documented. It also bypasses
 * the index, so it is used only when the value needs it.
 */
export function operand(column: ColumnMeta, value: unknown): string {
  if (column.kind === "number") return quote(column.name);
  const numericAffinity = column.affinity !== "text" && column.affinity !== "blob";
  const name =
    numericAffinity && typeof value === "string" && mayLookNumeric(value)
      ? `+${quote(column.name)}`
      : quote(column.name);
  return `${name}${BINARY}`;
}

/**
 * Text compares by code point whatever collation the column declares (NOCASE, RTRIM):
 * the documented semantics, which the planner's in-memory predicates mirror. An index of
 * the default BINARY collation still serves these terms.
 */
export const BINARY = " COLLATE BINARY";

export function compileFilter(
  table: TableMeta,
  filter: Filter,
  param: (value: unknown) => string,
): string {
  const column = table.columns.get(filter.column);
  if (!column) throw badQuery(COMPONENT, `unknown column "${filter.column}"`);
  const value = filterValue(COMPONENT, column, filter.value);
  if (filter.op === "prefix") {
    // Dates are ISO 8601 text here, so a prefix (`2025-03*`) is a text prefix too.
    if (column.kind === "number" || typeof value !== "string") {
      throw badQuery(COMPONENT, `${column.name}: a prefix (value*) needs a text or date column`);
    }
    if (value.includes("\0")) {
      // GLOB reads its pattern as a C string and would stop at the NUL: compare UTF-8 bytes
      // (a Uint8Array, which both drivers bind as a BLOB; workerd has no Buffer).
      const bytes = new TextEncoder().encode(value);
      return `typeof(${quote(column.name)}) = 'text' AND substr(CAST(${quote(column.name)} AS BLOB), 1, ${param(bytes.length)}) = ${param(bytes)}`;
    }
    // GLOB would match the text form of a stored number (123 for "12*"); the planner's
    // startsWith only matches text, so only text rows match here too.
    return `typeof(${quote(column.name)}) = 'text' AND ${quote(column.name)} GLOB ${param(`${globEscape(value)}*`)}`;
  }
  const op = COMPARISONS[filter.op];
  if (!op) throw badQuery(COMPONENT, `unknown filter operator "${String(filter.op)}"`);
  // A NULL column compares to NULL, which WHERE treats as false: NULL never matches.
  return `${operand(column, value)} ${op} ${param(value)}`;
}

/** GLOB's metacharacters, each made literal by a one-character class: `*` becomes `[*]`. */
export function globEscape(prefix: string): string {
  return prefix.replace(/[*?[]/g, "[$&]");
}

export function compileSort(table: TableMeta, sort: SortKey[]): string {
  return orderBy(table, sort, (column, desc) => {
    const collate = column.kind === "number" ? "" : BINARY;
    return `${quote(column.name)}${collate} ${desc ? "DESC" : "ASC"}`;
  });
}

export function keyMatch(table: TableMeta, key: unknown): string {
  return `${operand(table.pk, key)} = ?`;
}

/**
 * Column affinity may convert what we bound ("2024" into a DATETIME column becomes the
 * integer 2024), which would then compare and sort as a number, not as the text the data
 * API documents. Refusing the write (the transaction rolls back) keeps stored values in
 * their column's kind.
 */
export function checkStored(table: TableMeta, given: Map<string, unknown>, row: Row): void {
  for (const [name, value] of given) {
    if (value === null) continue;
    const stored = row[name];
    if (typeof value === "string" && typeof stored !== "string") {
      const kind = table.columns.get(name)?.kind ?? "text";
      throw badBody(
        COMPONENT,
        `column "${name}": SQLite would store this ${kind} value as a number; send a non-numeric ${kind === "date" ? "date such as 2024-01-31" : "string"}`,
      );
    }
    if (typeof value === "number" && typeof stored !== "number" && typeof stored !== "bigint") {
      throw badBody(
        COMPONENT,
        `column "${name}": SQLite would store this number as text (column affinity)`,
      );
    }
  }
}

/** SQLite's catalog: tables, their columns and foreign keys, triggers, a table's own SQL. */
export const TABLE_LIST_SQL =
  "SELECT name, wr FROM pragma_table_list WHERE schema = 'main' AND type = 'table' ORDER BY name";
const TABLE_INFO_SQL =
  "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?, 'main') ORDER BY cid";
const FOREIGN_KEY_LIST_SQL =
  'SELECT "table", "from", "to", on_delete, on_update FROM pragma_foreign_key_list(?)';
const TRIGGERS_SQL = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?";
/**
 * A table's columns in order (`name`, declared `type`, `pk`: its place in the primary key,
 * 0 outside it), for the clients' catalog and capture's; the name as a literal, since D1
 * refuses a bound one to pragma_table_info.
 */
export function tableColumnsSql(table: string): string {
  return `SELECT name, type, pk, "notnull" FROM pragma_table_info(${literal(table)}, 'main') ORDER BY cid`;
}

/**
 * The unique indexes of `table` that may name its rows: not partial, not its primary key's
 * (the first round of `uniqueColumns`; pragma functions with literal arguments, as D1 allows).
 */
export function uniqueIndexesSql(table: string): string {
  return `SELECT name FROM pragma_index_list(${literal(table)}, 'main') WHERE "unique" = 1 AND partial = 0 AND origin <> 'pk'`;
}

/** The key columns of `indexes`, a row each (`idx`, `cid`, `name`): the second round. */
export function indexColumnsSql(indexes: readonly string[]): string {
  return indexes
    .map(
      (i) => `SELECT ${literal(i)} AS idx, cid, name FROM pragma_index_info(${literal(i)}, 'main')`,
    )
    .join(" UNION ALL ");
}

/**
 * The columns of a table each of which names its rows: NOT NULL (`notNull`, from
 * `tableColumnsSql`'s rows), with a unique index of that column alone (`parts`, the rows of
 * `indexColumnsSql`); an index on an expression (cid below 0) names none.
 */
export function uniqueColumns(
  parts: readonly Record<string, unknown>[],
  notNull: ReadonlySet<string>,
): string[] {
  const byIndex = new Map<unknown, Record<string, unknown>[]>();
  for (const p of parts) byIndex.set(p.idx, [...(byIndex.get(p.idx) ?? []), p]);
  const out = new Set<string>();
  for (const [, cols] of byIndex) {
    const only = cols.length === 1 ? cols[0]! : undefined;
    if (only && Number(only.cid) >= 0 && notNull.has(String(only.name))) out.add(String(only.name));
  }
  return [...out];
}
const TABLE_SQL = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?";

/**
 * Each probe of a column's collation: a value given the column's collation (a compound
 * select's first column lends its collation to its rows), a comparison, and what it gives
 * by code point. SQLite's catalog does not name a column's collation; these show NOCASE,
 * RTRIM and the usual custom ones (case- or accent-blind, natural or punctuation-blind).
 */
const COLLATION_PROBES: readonly [value: string, comparison: string, binary: 0 | 1][] = [
  ["a", "= 'A'", 0],
  ["a", "= 'a '", 0],
  ["a", "< 'B'", 0],
  ["é", "< 'f'", 0],
  ["10", "< '9'", 1],
  ["a-b", "< 'ab'", 1],
];

/**
 * One row whose `p<i>_<j>` is probe j of `columns[i]` on `table`: see sqliteCollations.
 */
export function collationProbeSql(table: string, columns: readonly string[]): string {
  const terms = columns.flatMap((column, i) =>
    COLLATION_PROBES.map(
      ([value, comparison], j) =>
        `(SELECT x ${comparison} FROM (SELECT ${quote(column)} AS x FROM ${quote(table)} WHERE 0 UNION ALL SELECT ${literal(value)})) AS p${i}_${j}`,
    ),
  );
  return `SELECT ${terms.join(", ")}`;
}

/**
 * How each of `columns` compares its text, from collationProbeSql's row: "binary" where
 * every probe agrees with code points, else "other" (equality too may differ).
 */
export function sqliteCollations(
  row: Record<string, unknown> | undefined,
  columns: readonly string[],
): ("binary" | "other")[] {
  return columns.map((_, i) =>
    COLLATION_PROBES.every(([, , binary], j) => Number(row?.[`p${i}_${j}`]) === binary)
      ? "binary"
      : "other",
  );
}

interface TableInfoRow {
  name: string;
  type: string;
  notnull: number;
  dflt_value: string | null;
  pk: number;
}

interface ForeignKeyRow {
  table: string;
  from: string;
  to: string | null;
  on_delete: string;
  on_update: string;
}

/**
 * A discovered table from `pragma_table_info`: served when it has a single-column primary
 * key (`table`), else only its columns (change capture records every table). `wr` is
 * pragma_table_list's WITHOUT ROWID flag.
 */
function tableMeta(
  source: string,
  name: string,
  wr: number,
  rows: TableInfoRow[],
): { table?: TableMeta; columns: Map<string, ColumnMeta> } {
  const keys = rows.filter((r) => r.pk > 0);
  const columns = new Map<string, ColumnMeta>();
  for (const r of rows) {
    columns.set(r.name, {
      name: r.name,
      kind: columnKind(r.type),
      nullable: r.notnull === 0 && r.pk === 0,
      affinity: columnAffinity(r.type),
      defaultSql: r.dflt_value,
    });
  }
  if (keys.length !== 1) return { columns };
  const pk = columns.get(keys[0]!.name)!;
  const info = tableInfo(name, columns.values(), pk);
  const rowidAlias = wr === 0 && keys[0]!.type.toUpperCase() === "INTEGER";
  return { table: { source, info, columns, pk, rowidAlias }, columns };
}

/** Each child's `pragma_foreign_key_list` rows (one per column of a foreign key). */
function* foreignKeyLists(children: Iterable<string>): Steps<Map<string, ForeignKeyRow[]>> {
  const rows = new Map<string, ForeignKeyRow[]>();
  for (const child of children) {
    const list = yield { sql: FOREIGN_KEY_LIST_SQL, params: [child] };
    rows.set(child, list as unknown as ForeignKeyRow[]);
  }
  return rows;
}

/** Foreign keys by parent table, from each child's `pragma_foreign_key_list` rows. */
export function foreignKeysByParent(
  tables: Map<string, TableMeta>,
  rowsOf: Map<string, ForeignKeyRow[]>,
): Map<string, ForeignKey[]> {
  const fks = new Map<string, ForeignKey[]>();
  for (const [child, rows] of rowsOf) {
    for (const r of rows) {
      const parent = tables.get(r.table);
      if (!parent) continue;
      const entry = {
        table: child,
        from: r.from,
        to: r.to ?? parent.pk.name,
        onDelete: r.on_delete.toUpperCase(),
        onUpdate: r.on_update.toUpperCase(),
      };
      fks.set(r.table, [...(fks.get(r.table) ?? []), entry]);
    }
  }
  return fks;
}

/**
 * Refuses, before the write, a value SQLite would convert by column affinity: a numeric
 * string into a column of numeric affinity becomes a number, a number into a text column
 * becomes text. better-sqlite3 checks the stored row and rolls back (checkStored); D1 has
 * no transaction open after the statement to roll back.
 */
export function refuseConverted(table: TableMeta, given: Map<string, unknown>): void {
  for (const [name, value] of given) {
    const column = table.columns.get(name);
    if (!column || value === null) continue;
    const numericAffinity = column.affinity !== "text" && column.affinity !== "blob";
    if (typeof value === "string" && numericAffinity && mayLookNumeric(value)) {
      throw badBody(
        table.source,
        `column "${name}": SQLite would store this ${column.kind} value as a number; send a non-numeric ${column.kind === "date" ? "date such as 2024-01-31" : "string"}`,
      );
    }
    if (typeof value === "number" && column.affinity === "text") {
      throw badBody(
        table.source,
        `column "${name}": SQLite would store this number as text (column affinity)`,
      );
    }
  }
}

/**
 * SQLite's dialect for a source named `source` (better-sqlite3's "sqlite", "d1"); tables
 * whose names match `internal` are the driver's own and never served.
 */
export function sqliteDialect(source: string, internal: RegExp): Dialect<ColumnMeta, TableMeta> {
  return {
    placeholder: () => "?",
    bind: (value) => value,
    tableName: (table) => quote(table.info.name),
    selectList: () => "*",
    keyMatch,
    filter: compileFilter,
    orderBy: compileSort,
    window: (limit, offset) => `LIMIT ${limit} OFFSET ${offset}`,
    keyOrder: (table) => quote(table.pk.name),
    // BEGIN IMMEDIATE holds the database's write lock for the whole transaction.
    lock: "",
    // SQLite has no `SET x = DEFAULT`; the default is SQL from the database's own schema.
    resetValue: (column) => (column.defaultSql === null ? "NULL" : `(${column.defaultSql})`),
    assignsKey: (table) => table.rowidAlias,
    checkValues: () => {},
    checkStored,
    refuseConverted,
    *discover() {
      const tables = new Map<string, TableMeta>();
      const skipped = new Map<string, Map<string, ColumnMeta>>();
      for (const row of yield { sql: TABLE_LIST_SQL, params: [] }) {
        const name = String(row.name);
        if (internal.test(name) || name.startsWith(CAPTURE_PREFIX)) continue;
        const info = (yield { sql: TABLE_INFO_SQL, params: [name] }) as unknown as TableInfoRow[];
        const { table, columns } = tableMeta(source, name, Number(row.wr), info);
        if (table) tables.set(name, table);
        else skipped.set(name, columns);
      }
      return { tables, skipped };
    },
    *foreignKeys(tables) {
      return foreignKeysByParent(tables, yield* foreignKeyLists(tables.keys()));
    },
    *foreignKeyActions() {
      const names: string[] = [];
      for (const row of yield { sql: TABLE_LIST_SQL, params: [] }) {
        const name = String(row.name);
        if (!internal.test(name) && !name.startsWith(CAPTURE_PREFIX)) names.push(name);
      }
      const actions: ForeignKeyAction[] = [];
      for (const [child, rows] of yield* foreignKeyLists(names)) {
        for (const r of rows) {
          const [onDelete, onUpdate] = [r.on_delete.toUpperCase(), r.on_update.toUpperCase()];
          actions.push({ parent: r.table, child, onDelete, onUpdate });
        }
      }
      return actions;
    },
    *triggerBodies(table) {
      const triggers = yield { sql: TRIGGERS_SQL, params: [table] };
      // Capture's own triggers write only its change table.
      return triggers
        .filter((t) => !isCaptureTrigger(String(t.name)))
        .map((t) => String(t.sql ?? ""));
    },
    *replacesOnConflict(table) {
      const [own] = yield { sql: TABLE_SQL, params: [table] };
      return /ON\s+CONFLICT\s+REPLACE/i.test(String(own?.sql ?? ""));
    },
  };
}
