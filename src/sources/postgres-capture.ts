import type postgres from "postgres";
import {
  API_GRACE_MS,
  type CaptureFeed,
  type CaptureStatus,
  capturedChange,
  unref,
} from "../core/capture.ts";
import { transaction } from "./postgres-transaction.ts";
import { literal, quote } from "./sql.ts";

/**
 * Change capture in PostgreSQL: an AFTER ROW trigger on every served table writes each
 * row change into a change table, old and new rows as JSON in the form the source reads
 * them (the same expressions), and sends NOTIFY as a wake-up; the change table, not the
 * notification, is the source of truth. TRUNCATE is recorded as a change of the whole
 * table. Everything lives in a schema of its own (`edgecache` for tables in `public`,
 * `edgecache_<schema>` otherwise), so uninstalling is one DROP SCHEMA.
 *
 * The data API's own writes set `edgecache.api` to a mark of the write for their
 * transaction, and their rows carry it: they are removed once the data API has recorded
 * the write, and captured only if that never happens (API_GRACE_MS).
 *
 * Sequence numbers are taken at insert, not at commit, so a change table is consumed,
 * never read past: each change is deleted once applied, and one that commits late (with a
 * lower number) is simply read then.
 */

const CHANNEL = "edgecache_changes";
const TRIGGER = "edgecache_capture";
const TRUNCATE_TRIGGER = "edgecache_capture_truncate";
/** The transaction setting the data API's writes make (see setApiWrite). */
export const API_SETTING = "edgecache.api";
/** pg_try_advisory_lock's key space: one consumer per change table. */
const LOCK_BASE = 0x0edc_0000;
/** How often a consumer checks that it still holds its lock, ms. */
const LEAD_CHECK_MS = 1000;
/** jsonb_build_object takes at most 100 arguments: wider rows are built in parts. */
const PAIRS_PER_CALL = 50;

export interface CaptureTable {
  name: string;
  /** `"schema"."table"` */
  qualified: string;
  columns: readonly { name: string; readOf(ref: string): string }[];
}

/** The schema capture's objects live in, for the served schema. */
export function captureSchema(served: string): string {
  return served === "public" ? "edgecache" : `edgecache_${served}`;
}

function rowJson(ref: "OLD" | "NEW", table: CaptureTable): string {
  const pairs = table.columns.map(
    (c) => `${literal(c.name)}, ${c.readOf(`${ref}.${quote(c.name)}`)}`,
  );
  const parts: string[] = [];
  for (let i = 0; i < pairs.length; i += PAIRS_PER_CALL) {
    parts.push(`jsonb_build_object(${pairs.slice(i, i + PAIRS_PER_CALL).join(", ")})`);
  }
  return parts.length === 0 ? "'{}'::jsonb" : parts.join(" || ");
}

// SHA-256 through Web Crypto, so that the feed also loads where no node:crypto is
// (edgecache/drizzle is bundled for Workers too).
async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** A function name per table that stays within PostgreSQL's 63-byte identifiers. */
async function functionName(table: string): Promise<string> {
  const hex = [...(await sha256(table))].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `capture_${hex.slice(0, 16)}`;
}

