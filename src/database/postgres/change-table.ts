import type postgres from "postgres";
import {
  API_GRACE_MS,
  type CapturedChange,
  type CaptureStatus,
  type CarryingFeed,
  capturedChange,
  unref,
} from "../../core/capture-feed.ts";
import type { SqlClient } from "../client.ts";
import type { Steps } from "../dialect.ts";
import type { TransactionDriver } from "../driver.ts";
import { literal, quote } from "../schema.ts";

/**
 * Change capture in PostgreSQL: an AFTER ROW trigger on every served table writes each
 * row change into a change table, old and new rows as JSON in the form the source reads
 * them (the same expressions), and sends NOTIFY carrying the change, so the consumer
 * applies it without reading the table (see `carry`); the change table, not the
 * notification, is the source of truth. The trigger is deferred to the commit (a
 * constraint trigger, INITIALLY DEFERRED: it still sees each row change's OLD and NEW),
 * so a change's `at` is its commit, not the statement, and the lag measured from it is
 * capture's own, not the rest of the writer's transaction. TRUNCATE is recorded as a change of the whole
 * table. Everything lives in a schema of its own (`edgecache` for tables in `public`,
 * `edgecache_<schema>` otherwise), so uninstalling is one DROP SCHEMA.
 *
 * The data API's own writes set `edgecache.api` to a mark of the write for their
 * transaction, and their rows carry it: they are removed once the data API has recorded
 * the write, and captured only if that never happens (API_GRACE_MS), so they send no
 * NOTIFY: the consumer's poll finds the ones left behind.
 *
 * Sequence numbers are taken just before the commit, which concurrent transactions may
 * finish in another order, so a change table is consumed, never read past: each change is
 * deleted once applied, and one that commits late (with a lower number) is simply read then.
 * (Two changes of one row are never so: the second waits for the first's row lock, and its
 * number is taken after the first committed.)
 */

const CHANNEL = "edgecache_changes";
/**
 * A change's record time in ms, as both the read and the NOTIFY payload give it: the same
 * float8, so that the consumer knows a change it had carried when it reads it.
 */
export const atMs = (column: string) => `(extract(epoch FROM ${column}) * 1000)::float8`;
const TRIGGER = "edgecache_capture";
/** Every table capture's trigger records, in any schema: `schema`, `table`. */
export const CAPTURED_TABLES_SQL = `SELECT n.nspname AS schema, c.relname AS table FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE t.tgname = '${TRIGGER}'`;
/**
 * The setting a capture function runs with: float8 and float4 written as the shortest text
 * that reads back as the same value (any setting above 0 does; a session may set 0 or
 * less, which rounds to 15 digits). Its presence in the function's configuration tells a
 * reader that captured fractions are exact (installs before it was set are not).
 */
export const EXACT_FLOATS = "extra_float_digits = 1";
const TRUNCATE_TRIGGER = "edgecache_capture_truncate";
/** The transaction setting the data API's writes make (see setApiWrite). */
export const API_SETTING = "edgecache.api";
/** pg_try_advisory_lock's key space: one consumer per change table. */
const LOCK_BASE = 0x0edc_0000;
/** How often a consumer checks that it still holds its lock, ms. */
const LEAD_CHECK_MS = 1000;
/** jsonb_build_object takes at most 100 arguments: wider rows are built in parts. */
const PAIRS_PER_CALL = 50;
/** PostgreSQL refuses a NOTIFY payload of this many bytes or more. */
const NOTIFY_PAYLOAD_LIMIT = 8000;
/**
 * Changes of one transaction whose NOTIFY carries them; the rest send the capture schema's
 * name, which PostgreSQL sends once per transaction (it folds equal notifications), so a
 * statement over a million rows does not queue a million payloads: the consumer reads those.
 */
const CARRIED_PER_TRANSACTION = 100;
/** The transaction setting that counts the changes carried so far. */
const CARRIED_SETTING = "edgecache.carried";

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

/**
 * What capture's installation and status run on: any PostgreSQL driver (postgres.js's,
 * node-postgres's), its statements one by one and its transactions.
 */
export type PgCaptureDriver = Pick<TransactionDriver, "run" | "transaction">;

/**
 * Creates the change table and the triggers of `tables` in one transaction (replacing
 * older ones), so that they are there at once or not at all.
 */
export async function installPostgresCapture(
  driver: PgCaptureDriver,
  served: string,
  tables: readonly CaptureTable[],
): Promise<void> {
  const names = await Promise.all(tables.map((t) => functionName(t.name)));
  await driver.transaction(installSteps(served, tables, names));
}

