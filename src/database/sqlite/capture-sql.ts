import type { CaptureStatus } from "../../core/capture-feed.ts";
import type { Steps } from "../dialect.ts";
import { literal, quote } from "../schema.ts";

/**
 * The SQL text of change capture in SQLite, for any driver: better-sqlite3
 * (database/sqlite/change-table.ts), D1 through its binding or through wrangler (database/d1/change-table.ts, the
 * `capture --d1` command), a migration file. Plain strings from table names and columns,
 * no I/O: every database gets the same change table and the same triggers.
 */

/** Tables and triggers edgecache owns; the source never serves them. */
export const CAPTURE_PREFIX = "_edgecache_";
/** The change table: one row per captured row change, in commit order (`seq`). */
export const CHANGES = "_edgecache_changes";
/** One row: which node consumes the change table, until when, and the installation's id. */
export const LEASE = "_edgecache_capture";
/**
 * The rows an insert or update of a table conflicts with, noted before it (see
 * replaceTriggers): those a REPLACE resolution deletes without firing their delete trigger.
 */
const REPLACED = "_edgecache_replaced";
const TRIGGER_PREFIX = "edgecache_capture_";

const OPS = ["insert", "update", "delete"] as const;

/** A column of a unique key, with the collation its index compares by. */
export interface KeyColumn {
  name: string;
  collation: string;
}

/** What tells the rows a write conflicts with (see replaceTriggers). */
export interface TableKeys {
  /** A rowid table: its rows are named by rowid. Otherwise WITHOUT ROWID, named by `primaryKey`. */
  rowid: boolean;
  /** The primary key's columns (those of a WITHOUT ROWID table name its rows). */
  primaryKey: readonly string[];
  /** Every unique index on columns (the primary key's among them, but not a rowid alias). */
  unique: readonly (readonly KeyColumn[])[];
}

/** A table to capture: its name, its columns as the source reads them, and its keys. */
export interface CapturedTable {
  name: string;
  columns: readonly string[];
  /** Absent: no key a write can conflict on (no primary key, no unique index on columns). */
  keys?: TableKeys;
}

/** Whether a trigger is one of capture's own (not a user's, for `effects`). */
export function isCaptureTrigger(name: string): boolean {
  return name.startsWith(TRIGGER_PREFIX);
}

/**
 * A REAL as JSON with 17 significant digits, which read back as the same double: before
 * SQLite 3.47, json_object writes 15 (0.30000000000000004 as 0.3). The `!` flag lifts
 * printf's limit of 16; infinities are left to json_object.
 */
const EXACT_REAL = (value: string) => `json(printf('%!.17g', ${value}))`;
/** What the SQL of a trigger that records REALs exactly holds (see `recordsExactReals`). */
const EXACT_REAL_MARK = "json(printf('%!.17g',";

/** The row as JSON text; a BLOB (which JSON cannot hold) as hex; a REAL with every digit. */
function rowJson(alias: string, columns: readonly string[]): string {
  const pairs = columns.map((c) => {
    const value = `${alias}.${quote(c)}`;
    return `${literal(c)}, CASE WHEN typeof(${value}) = 'blob' THEN hex(${value}) WHEN typeof(${value}) = 'real' AND abs(${value}) <= 1.7976931348623157e308 THEN ${EXACT_REAL(value)} ELSE ${value} END`;
  });
  return `json_object(${pairs.join(", ")})`;
}

/**
 * Whether capture's triggers (rows of CAPTURE_TRIGGERS_SQL) all record REALs exactly:
 * triggers installed by an earlier version may have rounded them to 15 digits (install
 * again to replace them).
 */
export function recordsExactReals(triggers: readonly { sql?: unknown }[]): boolean {
  return triggers.length > 0 && triggers.every((t) => String(t.sql).includes(EXACT_REAL_MARK));
}