export async function installPostgresCapture(
  sql: postgres.Sql,
  served: string,
  tables: readonly CaptureTable[],
): Promise<void> {
  const schema = quote(captureSchema(served));
  await transaction(sql, async (tx) => {
    await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${schema}.changes (
      seq bigserial PRIMARY KEY, tbl text NOT NULL, op text NOT NULL,
      old jsonb, new jsonb, at timestamptz NOT NULL DEFAULT clock_timestamp(), api text)`);
    await tx.unsafe(`CREATE INDEX IF NOT EXISTS changes_api ON ${schema}.changes (api)`);
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${schema}.install (
      one boolean PRIMARY KEY DEFAULT true CHECK (one), id text NOT NULL)`);
    await tx.unsafe(`INSERT INTO ${schema}.install (id) VALUES ($1) ON CONFLICT DO NOTHING`, [
      crypto.randomUUID(),
    ]);
    await tx.unsafe(`CREATE OR REPLACE FUNCTION ${schema}.capture_truncate() RETURNS trigger
      LANGUAGE plpgsql AS $fn$
      BEGIN
        INSERT INTO ${schema}.changes (tbl, op) VALUES (TG_TABLE_NAME, 'truncate');
        PERFORM pg_notify(${literal(CHANNEL)}, '');
        RETURN NULL;
      END $fn$`);
    for (const table of tables) {
      const fn = `${schema}.${quote(await functionName(table.name))}`;
      await tx.unsafe(`CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
          INSERT INTO ${schema}.changes (tbl, op, old, new, api) VALUES (
            ${literal(table.name)}, lower(TG_OP),
            CASE WHEN TG_OP <> 'INSERT' THEN ${rowJson("OLD", table)} END,
            CASE WHEN TG_OP <> 'DELETE' THEN ${rowJson("NEW", table)} END,
            nullif(current_setting(${literal(API_SETTING)}, true), ''));
          PERFORM pg_notify(${literal(CHANNEL)}, '');
          RETURN NULL;
        END $fn$`);
      await tx.unsafe(`DROP TRIGGER IF EXISTS ${TRIGGER} ON ${table.qualified}`);
      await tx.unsafe(`CREATE TRIGGER ${TRIGGER} AFTER INSERT OR UPDATE OR DELETE
        ON ${table.qualified} FOR EACH ROW EXECUTE FUNCTION ${fn}()`);
      await tx.unsafe(`DROP TRIGGER IF EXISTS ${TRUNCATE_TRIGGER} ON ${table.qualified}`);
      await tx.unsafe(`CREATE TRIGGER ${TRUNCATE_TRIGGER} AFTER TRUNCATE
        ON ${table.qualified} FOR EACH STATEMENT EXECUTE FUNCTION ${schema}.capture_truncate()`);
    }
  });
}

/** Removes the rows of a write the data API has recorded (see WriteOptions.capture). */
export async function forgetPostgresCaptured(
  sql: postgres.Sql,
  served: string,
  mark: string,
): Promise<void> {
  if (!(await isInstalled(sql, served))) return;
  await sql.unsafe(`DELETE FROM ${quote(captureSchema(served))}.changes WHERE api = $1`, [mark]);
}

export async function uninstallPostgresCapture(sql: postgres.Sql, served: string): Promise<void> {
  // The triggers depend on the schema's functions and go with them.
  await sql.unsafe(`DROP SCHEMA IF EXISTS ${quote(captureSchema(served))} CASCADE`);
}

export async function isInstalled(sql: postgres.Sql, served: string): Promise<boolean> {
  const [row] = await sql.unsafe("SELECT to_regclass($1) IS NOT NULL AS ok", [
    `${quote(captureSchema(served))}.changes`,
  ]);
  return row?.ok === true;
}

export async function postgresCaptureStatus(
  sql: postgres.Sql,
  served: string,
  tables: readonly string[],
): Promise<CaptureStatus> {
  if (!(await isInstalled(sql, served))) {
    return { installed: false, tables: [], missing: [], backlog: 0 };
  }
  const rows = await sql.unsafe(
    `SELECT c.relname AS name FROM pg_trigger t
       JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE t.tgname = $1 AND n.nspname = $2 ORDER BY c.relname`,
    [TRIGGER, served],
  );
  const captured = rows.map((r) => String(r.name));
  const [count] = await sql.unsafe(
    `SELECT count(*)::int AS n, (SELECT id FROM ${quote(captureSchema(served))}.install) AS id
       FROM ${quote(captureSchema(served))}.changes`,
  );
  return {
    installed: true,
    id: count?.id == null ? undefined : String(count.id),
    tables: captured,
    missing: tables.filter((t) => !captured.includes(t)),
    backlog: Number(count?.n ?? 0),
  };
}

