import type Database from "better-sqlite3";
import {
  API_GRACE_MS,
  type CapturedChange,
  type CaptureFeed,
  type CaptureStatus,
  capturedChange,
  unref,
} from "../../core/capture-feed.ts";
import { renewDue, SQLITE_CAPTURE_LEASE } from "../../core/time/lease.ts";
import type { Steps } from "../dialect.ts";
import {
  CAPTURE_BACKLOG_SQL,
  CAPTURE_INSTALLED_SQL,
  CAPTURE_REPLACES_SQL,
  CAPTURE_TRIGGERS_SQL,
  CHANGES,
  capturedTablesSteps,
  captureInstallSql,
  captureStatusOf,
  captureUninstallSql,
  LEASE,
  recordsChanges,
  recordsExactReals,
} from "./capture-sql.ts";

/**
 * Change capture in SQLite: AFTER triggers on every served table write each row change
 * (old and new rows as JSON) into a change table, which the node tails: `PRAGMA
 * data_version` tells cheaply whether another connection committed. SQLite has one
 * writer at a time, so the change table's order is the commit order.
 *
 * The data API's own writes go through the same triggers: their rows carry the write's
 * mark, and are removed once the data API has recorded the write (see ownMarked).
 *
 * Installing, the status and the marks are steps (see Steps), so that every driver runs
 * them: better-sqlite3 synchronously, libSQL's client awaited.
 */

export { CAPTURE_PREFIX, isCaptureTrigger } from "./capture-sql.ts";

/** How long a node's right to consume lasts without renewal (SQLITE_CAPTURE_LEASE), ms. */
const LEASE_MS = SQLITE_CAPTURE_LEASE.ms;
/**
 * How often `wait` looks at data_version: WATCH_MS after a change was seen, each look that
 * finds none doubling the pause up to MAX_WATCH_MS. Looks follow the database's activity:
 * four a second while nothing is written, every few ms while writes come.
 */
const WATCH_MS = 2;
const MAX_WATCH_MS = 256;
/**
 * On a connection of edgecache's own: how often applied changes are deleted at most (all of
 * them in one statement), unless CONSUME_BATCH are waiting, ms.
 */
const CONSUME_MS = 1000;
const CONSUME_BATCH = 256;
/** The newest changes a read looks through for rows the data API marked (see read). */
const MARK_LOOK = 256;
/** Changes looked at when asked whether one waits that is not applied yet. */
const PENDING_LOOK = 64;
/** data_version (another connection committed) and schema_version (DDL), in one statement. */
const LOOK_SQL = `SELECT d.data_version AS data, s.schema_version AS schema
  FROM pragma_data_version() d, pragma_schema_version() s`;

function* captureTriggers(): Steps<{ name: string; table: string }[]> {
  return (yield { sql: CAPTURE_TRIGGERS_SQL, params: [] }) as { name: string; table: string }[];
}

/** Whether capture is installed: its change table exists. */
export function* captureInstalledSteps(): Steps<boolean> {
  return (yield { sql: CAPTURE_INSTALLED_SQL, params: [] }).length > 0;
}

/**
 * Creates the change table and the triggers of the tables named (replacing older ones),
 * from their columns and keys in the catalog: steps for one write transaction, so that
 * they are there at once or not at all.
 */
export function* installCaptureSteps(names: readonly string[]): Steps<void> {
  const tables = yield* capturedTablesSteps(names);
  const drop = (yield* captureTriggers()).map((t) => t.name);
  for (const sql of captureInstallSql(tables, { drop, install: crypto.randomUUID() })) {
    yield { sql, params: [] };
  }
}

/** Drops capture's triggers and tables: steps for one write transaction. */
export function* uninstallCaptureSteps(): Steps<void> {
  const triggers = (yield* captureTriggers()).map((t) => t.name);
  for (const sql of captureUninstallSql(triggers)) yield { sql, params: [] };
}

/** Whether capture is installed, with which tables and backlog; `served` should be captured. */
export function* captureStatusSteps(served: readonly string[]): Steps<CaptureStatus> {
  const backlog = (yield* captureInstalledSteps())
    ? ((yield { sql: CAPTURE_BACKLOG_SQL, params: [] })[0] as {
        backlog: number;
        id: string | null;
      })
    : undefined;
  return captureStatusOf(yield* captureTriggers(), backlog, served);
}

/** Removes the change table's rows of a data API write once it is recorded (see ownMarked). */
export const FORGET_OWN_SQL = `DELETE FROM ${CHANGES} WHERE api = ?`;