/** ms since the epoch, from inside SQLite. */
const NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/** Lists capture's triggers: rows of `name` and `table`. */
export const CAPTURE_TRIGGERS_SQL = `SELECT name, tbl_name AS "table", sql FROM sqlite_master
  WHERE type = 'trigger' AND substr(name, 1, ${TRIGGER_PREFIX.length}) = '${TRIGGER_PREFIX}'`;

/**
 * Whether a capture trigger (a row of CAPTURE_TRIGGERS_SQL) records its table's changes: the
 * AFTER triggers do; the BEFORE ones of replaceTriggers only note rows for them. A table is
 * captured while its recording triggers are there, whatever is left of the others.
 */
export function recordsChanges(trigger: { name: string }): boolean {
  return !/_(insert|update)_before$/.test(trigger.name);
}

/** One row (`n` = 1) when capture is installed, none otherwise. */
export const CAPTURE_INSTALLED_SQL = `SELECT 1 AS n FROM sqlite_master WHERE type = 'table' AND name = '${CHANGES}'`;

/** One row (`n` = 1) when the triggers record the rows a REPLACE deletes (see CAPTURE_BACKLOG_SQL). */
export const CAPTURE_REPLACES_SQL = `SELECT 1 AS n FROM sqlite_master WHERE type = 'table' AND name = '${REPLACED}'`;

/**
 * With capture installed: the backlog (`backlog`), the installation's id (`id`), and
 * whether its triggers record the rows a REPLACE deletes (`replaces`: an install by an
 * earlier version has no notes table).
 */
export const CAPTURE_BACKLOG_SQL = `SELECT (SELECT count(*) FROM ${CHANGES}) AS backlog,
  (SELECT install FROM ${LEASE} WHERE id = 1) AS id,
  (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '${REPLACED}') AS replaces`;

/**
 * The statements that install capture, in order: the change table, the lease row (kept
 * if there) and the notes of replaced rows, then for each table its three AFTER triggers
 * (and the BEFORE ones of replaceTriggers), each dropped first so running them again
 * replaces them. `drop` names capture triggers to drop besides (those of tables no longer
 * captured). `install` names the installation (kept by a later install).
 */
export function captureInstallSql(
  tables: readonly CapturedTable[],
  options: { drop?: readonly string[]; install: string },
): string[] {
  const statements = [
    `CREATE TABLE IF NOT EXISTS ${CHANGES} (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      tbl TEXT NOT NULL, op TEXT NOT NULL, old TEXT, new TEXT, at INTEGER NOT NULL,
      api TEXT)`,
    `CREATE TABLE IF NOT EXISTS ${LEASE} (
      id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, until INTEGER NOT NULL,
      install TEXT NOT NULL)`,
    `INSERT OR IGNORE INTO ${LEASE} (id, holder, until, install) VALUES (1, '', 0, ${literal(options.install)})`,
    `CREATE TABLE IF NOT EXISTS ${REPLACED} (tbl TEXT NOT NULL, k, old TEXT NOT NULL)`,
    `CREATE INDEX IF NOT EXISTS ${REPLACED}_tbl ON ${REPLACED} (tbl)`,
  ];
  const created = new Set<string>();
  const create = (trigger: string, sql: string) => {
    created.add(trigger);
    statements.push(`DROP TRIGGER IF EXISTS ${quote(trigger)}`, sql);
  };
  for (const table of tables) {
    const { name, columns } = table;
    const replace = table.keys && replaceTriggers(name, columns, table.keys);
    for (const op of OPS) {
      const trigger = `${TRIGGER_PREFIX}${name}_${op}`;
      const old = op === "insert" ? "NULL" : rowJson("OLD", columns);
      const neu = op === "delete" ? "NULL" : rowJson("NEW", columns);
      const replaced = op === "delete" ? undefined : replace?.[op];
      if (replaced) create(`${trigger}_before`, replaced.before);
      create(
        trigger,
        `CREATE TRIGGER ${quote(trigger)} AFTER ${op.toUpperCase()} ON ${quote(name)}
BEGIN${replaced ? `\n  ${replaced.after};` : ""}
  INSERT INTO ${CHANGES} (tbl, op, old, new, at)
  VALUES (${literal(name)}, '${op}', ${old}, ${neu}, ${NOW_MS});
END`,
      );
    }
  }
  const stale = (options.drop ?? []).filter((t) => isCaptureTrigger(t) && !created.has(t));
  return [...stale.map((t) => `DROP TRIGGER IF EXISTS ${quote(t)}`), ...statements];
}