function* installSteps(
  served: string,
  tables: readonly CaptureTable[],
  functionNames: readonly string[],
): Steps<void> {
  const schema = quote(captureSchema(served));
  const statement = (sql: string, params: unknown[] = []) => ({ sql, params });
  yield statement(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  yield statement(`CREATE TABLE IF NOT EXISTS ${schema}.changes (
      seq bigserial PRIMARY KEY, tbl text NOT NULL, op text NOT NULL,
      old jsonb, new jsonb, at timestamptz NOT NULL DEFAULT clock_timestamp(), api text)`);
  yield statement(`CREATE INDEX IF NOT EXISTS changes_api ON ${schema}.changes (api)`);
  yield statement(`CREATE TABLE IF NOT EXISTS ${schema}.install (
      one boolean PRIMARY KEY DEFAULT true CHECK (one), id text NOT NULL)`);
  yield statement(`INSERT INTO ${schema}.install (id) VALUES ($1) ON CONFLICT DO NOTHING`, [
    crypto.randomUUID(),
  ]);
  yield statement(carryFunction(served));
  yield statement(`CREATE OR REPLACE FUNCTION ${schema}.capture_truncate() RETURNS trigger
      LANGUAGE plpgsql AS $fn$
      DECLARE c ${schema}.changes;
      BEGIN
        INSERT INTO ${schema}.changes (tbl, op) VALUES (TG_TABLE_NAME, 'truncate')
          RETURNING * INTO c;
        PERFORM ${schema}.carry(c);
        RETURN NULL;
      END $fn$`);
  for (const [i, table] of tables.entries()) {
    const fn = `${schema}.${quote(functionNames[i]!)}`;
    // Floats with every digit whatever the writer's session sets (see EXACT_FLOATS).
    yield statement(`CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger
        LANGUAGE plpgsql SET ${EXACT_FLOATS} AS $fn$
        DECLARE c ${schema}.changes;
        BEGIN
          INSERT INTO ${schema}.changes (tbl, op, old, new, api) VALUES (
            ${literal(table.name)}, lower(TG_OP),
            CASE WHEN TG_OP <> 'INSERT' THEN ${rowJson("OLD", table)} END,
            CASE WHEN TG_OP <> 'DELETE' THEN ${rowJson("NEW", table)} END,
            nullif(current_setting(${literal(API_SETTING)}, true), ''))
            RETURNING * INTO c;
          IF c.api IS NULL THEN
            PERFORM ${schema}.carry(c);
          END IF;
          RETURN NULL;
        END $fn$`);
    yield statement(`DROP TRIGGER IF EXISTS ${TRIGGER} ON ${table.qualified}`);
    yield statement(`CREATE CONSTRAINT TRIGGER ${TRIGGER} AFTER INSERT OR UPDATE OR DELETE
        ON ${table.qualified} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${fn}()`);
    yield statement(`DROP TRIGGER IF EXISTS ${TRUNCATE_TRIGGER} ON ${table.qualified}`);
    yield statement(`CREATE TRIGGER ${TRUNCATE_TRIGGER} AFTER TRUNCATE
        ON ${table.qualified} FOR EACH STATEMENT EXECUTE FUNCTION ${schema}.capture_truncate()`);
  }
}

/**
 * `carry(change)`: the NOTIFY of a change. Its payload is the change as JSON (the capture
 * schema `s`, then the change table's columns, `at` in ms as the consumer reads it), or,
 * when it does not fit or the transaction has carried CARRIED_PER_TRANSACTION already, the
 * capture schema's name alone: a wake-up to read the table. Other schemas' consumers
 * listen on the same channel and skip both.
 */
function carryFunction(served: string): string {
  const schema = quote(captureSchema(served));
  const setting = literal(CARRIED_SETTING);
  return `CREATE OR REPLACE FUNCTION ${schema}.carry(c ${schema}.changes) RETURNS void
    LANGUAGE plpgsql AS $fn$
    DECLARE
      n int := coalesce(nullif(current_setting(${setting}, true), ''), '0')::int + 1;
      payload text;
    BEGIN
      PERFORM set_config(${setting}, n::text, true);
      IF n <= ${CARRIED_PER_TRANSACTION} THEN
        payload := json_build_object('s', ${literal(captureSchema(served))}, 'seq', c.seq,
          'tbl', c.tbl, 'op', c.op, 'at', ${atMs("c.at")},
          'old', c.old, 'new', c.new)::text;
      END IF;
      IF payload IS NULL OR octet_length(payload) >= ${NOTIFY_PAYLOAD_LIMIT} THEN
        payload := ${literal(captureSchema(served))};
      END IF;
      PERFORM pg_notify(${literal(CHANNEL)}, payload);
    END $fn$`;
}

/**
 * What a notification on CHANNEL says to the consumer of `schema`: a change it carries,
 * "read" (the change did not fit, or a trigger of an older install sent an empty payload),
 * or undefined (another schema's).
 */
export function heardChange(
  payload: string,
  schema: string,
  columnsOf: (table: string) => readonly string[] | undefined,
): CapturedChange | "read" | undefined {
  if (payload === "" || payload === schema) return "read";
  if (!payload.startsWith("{")) return undefined;
  let row: Record<string, unknown>;
  try {
    row = JSON.parse(payload) as Record<string, unknown>;
  } catch {
    return "read";
  }
  if (row.s !== schema) return undefined;
  return capturedChange(row, columnsOf(String(row.tbl)));
}

/** Whether a change table's row names exactly `columns` (undefined: a table not known). */
function fits(columns: readonly string[] | undefined, row: Record<string, unknown>): boolean {
  if (columns === undefined) return false;
  const recorded = row.new ?? row.old;
  if (typeof recorded !== "string") return true;
  const keys = Object.keys(JSON.parse(recorded) as object);
  return keys.length === columns.length && columns.every((c) => keys.includes(c));
}

/** Removes the rows of a write the data API has recorded (see WriteOptions.capture). */
export async function forgetPostgresCaptured(
  driver: PgCaptureDriver,
  served: string,
  mark: string,
): Promise<void> {
  if (!(await isInstalled(driver, served))) return;
  await driver.run(`DELETE FROM ${quote(captureSchema(served))}.changes WHERE api = $1`, [mark]);
}

export async function uninstallPostgresCapture(
  driver: PgCaptureDriver,
  served: string,
): Promise<void> {
  // The triggers depend on the schema's functions and go with them.
  await driver.run(`DROP SCHEMA IF EXISTS ${quote(captureSchema(served))} CASCADE`, []);
}

export function isInstalled(driver: Pick<SqlClient, "run">, served: string): Promise<boolean> {
  return installedOn(async (text, params = []) => (await driver.run(text, params)).rows, served);
}

async function installedOn(query: Query, served: string): Promise<boolean> {
  const [row] = await query("SELECT to_regclass($1) IS NOT NULL AS ok", [
    `${quote(captureSchema(served))}.changes`,
  ]);
  return row?.ok === true;
}

export async function postgresCaptureStatus(
  driver: PgCaptureDriver,
  served: string,
  tables: readonly string[],
): Promise<CaptureStatus> {
  if (!(await isInstalled(driver, served))) {
    return { installed: false, tables: [], missing: [], backlog: 0 };
  }
  const query = async (text: string, params: unknown[] = []) =>
    (await driver.run(text, params)).rows;
  const rows = await query(
    `SELECT c.relname AS name FROM pg_trigger t
       JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE t.tgname = $1 AND n.nspname = $2 ORDER BY c.relname`,
    [TRIGGER, served],
  );
  const captured = rows.map((r) => String(r.name));
  const [count] = await query(
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

/** Rows of a statement, by column name. */
type Query = (sql: string, params?: readonly unknown[]) => Promise<Record<string, unknown>[]>;

/**
 * What the capture feed needs of a PostgreSQL client, whichever library it is (see
 * postgresJsCapturePort, and nodePostgresCapturePort in node-postgres-capture.ts).
 */
export interface PgCapturePort {
  /** Runs a statement on the application's client. */
  query: Query;
  /**
   * Listens on `channel`. `onListen` is called each time the listening connection starts
   * (again): what was sent while it was away is only in the change table. Absent where no
   * connection stays open between requests (the change log's Durable Object on Workers):
   * the table is then polled.
   */
  listen?(
    channel: string,
    onPayload: (payload: string) => void,
    onListen: () => void,
  ): Promise<{ unlisten(): Promise<void> }>;
  /**
   * A connection of the consumer's own, for its session lock: opened on first use, and
   * opened again after a break (the lock gone with the old one). Absent where the feed is
   * the change table's only consumer by configuration (the log's Durable Object drains it).
   */
  own?(): { query: Query; end(): Promise<void> };
}

/**
 * postgres.js as the feed's client: `connect` makes a client of one connection by the
 * application's postgres.js (the lock's: see postgresCaptureFeed).
 */
export function postgresJsCapturePort(
  sql: postgres.Sql,
  connect: () => postgres.Sql,
): PgCapturePort {
  const on =
    (client: postgres.Sql): Query =>
    (text, params = []) =>
      client.unsafe(text, params as never[]);
  return {
    query: on(sql),
    listen: (channel, onPayload, onListen) => sql.listen(channel, onPayload, onListen),
    own() {
      const own = connect();
      return { query: on(own), end: () => own.end({ timeout: 1 }) };
    },
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
  pg: PgCapturePort,
  served: string,
  columnsOf: (table: string) => readonly string[] | undefined,
  options: {
    /** Its waits do not keep a process alive (see followCapture). */
    unref?: boolean;
    /**
     * Reads the columns `columnsOf` gives again, before a read's changes are made from rows
     * naming a table or columns it does not know (a feed with no catalog follower beside
     * it: the log's Durable Object's). Without it, such rows lose their rows (table level).
     */
    loadColumns?: () => Promise<void>;
  } = {},
): CarryingFeed {
  const name = captureSchema(served);
  const schema = quote(name);
  let lockKey: number | undefined;
  let own: ReturnType<NonNullable<PgCapturePort["own"]>> | undefined;
  let checkedAt = 0;
  let holding = false;
  let listening: Promise<{ unlisten(): Promise<void> }> | undefined;
  let wake: (() => void) | undefined;
  let notified = false;
  let carried: ((changes: CapturedChange[]) => void) | undefined;
  let arriving: CapturedChange[] = [];
  // Carried changes are handed over only while no change waits in the table that committed
  // before them: notifications come in commit order, so after one that says "read" (a
  // change not carried), or a (re)connection of the listener (what was sent meanwhile is
  // lost), later ones wait for a read of the table that began after it and found it all:
  // that read returns them in order with the earlier ones. Otherwise two changes of one row
  // could be applied in the other order than their commits.
  let behind = true;
  let wakes = 0;
  const woken = () => {
    notified = true;
    wake?.();
  };
  const fallBehind = () => {
    behind = true;
    wakes++;
    woken();
  };
  const heard = (payload: string) => {
    const change = heardChange(payload, name, columnsOf);
    if (change === undefined) return;
    if (change === "read") return fallBehind();
    if (!carried || behind) return woken();
    arriving.push(change);
    // Notifications that came in one read from the socket are handed over together.
    if (arriving.length === 1) {
      queueMicrotask(() => {
        const changes = arriving;
        arriving = [];
        carried?.(changes);
      });
    }
  };
  return {
    installed: () => installedOn(own?.query ?? pg.query, served),
    async lead() {
      if (!pg.own) return true;
      const now = Date.now();
      if (holding && now - checkedAt < LEAD_CHECK_MS) return true;
      checkedAt = now;
      try {
        if (lockKey === undefined) {
          const digest = await sha256(served);
          lockKey = LOCK_BASE + ((digest[0]! << 8) | digest[1]!);
        }
        own ??= pg.own();
        const [row] = holding
          ? await own.query(
              `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
                 AND objid = $1 AND pid = pg_backend_pid() AND granted) AS ok`,
              [lockKey],
            )
          : await own.query("SELECT pg_try_advisory_lock($1) AS ok", [lockKey]);
        holding = row?.ok === true;
      } catch {
        holding = false; // the connection broke: its lock went with it
      }
      return holding;
    },
    async read(limit) {
      if (!listening && pg.listen) {
        // Listening again after a reconnect: what was sent meanwhile is only in the table.
        listening = pg.listen(CHANNEL, heard, fallBehind);
        // Refused while the database is away: asked again on the next read.
        listening.catch(() => {
          listening = undefined;
        });
      }
      await listening;
      notified = false;
      const begun = wakes;
      // On the consumer's own connection: never queued behind the pool's reads.
      const rows = await (own?.query ?? pg.query)(
        `SELECT seq::float8 AS seq, tbl, op, old::text AS old, new::text AS new,
                ${atMs("at")} AS at, api IS NOT NULL AS late
           FROM ${schema}.changes
          WHERE api IS NULL OR at < clock_timestamp() - make_interval(secs => $2)
          ORDER BY seq LIMIT $1`,
        [limit, API_GRACE_MS / 1000],
      );
      // All there was, and nothing said "read" since it began: carried changes are in order.
      if (rows.length < limit && begun === wakes) behind = false;
      if (options.loadColumns && !rows.every((r) => fits(columnsOf(String(r.tbl)), r))) {
        await options.loadColumns();
      }
      return rows.map((r) => capturedChange(r, columnsOf(String(r.tbl))));
    },
    carry(apply) {
      carried = apply;
    },
    async pending() {
      const rows = await (own?.query ?? pg.query)(`SELECT 1 FROM ${schema}.changes LIMIT 1`);
      return rows.length > 0;
    },
    async consume(changes) {
      if (changes.length === 0) return;
      await (own?.query ?? pg.query)(
        `DELETE FROM ${schema}.changes WHERE seq = ANY($1::text::int8[])`,
        [`{${changes.map((c) => c.seq).join(",")}}`],
      );
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
        await own.query("SELECT pg_advisory_unlock($1)", [lockKey]).catch(() => {});
      }
      holding = false;
      await own?.end().catch(() => {});
      own = undefined;
    },
  };
}
