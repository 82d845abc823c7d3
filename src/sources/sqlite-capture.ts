import type Database from "better-sqlite3";
import {
  API_GRACE_MS,
  type CapturedChange,
  type CaptureFeed,
  type CaptureStatus,
  capturedEvent,
} from "../core/capture.ts";
import { literal, quote } from "./sql.ts";

/**
 * Change capture in SQLite: AFTER triggers on every served table write each row change
 * (old and new rows as JSON) into a change table, which the node tails: `PRAGMA
 * data_version` tells cheaply whether another connection committed. SQLite has one
 * writer at a time, so the change table's order is the commit order.
 *
 * The data API's own writes go through the same triggers: their rows carry the write's
 * mark, and are removed once the data API has recorded the write (see ownChanges).
 */

/** Tables and triggers edgecache owns; the source never serves them. */
export const CAPTURE_PREFIX = "_edgecache_";
const CHANGES = "_edgecache_changes";
/** One row: which node consumes the change table, and until when (ms since the epoch). */
const LEASE = "_edgecache_capture";
const TRIGGER_PREFIX = "edgecache_capture_";

/** How long a node's right to consume lasts without renewal, ms. */
const LEASE_MS = 3000;
/** How often `wait` looks at data_version, ms. */
const WATCH_MS = 2;

const OPS = ["insert", "update", "delete"] as const;

/** Whether a trigger is one of capture's own (not a user's, for `effects`). */
export function isCaptureTrigger(name: string): boolean {
  return name.startsWith(TRIGGER_PREFIX);
}

/** The row as JSON text; a BLOB (which JSON cannot hold) as hex. */
function rowJson(alias: "NEW" | "OLD", columns: readonly string[]): string {
  const pairs = columns.map((c) => {
    const value = `${alias}.${quote(c)}`;
    return `${literal(c)}, CASE WHEN typeof(${value}) = 'blob' THEN hex(${value}) ELSE ${value} END`;
  });
  return `json_object(${pairs.join(", ")})`;
}

/** ms since the epoch, from inside SQLite. */
const NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

function hasTable(db: Database.Database, name: string): boolean {
  return (
    db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !==
    undefined
  );
}

function captureTriggers(db: Database.Database): { name: string; table: string }[] {
  return db
    .prepare("SELECT name, tbl_name AS \"table\" FROM sqlite_master WHERE type = 'trigger'")
    .all()
    .filter((t) => isCaptureTrigger((t as { name: string }).name)) as {
    name: string;
    table: string;
  }[];
}

/** Creates the change table and the triggers of `tables` (replacing older ones) at once. */
export function installSqliteCapture(
  db: Database.Database,
  tables: readonly { name: string; columns: readonly string[] }[],
): void {
  db.transaction(() => {
    db.exec(`CREATE TABLE IF NOT EXISTS ${CHANGES} (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      tbl TEXT NOT NULL, op TEXT NOT NULL, old TEXT, new TEXT, at INTEGER NOT NULL,
      api TEXT)`);
    db.exec(`CREATE TABLE IF NOT EXISTS ${LEASE} (
      id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, until INTEGER NOT NULL,
      install TEXT NOT NULL)`);
    db.prepare(
      `INSERT OR IGNORE INTO ${LEASE} (id, holder, until, install) VALUES (1, '', 0, ?)`,
    ).run(crypto.randomUUID());
    for (const t of captureTriggers(db)) db.exec(`DROP TRIGGER ${quote(t.name)}`);
    for (const { name, columns } of tables) {
      for (const op of OPS) {
        const old = op === "insert" ? "NULL" : rowJson("OLD", columns);
        const neu = op === "delete" ? "NULL" : rowJson("NEW", columns);
        db.exec(
          `CREATE TRIGGER ${quote(`${TRIGGER_PREFIX}${name}_${op}`)} AFTER ${op.toUpperCase()} ON ${quote(name)}
           BEGIN
             INSERT INTO ${CHANGES} (tbl, op, old, new, at)
             VALUES (${literal(name)}, '${op}', ${old}, ${neu}, ${NOW_MS});
           END`,
        );
      }
    }
  }).immediate();
}

export function uninstallSqliteCapture(db: Database.Database): void {
  db.transaction(() => {
    for (const t of captureTriggers(db)) db.exec(`DROP TRIGGER ${quote(t.name)}`);
    db.exec(`DROP TABLE IF EXISTS ${CHANGES}`);
    db.exec(`DROP TABLE IF EXISTS ${LEASE}`);
  }).immediate();
}

