import type { CaptureStatus } from "../../core/capture.ts";
import { literal, quote } from "../schema.ts";

/**
 * The SQL text of change capture in SQLite, for any driver: better-sqlite3
 * (sql/sqlite/capture.ts), D1 through its binding or through wrangler (sql/d1/capture.ts, the
 * `capture --d1` command), a migration file. Plain strings from table names and columns,
 * no I/O: every database gets the same change table and the same triggers.
 */

/** Tables and triggers edgecache owns; the source never serves them. */
export const CAPTURE_PREFIX = "_edgecache_";
/** The change table: one row per captured row change, in commit order (`seq`). */
export const CHANGES = "_edgecache_changes";
/** One row: which node consumes the change table, until when, and the installation's id. */
export const LEASE = "_edgecache_capture";
const TRIGGER_PREFIX = "edgecache_capture_";

const OPS = ["insert", "update", "delete"] as const;

/** A table to capture: its name and its columns, as the source reads them. */
export interface CapturedTable {
  name: string;
  columns: readonly string[];
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
function rowJson(alias: "NEW" | "OLD", columns: readonly string[]): string {
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

/** One row (`n` = 1) when capture is installed, none otherwise. */
export const CAPTURE_INSTALLED_SQL = `SELECT 1 AS n FROM sqlite_master WHERE type = 'table' AND name = '${CHANGES}'`;

/** With capture installed: the backlog (`backlog`) and the installation's id (`id`). */
export const CAPTURE_BACKLOG_SQL = `SELECT (SELECT count(*) FROM ${CHANGES}) AS backlog,
  (SELECT install FROM ${LEASE} WHERE id = 1) AS id`;

/**
 * The statements that install capture, in order: the change table and the lease row (kept
 * if there), then for each table its three AFTER triggers, each dropped first so running
 * them again replaces them. `drop` names capture triggers to drop besides (those of tables
 * no longer captured). `install` names the installation (kept by a later install).
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
  ];
  const created = new Set<string>();
  for (const { name, columns } of tables) {
    for (const op of OPS) {
      const trigger = `${TRIGGER_PREFIX}${name}_${op}`;
      created.add(trigger);
      const old = op === "insert" ? "NULL" : rowJson("OLD", columns);
      const neu = op === "delete" ? "NULL" : rowJson("NEW", columns);
      statements.push(
        `DROP TRIGGER IF EXISTS ${quote(trigger)}`,
        `CREATE TRIGGER ${quote(trigger)} AFTER ${op.toUpperCase()} ON ${quote(name)}
BEGIN
  INSERT INTO ${CHANGES} (tbl, op, old, new, at)
  VALUES (${literal(name)}, '${op}', ${old}, ${neu}, ${NOW_MS});
END`,
      );
    }
  }
  const stale = (options.drop ?? []).filter((t) => isCaptureTrigger(t) && !created.has(t));
  return [...stale.map((t) => `DROP TRIGGER IF EXISTS ${quote(t)}`), ...statements];
}

/** The statements that remove capture: the `triggers` named (capture's own) and its tables. */
export function captureUninstallSql(triggers: readonly string[]): string[] {
  return [
    ...triggers.filter(isCaptureTrigger).map((t) => `DROP TRIGGER IF EXISTS ${quote(t)}`),
    `DROP TABLE IF EXISTS ${CHANGES}`,
    `DROP TABLE IF EXISTS ${LEASE}`,
  ];
}

/**
 * The status from what the catalog queries returned: `triggers` (CAPTURE_TRIGGERS_SQL),
 * `backlog` (CAPTURE_BACKLOG_SQL's row, undefined when not installed), and the tables that
 * should be captured (`served`).
 */
export function captureStatusOf(
  triggers: readonly { table: string }[],
  backlog: { backlog: number; id: string | null } | undefined,
  served: readonly string[],
): CaptureStatus {
  if (backlog === undefined) return { installed: false, tables: [], missing: [], backlog: 0 };
  const tables = [...new Set(triggers.map((t) => t.table))].sort();
  return {
    installed: true,
    id: backlog.id ?? undefined,
    tables,
    missing: served.filter((name) => !tables.includes(name)),
    backlog: backlog.backlog,
  };
}