/**
 * A data API write's `steps` with its rows in the change table marked `mark`, in the same
 * transaction: the last row is noted before the write, and the rows after it marked after
 * (the transaction holds the write lock, so nothing else was added in between). Once the
 * data API has recorded the write, its rows are removed (FORGET_OWN_SQL). Rows whose write
 * is never recorded (the node died) stay, and are captured after API_GRACE_MS. Nothing is
 * added when capture is not installed; `marked` hears when rows were marked.
 */
export function* ownMarked<T>(
  steps: Steps<T>,
  mark: string | undefined,
  marked?: () => void,
): Steps<T> {
  if (mark === undefined || !(yield* captureInstalledSteps())) return yield* steps;
  const [last] = yield { sql: `SELECT coalesce(max(seq), 0) AS seq FROM ${CHANGES}`, params: [] };
  const result = yield* steps;
  yield { sql: `UPDATE ${CHANGES} SET api = ? WHERE seq > ?`, params: [mark, Number(last?.seq)] };
  marked?.();
  return result;
}

/** Marked writes kept at most while unrecorded (see MarkedWrites). */
const MARKED_KEPT = 4096;

/**
 * The marks of the writes whose transaction marked rows (capture was installed then), until
 * they are forgotten: a write that marked none has no rows to remove, as its own transaction
 * found, so forgetting it asks the catalog nothing. A mark whose write is never recorded
 * goes once MARKED_KEPT newer ones are held: its rows are captured after API_GRACE_MS, as a
 * dead node's are.
 */
export class MarkedWrites {
  readonly #marks = new Set<string>();