/**
 * What records the rows a REPLACE deletes: SQLite deletes the rows an insert or update
 * conflicts with (INSERT OR REPLACE, REPLACE INTO, UPDATE OR REPLACE, a constraint's ON
 * CONFLICT REPLACE) without firing their delete triggers (unless the connection set
 * recursive_triggers). Before each row is written, a trigger notes the rows it conflicts
 * with on the rowid or on any unique key (the table's notes cleared first); the AFTER
 * trigger records as deleted, ahead of the row's own change, those noted rows that are
 * gone: no longer there, or whose rowid (key) the written row took. A write that did not
 * happen (OR IGNORE, ON CONFLICT DO UPDATE) has no AFTER trigger of its kind, and an
 * upsert's update one finds the rows it noted still there: nothing is recorded.
 *
 * The BEFORE trigger runs only when the table has notes to clear or the row conflicts;
 * for an update, only when it changes a key's column too (one that changes none conflicts
 * with nothing new), and its AFTER trigger then records no delete. The notes are rows of
 * REPLACED, a table in the same schema (a trigger cannot write a TEMP one), cleared by the
 * next write of the table that has them.
 */
function replaceTriggers(
  table: string,
  columns: readonly string[],
  keys: TableKeys,
): Record<"insert" | "update", { before: string; after: string }> {
  const t = quote(table);
  const tbl = literal(table);
  const col = (alias: string, name: string) => `${alias}.${quote(name)}`;
  // Rows of `c` (the table) that conflict with NEW, one condition per key (each searches its
  // index; SQLite scans for an OR of them once a term names a collation): same rowid, or same
  // values of a unique key under its index's collations.
  const conflicts = [
    ...(keys.rowid ? ["c.rowid = NEW.rowid"] : []),
    ...keys.unique.map((key) =>
      key
        .map((k) => `${col("c", k.name)} = ${col("NEW", k.name)} COLLATE ${quote(k.collation)}`)
        .join(" AND "),
    ),
  ];
  // A noted row's key, from its JSON (WITHOUT ROWID tables).
  const noted = (name: string) => `json_extract(n.old, ${literal(`$."${name}"`)})`;
  const pk = keys.primaryKey;
  const same = (alias: string) => pk.map((k) => `${col(alias, k)} = ${noted(k)}`).join(" AND ");
  const gone = keys.rowid
    ? `n.k = NEW.rowid OR NOT EXISTS (SELECT 1 FROM ${t} AS c WHERE c.rowid = n.k)`
    : `(${same("NEW")}) OR NOT EXISTS (SELECT 1 FROM ${t} AS c WHERE ${same("c")})`;
  const self = keys.rowid
    ? "c.rowid <> OLD.rowid"
    : `NOT (${pk.map((k) => `${col("c", k)} = ${col("OLD", k)}`).join(" AND ")})`;
  const keyColumns = [...new Set([...pk, ...keys.unique.flat().map((k) => k.name)])];
  const changed = [
    ...(keys.rowid ? ["NEW.rowid IS NOT OLD.rowid"] : []),
    ...keyColumns.map((k) => `${col("NEW", k)} IS NOT ${col("OLD", k)}`),
  ].join(" OR ");
  const before = (op: "insert" | "update") => {
    const trigger = quote(`${TRIGGER_PREFIX}${table}_${op}_before`);
    // An update does not conflict with its own row.
    const own = op === "update" ? ` AND ${self}` : "";
    const notes = conflicts.map(
      (where) => `
  INSERT INTO ${REPLACED} (tbl, k, old)
  SELECT ${tbl}, ${keys.rowid ? "c.rowid" : "NULL"}, ${rowJson("c", columns)} FROM ${t} AS c
  WHERE ${where}${own};`,
    );
    // Only when there are notes to clear or rows to note: a write without a conflict then
    // costs its lookups alone, and the AFTER trigger finds the table's notes empty.
    const when = [
      `EXISTS (SELECT 1 FROM ${REPLACED} WHERE tbl = ${tbl})`,
      ...conflicts.map((where) => `EXISTS (SELECT 1 FROM ${t} AS c WHERE ${where}${own})`),
    ].join(" OR ");
    return `CREATE TRIGGER ${trigger} BEFORE ${op.toUpperCase()} ON ${t}
WHEN ${op === "update" ? `(${changed}) AND (${when})` : when}
BEGIN
  DELETE FROM ${REPLACED} WHERE tbl = ${tbl};${notes.join("")}
END`;
  };
  // A row noted by two keys is one delete (its JSON names it: a key's values differ).
  const after = (op: "insert" | "update") =>
    `INSERT INTO ${CHANGES} (tbl, op, old, new, at)
  SELECT ${tbl}, 'delete', n.old, NULL, ${NOW_MS} FROM ${REPLACED} AS n
  WHERE ${op === "update" ? `(${changed}) AND ` : ""}n.tbl = ${tbl} AND (${gone})
  GROUP BY n.old ORDER BY min(n.rowid)`;
  return {
    insert: { before: before("insert"), after: after("insert") },
    update: { before: before("update"), after: after("update") },
  };
}

