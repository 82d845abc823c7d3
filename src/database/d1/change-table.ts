import {
  API_GRACE_MS,
  type CapturedChange,
  type CaptureFeed,
  type CaptureStatus,
  type CapturingSource,
  capturedEvent,
} from "../../core/capture-feed.ts";
import {
  CAPTURE_BACKLOG_SQL,
  CAPTURE_INSTALLED_SQL,
  CAPTURE_PREFIX,
  CAPTURE_TRIGGERS_SQL,
  type CapturedTable,
  CHANGES,
  capturedTablesBatched,
  captureInstallSql,
  captureStatusOf,
  captureUninstallSql,
} from "../sqlite/capture-sql.ts";
import type { D1DatabaseLike, D1QueriesLike, D1StatementLike } from "./binding.ts";

/**
 * Change capture on D1: the same triggers and change table as SQLite
 * (database/sqlite/capture-sql.ts), installed through the binding (`installD1Capture`, what the
 * demo Worker does) or through wrangler (`edgecache capture install --d1`), and read
 * through the binding as a CaptureFeed. On Workers the change log's Durable Object drains
 * it (src/adapter/cloudflare/capture-drain.ts): it is the only consumer, so `lead` is
 * always true here.
 *
 * The data API's own writes are marked inside their batch (D1 runs a batch as one
 * transaction, so nothing else commits in between): a first statement adds a sentinel row,
 * the last ones give the rows after it the write's mark and remove the sentinel. Once the
 * write's record is in the log the marked rows are deleted (`forget`); rows whose write was
 * never recorded are captured after API_GRACE_MS, as on SQLite.
 */

/** D1's and wrangler's own tables: never served, never captured. */
export const D1_INTERNAL = /^(sqlite_|_cf_|d1_migrations$)/;

/** Every table of the main schema (`name`); D1 refuses pragma_table_info joined to it. */
export const D1_TABLES_SQL =
  "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' ORDER BY name";

/** The tables to capture, from D1_TABLES_SQL's rows: all but D1's and edgecache's own. */
export function capturableTables(rows: readonly { name: string }[]): string[] {
  return rows
    .map((r) => r.name)
    .filter((name) => !D1_INTERNAL.test(name) && !name.startsWith(CAPTURE_PREFIX));
}

/** The database's tables to capture, their columns and keys, through the binding. */
async function catalog(db: D1DatabaseLike): Promise<CapturedTable[]> {
  const names = capturableTables(await all(db, D1_TABLES_SQL));
  return capturedTablesBatched(names, async (statements) =>
    (await db.batch(statements.map((s) => db.prepare(s)))).map(
      (r) => r.results as Record<string, unknown>[],
    ),
  );
}

async function all<T>(db: D1DatabaseLike, sql: string, ...params: unknown[]): Promise<T[]> {
  const statement = db.prepare(sql);
  const { results } = await (params.length > 0 ? statement.bind(...params) : statement).all();
  return results as T[];
}

/** Whether the error is D1's "no such table" for the change table (capture not installed). */
function isNotInstalled(error: unknown): boolean {
  const message = String((error as Error)?.message ?? error);
  return /no such table/i.test(message) && message.includes(CHANGES);
}

/** Whether capture is installed in the database (one cheap catalog query). */
export async function d1CaptureInstalled(db: D1DatabaseLike): Promise<boolean> {
  return (await all(db, CAPTURE_INSTALLED_SQL)).length > 0;
}

export async function d1CaptureStatus(db: D1DatabaseLike): Promise<CaptureStatus> {
  const served = capturableTables(await all(db, D1_TABLES_SQL));
  const installed = await d1CaptureInstalled(db);
  const [backlog] = installed
    ? await all<{ backlog: number; id: string | null }>(db, CAPTURE_BACKLOG_SQL)
    : [];
  return captureStatusOf(await all(db, CAPTURE_TRIGGERS_SQL), backlog, served);
}