  /** A write's `steps` with its rows marked `mark` (see ownMarked), noting it if any were. */
  steps<T>(steps: Steps<T>, mark: string | undefined): Steps<T> {
    if (mark === undefined) return steps;
    return ownMarked(steps, mark, () => {
      this.#marks.add(mark);
      if (this.#marks.size > MARKED_KEPT) this.#marks.delete(this.#marks.values().next().value!);
    });
  }

  /** Whether the write marked `mark` marked rows; forgets it. */
  take(mark: string): boolean {
    return this.#marks.delete(mark);
  }
}

/**
 * What the capture feed needs of a SQLite connection, asynchronous so that any driver
 * fits: better-sqlite3 (see betterSqliteExecutor), libSQL's `client.execute`.
 */
export interface SqliteExecutor {
  /** Runs a read and returns its rows as objects. */
  all(sql: string, params: readonly unknown[]): Promise<Record<string, unknown>[]>;
  /** Runs a write at once, failing if another connection holds the write lock; rows changed. */
  run(sql: string, params: readonly unknown[]): Promise<number>;
  /** Runs a write, waiting for another connection's write lock if need be. */
  write(sql: string, params: readonly unknown[]): Promise<void>;
  /** How often `wait` looks at data_version, ms. */
  watchMs?: number;
  /**
   * How many connections it has opened so far, where it opens another after a failure
   * (see ownConnection): data_version compares within one connection only.
   */
  readonly opened?: number;
}

/** better-sqlite3 as a SqliteExecutor; `locked` runs a write once the write lock is free. */
export function betterSqliteExecutor(
  db: Database.Database,
  locked: <T>(work: () => T) => Promise<T>,
): SqliteExecutor {
  return {
    async all(sql, params) {
      return db.prepare(sql).all(...params) as Record<string, unknown>[];
    },
    async run(sql, params) {
      return db.prepare(sql).run(...params).changes;
    },
    async write(sql, params) {
      const statement = db.prepare(sql);
      await locked(() => statement.run(...params));
    },
  };
}

/**
 * The change table as a CaptureFeed over better-sqlite3. `columnsOf` gives a served table's
 * columns; a row recorded with other columns (the table changed since the install) loses
 * its rows.
 */
export function sqliteCaptureFeed(
  db: Database.Database,
  columnsOf: (table: string) => readonly string[] | undefined,
  /** Runs a write in a transaction, waiting for the write lock without blocking. */
  locked: <T>(work: () => T) => Promise<T>,
): CaptureFeed {
  return sqliteExecutorFeed(betterSqliteExecutor(db, locked), columnsOf);
}

/** Whether the change table exists: capture is installed. */
export async function sqliteCaptureInstalled(exec: SqliteExecutor): Promise<boolean> {
  return (await exec.all(CAPTURE_INSTALLED_SQL, [])).length > 0;
}

/**
 * The tables capture's triggers record, over any driver, whether the triggers record
 * REALs exactly (see `recordsExactReals`), and the rows a REPLACE deletes (`replaces`).
 */
export async function sqliteCapturedTables(
  exec: SqliteExecutor,
): Promise<{ tables: string[]; exactReals: boolean; replaces: boolean }> {
  const rows = (await exec.all(CAPTURE_TRIGGERS_SQL, [])).filter((r) =>
    recordsChanges({ name: String(r.name) }),
  );
  const tables = [...new Set(rows.map((r) => String(r.table)))].sort();
  const replaces = (await exec.all(CAPTURE_REPLACES_SQL, [])).length > 0;
  return { tables, exactReals: recordsExactReals(rows), replaces };
}

/**
 * Whether a change waits in the change table: not yet applied (when `applied` tells which
 * are), or not yet consumed.
 */
export async function sqliteChangesPending(
  exec: SqliteExecutor,
  /** Only changes of these tables count (undefined: any). */
  tables?: readonly string[],
  applied?: (change: { seq: number; at: number }) => boolean,
): Promise<boolean> {
  const where = tables === undefined ? "" : "WHERE tbl IN (SELECT value FROM json_each(?))";
  const rows = await exec.all(
    `SELECT seq, at FROM ${CHANGES} ${where} ORDER BY seq LIMIT ${applied ? PENDING_LOOK : 1}`,
    tables === undefined ? [] : [JSON.stringify(tables)],
  );
  if (!applied) return rows.length > 0;
  // A full look may have left out a change that waits.
  if (rows.length >= PENDING_LOOK) return true;
  return rows.some((r) => !applied({ seq: Number(r.seq), at: Number(r.at) }));
}

/**
 * The change table as a CaptureFeed over any SQLite driver (`exec`). `columnsOf` gives a
 * table's columns, or a promise of them; a row recorded with other columns (the table
 * changed since the install) loses its rows.
 */
export function sqliteExecutorFeed(
  exec: SqliteExecutor,
  columnsOf: (
    table: string,
  ) => readonly string[] | undefined | Promise<readonly string[] | undefined>,
  options: {
    /** Its waits do not keep a process alive (see followCapture). */
    unref?: boolean;
    /**
     * `exec` is a connection of edgecache's own (see ownConnection) that writes nothing but
     * capture's own tables: every change is then another connection's commit, which
     * data_version tells. A read after a quiet wait is answered without a statement, and
     * applied changes are deleted in batches (CONSUME_MS), not one delete per read.
     */
    own?: boolean;
  } = {},
): CaptureFeed {
  const me = crypto.randomUUID();
  const firstWatch = exec.watchMs ?? WATCH_MS;
  let watch = firstWatch;
  let leaseUntil = 0;
  let version: unknown;
  // The schema version when capture's table was last looked for, and what was found.
  let installedAt: { schema: unknown; installed: boolean } | undefined;
  let schema: unknown;
  let lookedAt = Number.NEGATIVE_INFINITY;
  // The last wait ended with a look that found no commit since the last read (own only).
  let quiet = false;
  // Applied changes not deleted yet (own only), and when they were last deleted.
  let applied: number[] = [];
  let consumedAt = performance.now();
  const settling = settlings();
  /**
   * Runs `sql` on one connection, its rows and the data_version it read (`column`) tagged
   * with that connection: a new connection's data_version starts again, so a value is
   * compared only with another of the same connection (undefined: it changed meanwhile).
   */
  const tagged = async (sql: string, params: unknown[], column: string) => {
    const before = exec.opened;
    const rows = await exec.all(sql, params);
    const data = rows.find((r) => r[column] !== null && r[column] !== undefined)?.[column];
    const same = before === exec.opened && data !== undefined;
    return { rows, version: same ? `${before}:${String(data)}` : undefined };
  };
  const look = async () => {
    const started = settling.look();
    const { rows, version: now } = await tagged(LOOK_SQL, [], "data");
    schema = rows[0]?.schema;
    lookedAt = performance.now();
    settling.looked(started, now);
    return now;
  };
  // Whether another connection committed since the last look (or it cannot be told).
  const changed = async () => {
    const now = await look();
    if (now !== undefined && now === version) return false;
    version = now;
    return true;
  };
  const deleteApplied = async () => {
    if (applied.length === 0) return;
    const seqs = applied;
    await exec.write(`DELETE FROM ${CHANGES} WHERE seq IN (SELECT value FROM json_each(?))`, [
      JSON.stringify(seqs),
    ]);
    // Only once deleted: a failed delete leaves them excluded from reads, and tried again.
    applied = applied.filter((seq) => !seqs.includes(seq));
    consumedAt = performance.now();
  };
  return {
    async installed() {
      if (version === undefined) version = await look();
      // The watch's own looks tell the schema while it runs; otherwise look now.
      else if (performance.now() - lookedAt > MAX_WATCH_MS) await look();
      // Installing or uninstalling changes the schema: until then the answer stands.
      if (installedAt && schema !== undefined && installedAt.schema === schema) {
        return installedAt.installed;
      }
      const installed = await sqliteCaptureInstalled(exec);
      installedAt = { schema, installed };
      return installed;
    },
    async lead() {
      const now = Date.now();
      if (!renewDue(SQLITE_CAPTURE_LEASE, now, leaseUntil)) return true;
      try {
        const taken = await exec.run(
          `UPDATE ${LEASE} SET holder = ?, until = ? WHERE id = 1 AND (holder = ? OR until < ?)`,
          [me, now + LEASE_MS, me, now],
        );
        if (taken === 1) leaseUntil = now + LEASE_MS;
      } catch {
        // Busy: another connection writes. Keep what is left of the lease.
      }
      return now < leaseUntil;
    },
    async read(limit, urgent) {
      const skip = quiet && !urgent;
      quiet = false;
      if (skip) return [];
      // data_version in the same statement, so of the same snapshot: a commit after this
      // read changes it, one before is in the rows. `marked`: rows of the data API's
      // writes that the read leaves for their write to remove (see settled), looked for
      // among the newest rows only (rows are written in seq order, the young ones last),
      // or taken to be there where more than MARK_LOOK rows are young.
      const started = settling.look();
      const grace = Date.now() - API_GRACE_MS;
      const { rows, version: read } = await tagged(
        `SELECT NULL AS seq, NULL AS tbl, NULL AS op, NULL AS old, NULL AS new, NULL AS at,
                NULL AS late, d.data_version AS version,
                (EXISTS (SELECT 1 FROM (SELECT api, at FROM ${CHANGES} ORDER BY seq DESC
                                        LIMIT ${MARK_LOOK}) r
                         WHERE r.api IS NOT NULL AND r.at >= ?)
                 OR coalesce((SELECT at >= ? FROM ${CHANGES} ORDER BY seq DESC
                              LIMIT 1 OFFSET ${MARK_LOOK}), 0)) AS marked
           FROM pragma_data_version() d
         UNION ALL
         SELECT * FROM (SELECT seq, tbl, op, old, new, at, api IS NOT NULL AS late,
                               NULL AS version, NULL AS marked FROM ${CHANGES}
          WHERE (api IS NULL OR at < ?) AND seq NOT IN (SELECT value FROM json_each(?))
          ORDER BY seq LIMIT ?)`,
        [grace, grace, grace, JSON.stringify(applied), limit],
        "version",
      );
      const changes = rows.filter((r) => r.seq !== null);
      const head = rows.find((r) => r.seq === null);
      version = read;
      settling.read(started, read, {
        whole: changes.length < limit && Number(head?.marked ?? 1) === 0,
        changes: changes.map((r) => ({ seq: Number(r.seq), at: Number(r.at) })),
      });
      const columns = new Map<string, readonly string[] | undefined>();
      for (const r of changes) {
        const t = String(r.tbl);
        if (!columns.has(t)) columns.set(t, await columnsOf(t));
      }
      return changes
        .sort((a, b) => Number(a.seq) - Number(b.seq))
        .map((r) => capturedChange(r, columns.get(String(r.tbl))));
    },
    // Consumed changes wait to be deleted in a batch (see consume): they do not count.
    pending: () =>
      sqliteChangesPending(
        exec,
        undefined,
        applied.length > 0 ? (c) => applied.includes(c.seq) : undefined,
      ),
    // Only a connection of edgecache's own sees every commit in data_version.
    ...(options.own && { settled: () => settling.settled() }),
    async consume(changes) {
      settling.consumed(changes);
      if (changes.length === 0) return;
      if (!options.own) {
        await exec.write(`DELETE FROM ${CHANGES} WHERE seq IN (SELECT value FROM json_each(?))`, [
          JSON.stringify(changes.map((c) => c.seq)),
        ]);
        return;
      }
      applied.push(...changes.map((c) => c.seq));
      if (applied.length >= CONSUME_BATCH || performance.now() - consumedAt >= CONSUME_MS) {
        await deleteApplied();
      }
    },
    async wait(ms, signal) {
      const until = performance.now() + ms;
      // The last read took data_version with its rows: the first look comes one pause later.
      while (performance.now() < until && !signal?.aborted) {
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            signal?.removeEventListener("abort", done);
            resolve();
          };
          const timer = setTimeout(done, Math.min(watch, Math.max(0, until - performance.now())));
          if (options.unref) unref(timer);
          signal?.addEventListener("abort", done, { once: true });
        });
        if (signal?.aborted) return;
        if (await changed()) {
          // Looks follow the rate of commits: twice as often after one, half after none.
          watch = Math.max(firstWatch, watch / 2);
          return;
        }
        watch = Math.min(watch * 2, MAX_WATCH_MS);
      }
      // Ended without a commit seen since the last read: the next read need not read.
      quiet = options.own === true && !signal?.aborted;
      if (options.own && performance.now() - consumedAt >= CONSUME_MS) await deleteApplied();
    },
    async close() {
      settling.close();
      if (options.own) await deleteApplied().catch(() => {});
      // Hand the table over at once, not after the lease runs out (a restart replays sooner).
      if (leaseUntil > Date.now()) {
        try {
          await exec.write(`UPDATE ${LEASE} SET until = 0 WHERE id = 1 AND holder = ?`, [me]);
        } catch {
          // Busy or closed: the lease runs out by itself.
        }
        leaseUntil = 0;
      }
    },
  };
}