/** The statements that remove capture: the `triggers` named (capture's own) and its tables. */
export function captureUninstallSql(triggers: readonly string[]): string[] {
  return [
    ...triggers.filter(isCaptureTrigger).map((t) => `DROP TRIGGER IF EXISTS ${quote(t)}`),
    `DROP TABLE IF EXISTS ${CHANGES}`,
    `DROP TABLE IF EXISTS ${LEASE}`,
    `DROP TABLE IF EXISTS ${REPLACED}`,
  ];
}

/**
 * The status from what the catalog queries returned: `triggers` (CAPTURE_TRIGGERS_SQL),
 * `backlog` (CAPTURE_BACKLOG_SQL's row, undefined when not installed), and the tables that
 * should be captured (`served`).
 */
export function captureStatusOf(
  triggers: readonly { name: string; table: string }[],
  backlog: { backlog: number; id: string | null; replaces?: number } | undefined,
  served: readonly string[],
): CaptureStatus {
  if (backlog === undefined) return { installed: false, tables: [], missing: [], backlog: 0 };
  const tables = [...new Set(triggers.filter(recordsChanges).map((t) => t.table))].sort();
  return {
    installed: true,
    id: backlog.id ?? undefined,
    tables,
    missing: served.filter((name) => !tables.includes(name)),
    backlog: backlog.backlog,
    ...(Number(backlog.replaces) === 0 && {
      outdated: "installed by an earlier edgecache: the rows a REPLACE deletes are not recorded",
    }),
  };
}

/**
 * Terms per compound SELECT of the catalog queries: D1 allows 5 (SQLite 500), so a query
 * covers a few tables, and D1 and wrangler are given a round's queries at once.
 */
const COMPOUND_TERMS = 4;

/** `names` in queries of their `terms(literal name)` joined by UNION ALL, COMPOUND_TERMS at most. */
function unionAll(names: readonly string[], terms: (name: string) => string[]): string[] {
  const all = names.map((n) => terms(literal(n)));
  const per = Math.max(1, Math.floor(COMPOUND_TERMS / (all[0]?.length ?? 1)));
  const queries: string[] = [];
  for (let i = 0; i < all.length; i += per) {
    queries.push(
      all
        .slice(i, i + per)
        .flat()
        .join(" UNION ALL "),
    );
  }
  return queries;
}