/**
 * Installs capture on every table of the database (replacing older triggers), in one batch:
 * one transaction. Idempotent; run it again after adding a table, a column or a unique index.
 *
 * @example
 * ```ts
 * await seedD1Demo(env.DB);
 * await installD1Capture(env.DB);
 * ```
 */
export async function installD1Capture(db: D1DatabaseLike): Promise<CaptureStatus> {
  const tables = await catalog(db);
  const drop = (await all<{ name: string }>(db, CAPTURE_TRIGGERS_SQL)).map((t) => t.name);
  const sql = captureInstallSql(tables, { drop, install: crypto.randomUUID() });
  await db.batch(sql.map((s) => db.prepare(s)));
  return d1CaptureStatus(db);
}

export async function uninstallD1Capture(db: D1DatabaseLike): Promise<void> {
  const triggers = (await all<{ name: string }>(db, CAPTURE_TRIGGERS_SQL)).map((t) => t.name);
  await db.batch(captureUninstallSql(triggers).map((s) => db.prepare(s)));
}

/** D1 binds at most 100 parameters per statement: seqs per DELETE. */
const DELETE_CHUNK = 100;

/**
 * The change table as a CaptureFeed over a D1 binding. One statement per `read` (an empty
 * poll reads about one row); a missing change table reads as empty. Columns come from the
 * catalog, read again when a change names a table or columns it does not know (a row
 * recorded with columns other than the table's then loses its rows: a table-level event).
 */
export function d1CaptureFeed(db: D1DatabaseLike): CaptureFeed & {
  /**
   * The D1 bookmark of the last read (with read replication): the primary's, at or after
   * every change it returned, so a load at or after it sees them.
   */
  bookmark(): string | undefined;
} {
  let bookmark: string | undefined;
  let columns: Map<string, string[]> | undefined;
  const loadColumns = async () => {
    columns = new Map((await catalog(db)).map((t) => [t.name, [...t.columns]]));
    return columns;
  };
  const known = (table: string, row: string | null) => {
    const cols = columns?.get(table);
    if (cols === undefined) return false;
    if (row === null) return true;
    const keys = Object.keys(JSON.parse(row) as object);
    return keys.length === cols.length && cols.every((c) => keys.includes(c));
  };
  return {
    installed: () => d1CaptureInstalled(db),
    async lead() {
      return true;
    },
    async read(limit) {
      let rows: {
        seq: number;
        tbl: string;
        op: string;
        old: string | null;
        new: string | null;
        at: number;
        late: number;
      }[];
      // At the primary, through a session where there are sessions: its bookmark then says
      // where a replica has every change read.
      const session = db.withSession?.("first-primary");
      try {
        rows = await all(
          session ?? db,
          `SELECT seq, tbl, op, old, new, at, api IS NOT NULL AS late FROM ${CHANGES}
            WHERE api IS NULL OR at < ? ORDER BY seq LIMIT ?`,
          Date.now() - API_GRACE_MS,
          limit,
        );
      } catch (error) {
        if (isNotInstalled(error)) return [];
        throw error;
      }
      bookmark = session?.getBookmark() ?? undefined;
      if (rows.some((r) => !known(r.tbl, r.old ?? r.new))) await loadColumns();
      return rows.map(
        (r): CapturedChange => ({
          seq: r.seq,
          at: r.at,
          event: capturedEvent(r.tbl, r.op, r.old, r.new, columns?.get(r.tbl)),
          ...(r.late ? { late: true } : {}),
        }),
      );
    },
    bookmark: () => bookmark,
    async pending() {
      try {
        return (await all(db, `SELECT 1 AS n FROM ${CHANGES} LIMIT 1`)).length > 0;
      } catch (error) {
        if (isNotInstalled(error)) return false;
        throw error;
      }
    },
    async consume(changes) {
      const seqs = changes.map((c) => c.seq);
      const statements: D1StatementLike[] = [];
      for (let i = 0; i < seqs.length; i += DELETE_CHUNK) {
        const chunk = seqs.slice(i, i + DELETE_CHUNK);
        statements.push(
          db
            .prepare(`DELETE FROM ${CHANGES} WHERE seq IN (${chunk.map(() => "?").join(", ")})`)
            .bind(...chunk),
        );
      }
      if (statements.length > 0) await db.batch(statements);
    },
    async wait(ms) {
      await new Promise((resolve) => setTimeout(resolve, ms));
    },
    async close() {
      // A binding has nothing to close.
    },
  };
}