/** How long `settled` waits for the feed's next look before answering false, ms. */
const SETTLE_WAIT_MS = 8 * MAX_WATCH_MS;

/**
 * What a feed on a connection of edgecache's own tells without a statement of its own:
 * whether a change waits in the change table that may have committed before the question
 * (asked after a load's read: one that did may be in what the load saw), as of the feed's
 * next look at data_version or read of the table. None does when that look finds the
 * data_version of the last read (no commit since, and that read left nothing out: fewer
 * rows than its limit, no marked rows of the data API's, each consumed since), or when
 * that read's changes were all written after the question (their trigger's `at`, on this
 * machine's clock: their transaction was open when the load had read). A change written
 * later than this machine's clock says it is now comes from another clock (a replica's
 * primary, a container's): the feed then no longer trusts `at`.
 */
function settlings() {
  // Looks and reads in the order they start; a question is answered by one started after it.
  let started = 0;
  let last: { version: string | undefined; whole: boolean; open: Set<number> } | undefined;
  type Waiting = { after: number; asked: number; answer(settled: boolean): void };
  let waiting: Waiting[] = [];
  // Answers the questions asked before look `by` started.
  const answer = (by: number, settled: (w: Waiting) => boolean) => {
    const now = waiting.filter((w) => w.after < by);
    waiting = waiting.filter((w) => w.after >= by);
    for (const w of now) w.answer(settled(w));
  };
  const clean = () => last?.whole === true && last.open.size === 0;
  let ownClock = true;
  return {
    look: () => ++started,
    looked(by: number, version: string | undefined) {
      // A commit since: the read that follows tells whether it came after the question.
      if (version !== undefined && version === last?.version) answer(by, clean);
    },
    read(
      by: number,
      version: string | undefined,
      seen: { whole: boolean; changes: readonly Pick<CapturedChange, "seq" | "at">[] },
    ) {
      last = { version, whole: seen.whole, open: new Set(seen.changes.map((c) => c.seq)) };
      const now = Date.now();
      if (seen.changes.some((c) => c.at > now)) ownClock = false;
      const after = (w: Waiting) => ownClock && seen.changes.every((c) => c.at > w.asked);
      answer(by, (w) => seen.whole && (seen.changes.length === 0 || after(w)));
    },
    consumed(changes: readonly CapturedChange[]) {
      for (const c of changes) last?.open.delete(c.seq);
    },
    settled(): Promise<boolean> {
      if (!clean()) return Promise.resolve(false);
      return new Promise<boolean>((resolve) => {
        const w: Waiting = {
          after: started,
          asked: Date.now(),
          answer(settled) {
            clearTimeout(timer);
            resolve(settled);
          },
        };
        const timer = setTimeout(() => {
          waiting = waiting.filter((o) => o !== w);
          resolve(false);
        }, SETTLE_WAIT_MS);
        unref(timer);
        waiting.push(w);
      });
    },
    close() {
      answer(Number.POSITIVE_INFINITY, () => false);
    },
  };
}