export function sqliteCaptureStatus(
  db: Database.Database,
  served: readonly string[],
): CaptureStatus {
  if (!hasTable(db, CHANGES)) return { installed: false, tables: [], missing: [], backlog: 0 };
  const tables = [...new Set(captureTriggers(db).map((t) => t.table))].sort();
  const { n } = db.prepare(`SELECT count(*) AS n FROM ${CHANGES}`).get() as { n: number };
  const lease = db.prepare(`SELECT install FROM ${LEASE} WHERE id = 1`).get() as
    | { install: string }
    | undefined;
  return {
    installed: true,
    id: lease?.install,
    tables,
    missing: served.filter((name) => !tables.includes(name)),
    backlog: n,
  };
}

/**
 * The data API's own writes in the change table. Before a write, `before` notes the last
 * row; after it, in the same transaction (which holds the write lock, so nothing else was
 * added in between), `mark` gives the write's rows its mark; once the data API has
 * recorded the write, `forget` removes them. Rows whose write is never recorded (the node
 * died) stay, and are captured after API_GRACE_MS. Cheap when capture is not installed.
 */
export function ownChanges(db: Database.Database): {
  before(): number | undefined;
  mark(before: number, mark: string): void;
  forget(mark: string): void;
} {
  const installed = db.prepare(
    `SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '${CHANGES}'`,
  );
  let last: Database.Statement | undefined;
  return {
    before() {
      if (installed.get() === undefined) return undefined;
      last ??= db.prepare(`SELECT coalesce(max(seq), 0) AS seq FROM ${CHANGES}`);
      return (last.get() as { seq: number }).seq;
    },
    mark(before, mark) {
      db.prepare(`UPDATE ${CHANGES} SET api = ? WHERE seq > ?`).run(mark, before);
    },
    forget(mark) {
      if (installed.get() === undefined) return;
      db.prepare(`DELETE FROM ${CHANGES} WHERE api = ?`).run(mark);
    },
  };
}

/**
 * The change table as a CaptureFeed. `columnsOf` gives a served table's columns; a row
 * recorded with other columns (the table changed since the install) loses its rows.
 */
export function sqliteCaptureFeed(
  db: Database.Database,
  columnsOf: (table: string) => readonly string[] | undefined,
  /** Runs a write in a transaction, waiting for the write lock without blocking. */
  locked: <T>(work: () => T) => Promise<T>,
): CaptureFeed {
  const me = crypto.randomUUID();
  let leaseUntil = 0;
  let version = db.pragma("data_version", { simple: true }) as number;
  const changed = () => {
    const now = db.pragma("data_version", { simple: true }) as number;
    if (now === version) return false;
    version = now;
    return true;
  };
  return {
    async installed() {
      return hasTable(db, CHANGES);
    },
    async lead() {
      const now = Date.now();
      if (now < leaseUntil - LEASE_MS / 2) return true;
      try {
        const taken = db
          .prepare(
            `UPDATE ${LEASE} SET holder = ?, until = ? WHERE id = 1 AND (holder = ? OR until < ?)`,
          )
          .run(me, now + LEASE_MS, me, now);
        if (taken.changes === 1) leaseUntil = now + LEASE_MS;
      } catch {
        // Busy: another connection writes. Keep what is left of the lease.
      }
      return now < leaseUntil;
    },
    async read(limit) {
      const rows = db
        .prepare(
          `SELECT seq, tbl, op, old, new, at FROM ${CHANGES}
            WHERE api IS NULL OR at < ? ORDER BY seq LIMIT ?`,
        )
        .all(Date.now() - API_GRACE_MS, limit) as {
        seq: number;
        tbl: string;
        op: string;
        old: string | null;
        new: string | null;
        at: number;
      }[];
      return rows.map((r): CapturedChange => {
        return {
          seq: r.seq,
          at: r.at,
          event: capturedEvent(r.tbl, r.op, r.old, r.new, columnsOf(r.tbl)),
        };
      });
    },
    async pending() {
      return db.prepare(`SELECT 1 FROM ${CHANGES} LIMIT 1`).get() !== undefined;
    },
    async consume(changes) {
      const remove = db.prepare(`DELETE FROM ${CHANGES} WHERE seq = ?`);
      await locked(() => {
        for (const change of changes) remove.run(change.seq);
      });
    },
    async wait(ms) {
      const until = performance.now() + ms;
      while (performance.now() < until) {
        if (changed()) return;
        await new Promise((resolve) => setTimeout(resolve, WATCH_MS));
      }
    },
    async close() {
      // Hand the table over at once, not after the lease runs out (a restart replays sooner).
      if (leaseUntil > Date.now()) {
        try {
          await locked(() =>
            db.prepare(`UPDATE ${LEASE} SET until = 0 WHERE id = 1 AND holder = ?`).run(me),
          );
        } catch {
          // Busy or closed: the lease runs out by itself.
        }
        leaseUntil = 0;
      }
    },
  };
}