/**
 * The first round of the catalog: queries of the tables' columns and unique indexes
 * (pragma functions with literal arguments, which D1 allows).
 */
export function tablesCatalogSql(names: readonly string[]): string[] {
  return unionAll(names, (t) => [
    `SELECT ${t} AS tbl, name AS col, pk, NULL AS idx, NULL AS origin FROM pragma_table_info(${t}, 'main')`,
    `SELECT ${t}, NULL, NULL, name, origin FROM pragma_index_list(${t}, 'main') WHERE "unique" = 1`,
  ]);
}

/** The second round: queries of the columns of the unique indexes the first found. */
export function indexesCatalogSql(first: readonly Record<string, unknown>[]): string[] {
  const indexes = first.filter((r) => r.idx !== null).map((r) => String(r.idx));
  return unionAll(indexes, (i) => [
    `SELECT ${i} AS idx, seqno, cid, name, coll, "key" FROM pragma_index_xinfo(${i}, 'main')`,
  ]);
}

/**
 * The columns and keys of the tables `names`, from the catalog, as steps (SQLite's install
 * runs them in its transaction). A unique index on an expression is left out: the rows a
 * REPLACE deletes through it are not recorded (see docs/guides/change-capture.md).
 */
export function* capturedTablesSteps(names: readonly string[]): Steps<CapturedTable[]> {
  const first: Record<string, unknown>[] = [];
  for (const sql of tablesCatalogSql(names)) first.push(...(yield { sql, params: [] }));
  const second: Record<string, unknown>[] = [];
  for (const sql of indexesCatalogSql(first)) second.push(...(yield { sql, params: [] }));
  return capturedTablesOf(first, second);
}

/**
 * The same over a connection that takes many statements at once (`run` answers each one's
 * rows): D1's batch, one call to wrangler. Two round trips.
 */
export async function capturedTablesBatched(
  names: readonly string[],
  run: (statements: string[]) => Promise<Record<string, unknown>[][]>,
): Promise<CapturedTable[]> {
  const first = names.length > 0 ? (await run(tablesCatalogSql(names))).flat() : [];
  const queries = indexesCatalogSql(first);
  const second = queries.length > 0 ? (await run(queries)).flat() : [];
  return capturedTablesOf(first, second);
}

/** The tables, in the order their columns came, from the two rounds' rows. */
function capturedTablesOf(
  first: readonly Record<string, unknown>[],
  parts: readonly Record<string, unknown>[],
): CapturedTable[] {
  const columns = first.filter((r) => r.idx === null);
  const indexes = first.filter((r) => r.idx !== null);
  const tables = new Map<string, { columns: string[]; pk: boolean }>();
  for (const c of columns) {
    const table = tables.get(String(c.tbl)) ?? { columns: [], pk: false };
    tables.set(String(c.tbl), table);
    table.columns.push(String(c.col));
    if (Number(c.pk) > 0) table.pk = true;
  }
  const partsOf = (idx: unknown) =>
    parts.filter((p) => p.idx === idx).sort((a, b) => Number(a.seqno) - Number(b.seqno));
  return [...tables].map(([name, { columns, pk }]) => {
    let rowid = true;
    let primaryKey: string[] = [];
    const unique: KeyColumn[][] = [];
    for (const index of indexes.filter((i) => i.tbl === name)) {
      const all = partsOf(index.idx);
      const key = all.filter((p) => Number(p.key) === 1);
      // A WITHOUT ROWID table's indexes hold its primary key, a rowid table's the rowid (cid -1).
      if (index.origin === "pk" && !all.some((p) => Number(p.cid) === -1)) {
        rowid = false;
        primaryKey = key.map((p) => String(p.name));
      }
      if (key.length === 0 || key.some((p) => Number(p.cid) < 0)) continue;
      unique.push(key.map((p) => ({ name: String(p.name), collation: String(p.coll) })));
    }
    const keyed = pk || unique.length > 0;
    return { name, columns, ...(keyed && { keys: { rowid, primaryKey, unique } }) };
  });
}