/**
 * The change table as a CaptureFeed. One node consumes it: the one holding a session
 * advisory lock, which PostgreSQL releases if the node dies.
 *
 * The lock is held on a client of its own with one connection, not on a connection
 * reserved from the pool: postgres.js 3.4 never reconnects a reserved connection whose
 * server went away, and a write queued on it then throws outside any promise
 * (`socket.write` of null in `nextWrite`), which ended the process on every database
 * restart. A one-connection client reconnects; the lock it held is gone with the old
 * connection, which the next check (at most LEAD_CHECK_MS later) finds. Until then two
 * nodes may both consume, which applies a change twice: harmless.
 */
export function postgresCaptureFeed(
  sql: postgres.Sql,
  served: string,
  columnsOf: (table: string) => readonly string[] | undefined,
  connect: () => postgres.Sql,
  /** `unref`: its waits do not keep a process alive (see followCapture). */
  options: { unref?: boolean } = {},
): CaptureFeed {
  const schema = quote(captureSchema(served));
  let lockKey: number | undefined;
  let own: postgres.Sql | undefined;
  let checkedAt = 0;
  let holding = false;
  let listening: Promise<{ unlisten(): Promise<void> }> | undefined;
  let wake: (() => void) | undefined;
  let notified = false;
  return {
    installed: () => isInstalled(sql, served),
    async lead() {
      const now = Date.now();
      if (holding && now - checkedAt < LEAD_CHECK_MS) return true;
      checkedAt = now;
      try {
        if (lockKey === undefined) {
          const digest = await sha256(served);
          lockKey = LOCK_BASE + ((digest[0]! << 8) | digest[1]!);
        }
        own ??= connect();
        const [row] = holding
          ? await own.unsafe(
              `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
                 AND objid = $1 AND pid = pg_backend_pid() AND granted) AS ok`,
              [lockKey],
            )
          : await own.unsafe("SELECT pg_try_advisory_lock($1) AS ok", [lockKey]);
        holding = row?.ok === true;
      } catch {
        holding = false; // the connection broke: its lock went with it
      }
      return holding;
    },
    async read(limit) {
      if (!listening) {
        listening = sql.listen(CHANNEL, () => {
          notified = true;
          wake?.();
        });
        // Refused while the database is away: asked again on the next read.
        listening.catch(() => {
          listening = undefined;
        });
      }
      await listening;
      notified = false;
      // On the consumer's own connection: never queued behind the pool's reads.
      const rows = await (own ?? sql).unsafe(
        `SELECT seq::float8 AS seq, tbl, op, old::text AS old, new::text AS new,
                (extract(epoch FROM at) * 1000)::float8 AS at
           FROM ${schema}.changes
          WHERE api IS NULL OR at < clock_timestamp() - make_interval(secs => $2)
          ORDER BY seq LIMIT $1`,
        [limit, API_GRACE_MS / 1000],
      );
      return rows.map((r) => capturedChange(r, columnsOf(String(r.tbl))));
    },
    async pending() {
      const rows = await sql.unsafe(`SELECT 1 FROM ${schema}.changes LIMIT 1`);
      return rows.length > 0;
    },
    async consume(changes) {
      if (changes.length === 0) return;
      await (own ?? sql).unsafe(`DELETE FROM ${schema}.changes WHERE seq = ANY($1::text::int8[])`, [
        `{${changes.map((c) => c.seq).join(",")}}`,
      ]);
    },
    async wait(ms, signal) {
      if (notified || signal?.aborted) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => wake?.(), ms);
        if (options.unref) unref(timer);
        wake = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", wake!);
          resolve();
        };
        signal?.addEventListener("abort", wake, { once: true });
      });
      wake = undefined;
    },
    async close() {
      wake?.();
      const l = await listening?.catch(() => undefined);
      await l?.unlisten().catch(() => {});
      if (holding && own && lockKey !== undefined) {
        await own.unsafe("SELECT pg_advisory_unlock($1)", [lockKey]).catch(() => {});
      }
      holding = false;
      await own?.end({ timeout: 1 }).catch(() => {});
      own = undefined;
    },
  };
}