/** How often a writing isolate asks again whether capture is installed, ms. */
const INSTALLED_CHECK_MS = 5000;

/**
 * The data API's own writes in D1's change table (see the file's comment): `batch` runs a
 * write's statements with its rows marked, `forget` deletes them once its record is in the
 * log. Whether capture is installed is asked at most every INSTALLED_CHECK_MS: a write
 * made in the moments after an install is captured as well as recorded (invalidated
 * twice, harmlessly); one that finds the change table gone runs again without the marks.
 */
export class D1OwnChanges {
  readonly #db: D1DatabaseLike;
  #installed = false;
  #checkedAt = Number.NEGATIVE_INFINITY;

  constructor(db: D1DatabaseLike) {
    this.#db = db;
  }

  /** `on`: where the batch runs (a D1 session at the primary, for its bookmark); the binding by default. */
  async batch(
    statements: D1StatementLike[],
    mark: string | undefined,
    on: D1QueriesLike = this.#db,
  ): Promise<{ results: unknown[] }[]> {
    const db = on;
    if (mark === undefined || !(await this.installed())) return db.batch(statements);
    try {
      const results = await db.batch([
        db
          .prepare(`INSERT INTO ${CHANGES} (tbl, op, at, api) VALUES ('', 'mark', 0, ?)`)
          .bind(mark),
        ...statements,
        db
          .prepare(
            `UPDATE ${CHANGES} SET api = ?1
              WHERE seq > (SELECT seq FROM ${CHANGES} WHERE op = 'mark' AND api = ?1)`,
          )
          .bind(mark),
        db.prepare(`DELETE FROM ${CHANGES} WHERE op = 'mark' AND api = ?`).bind(mark),
      ]);
      return results.slice(1, -2);
    } catch (error) {
      if (!isNotInstalled(error)) throw error;
      // Uninstalled since it was asked: the batch rolled back as a whole, so run it again.
      this.#installed = false;
      this.#checkedAt = Date.now();
      return db.batch(statements);
    }
  }

  async forget(mark: string): Promise<void> {
    if (!this.#installed) return;
    try {
      await this.#db.prepare(`DELETE FROM ${CHANGES} WHERE api = ?`).bind(mark).all();
    } catch {
      // The rows stay, and are captured after API_GRACE_MS (harmless).
    }
  }

  async installed(): Promise<boolean> {
    if (Date.now() - this.#checkedAt >= INSTALLED_CHECK_MS) {
      this.#checkedAt = Date.now();
      this.#installed = await d1CaptureInstalled(this.#db).catch(() => this.#installed);
    }
    return this.#installed;
  }
}

/**
 * What a D1 source adds to be a CapturingSource. `recorded` deletes the write's rows in the
 * background when `schedule` is given (a Worker's `ctx.waitUntil`), so the write's answer
 * does not wait for another round trip to D1.
 */
export function d1Capturing(
  db: D1DatabaseLike,
  own: D1OwnChanges,
  schedule?: (work: Promise<unknown>) => void,
): CapturingSource {
  return {
    captureStatus: () => d1CaptureStatus(db),
    installCapture: () => installD1Capture(db),
    uninstallCapture: () => uninstallD1Capture(db),
    async recorded(mark) {
      const work = own.forget(mark);
      if (schedule) schedule(work);
      else await work;
    },
    captureFeed: () => d1CaptureFeed(db),
  };
}
