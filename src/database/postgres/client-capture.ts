import type postgres from "postgres";
import { type CaptureFeed, mapFeed } from "../../core/capture-feed.ts";
import type { CapturedShape, CaptureInstallation, ClientCapture } from "../client-capture.ts";
import { runStepsAsync } from "../driver.ts";
import { nodeRequire } from "../node-require.ts";
import { type ForeignKeyAction, literal, quote } from "../schema.ts";
import {
  atMs,
  captureSchema,
  EXACT_FLOATS,
  type PgCapturePort,
  postgresCaptureFeed,
  postgresJsCapturePort,
} from "./change-table.ts";
import { postgresDialect } from "./dialect.ts";

/** Changes looked at per change table when asked whether one waits unapplied. */
const PENDING_LOOK = 50;

/**
 * Tables with capture's trigger whose schema's change table exists, with columns and keys.
 * The lists come as JSON, which every client parses: postgres.js parses arrays only with
 * `fetch_types` (often off on Workers, where it costs each request's connection a query).
 */
const CAPTURED_TABLES_SQL = `
  SELECT n.nspname AS schema, c.relname AS name,
    to_json(ARRAY(SELECT a.attname::text FROM pg_attribute a
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum)) AS columns,
    to_json(ARRAY(SELECT a.attname::text FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
           WHERE i.indrelid = c.oid AND i.indisprimary)) AS pk,
    coalesce(${literal(EXACT_FLOATS.replaceAll(" ", ""))} = ANY (p.proconfig), false) AS exact_reals
    FROM pg_trigger t
    JOIN pg_proc p ON p.oid = t.tgfoid
    JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE t.tgname = 'edgecache_capture'
     AND to_regclass(format('%I.changes',
           CASE WHEN n.nspname = 'public' THEN 'edgecache' ELSE 'edgecache_' || n.nspname END))
         IS NOT NULL`;

/** A table's name outside capture: bare in `public`, `schema.table` elsewhere. */
export const qualified = (schema: string, table: string) =>
  schema === "public" ? table : `${schema}.${table}`;

/**
 * Capture behind an application's postgres.js client: each change table's consumer holds
 * its lock on a one-connection client of its own, made by the application's postgres.js
 * (see postgresCaptureFeed).
 */
export function postgresJsClientCapture(sql: postgres.Sql): ClientCapture {
  let factory: ((options: unknown) => postgres.Sql) | undefined;
  const connect = () => {
    factory ??= loadPostgres();
    return factory({
      ...(sql as unknown as { options: object }).options,
      max: 1,
      onnotice: () => {},
      shared: { retries: 0, typeArrayMap: {} },
    });
  };
  return postgresClientCapture(postgresJsCapturePort(sql, connect));
}

/** How long a look at the catalog holds in a Worker before a use reads it again, ms. */
const DRAINED_REFRESH_MS = 5000;

/**
 * Capture behind a postgres.js client inside a Worker (through Hyperdrive, or straight over
 * `cloudflare:sockets`), whose cache follows the change log's Durable Object: the object
 * drains the change table (see the Cloudflare adapter's postgres-drain.ts), since an isolate
 * holds no connection between requests to LISTEN on or to keep a session lock. So its
 * installations have no feed here, and the log orders what it drains. The catalog is read
 * when capture is used and at most every DRAINED_REFRESH_MS (no timer outlives a request).
 * Drained records are not put in the forms the cache compares floats and timestamps by (a
 * follower here does that with the cache's column kinds), so those columns are compared
 * as other values, and fractions are never patched.
 */
export function postgresDrainedCapture(sql: postgres.Sql): ClientCapture {
  const capture = postgresClientCapture({
    query: (text, params = []) => sql.unsafe(text, params as never[]),
  });
  return {
    foreignKeys: capture.foreignKeys,
    installations: async () =>
      (await capture.installations()).map(({ feed: _consumedElsewhere, ...i }) => ({
        ...i,
        exactReals: false,
      })),
    lazyMs: DRAINED_REFRESH_MS,
    drainedByLog: true,
  };
}

/** PostgreSQL's error for a relation that does not exist (capture not installed). */
const UNDEFINED_TABLE = "42P01";

/**
 * The change table of schema `served` as the change log's Durable Object drains it (see the
 * Cloudflare adapter's postgres-drain.ts): read by polling on `query` (no LISTEN, no session
 * lock: the object is its only consumer), tables named as the query caches name them
 * (`schema.table` outside `public`), columns read from the catalog when a change names a
 * table or columns not known yet. A change table not installed reads as empty.
 */
export function postgresDrainFeed(
  query: (sql: string, params?: readonly unknown[]) => Promise<Record<string, unknown>[]>,
  served: string,
): CaptureFeed {
  const catalog = postgresClientCapture({ query });
  let shapes = new Map<string, CapturedShape>();
  const loadColumns = async () => {
    const found = await catalog.installations();
    shapes = new Map(found.find((i) => i.id === captureSchema(served))?.tables ?? []);
  };
  const feed = mapFeed(
    postgresCaptureFeed({ query }, served, (t) => shapes.get(qualified(served, t))?.columns, {
      loadColumns,
    }),
    (e) => ({ ...e, table: qualified(served, e.table) }),
  );
  const unlessMissing =
    <T>(empty: T) =>
    (error: unknown): T => {
      if ((error as { code?: unknown })?.code === UNDEFINED_TABLE) return empty;
      throw error;
    };
  return {
    ...feed,
    read: (limit, urgent) => feed.read(limit, urgent).catch(unlessMissing([])),
    pending: () => feed.pending().catch(unlessMissing(false)),
  };
}

/**
 * Capture behind an application's PostgreSQL client (`pg`: see PgCapturePort): one
 * installation per schema with a change table, each consumed in this process by the node
 * holding its lock. Tables are named `schema.table` outside `public`.
 */
export function postgresClientCapture(pg: PgCapturePort): ClientCapture {
  /** The schemas whose change tables the installations last found have. */
  let schemas: string[] = [];
  // What a caller waits on (foreign keys as a write settles, changes pending as a read is
  // stored) runs on a connection of capture's own where it can open one: the caller may
  // hold one of the application's pooled connections meanwhile (Kysely during a
  // statement; any ORM's transaction until it commits), and a pool whose every connection
  // is held so would never answer.
  let mine: ReturnType<NonNullable<PgCapturePort["own"]>> | undefined;
  const waited: PgCapturePort["query"] = (text, params) => {
    if (!pg.own) return pg.query(text, params);
    mine ??= pg.own();
    return mine.query(text, params);
  };
  return {
    async close() {
      const m = mine;
      mine = undefined;
      await m?.end().catch(() => {});
    },
    async foreignKeys(wanted) {
      const all: ForeignKeyAction[] = [];
      for (const schema of wanted) {
        const steps = postgresDialect(schema).foreignKeyActions();
        const actions = await runStepsAsync(steps, (s) => waited(s.sql, s.params));
        for (const a of actions) {
          all.push({
            ...a,
            parent: qualified(schema, a.parent),
            child: qualified(schema, a.child),
          });
        }
      }
      return all;
    },
    async installations() {
      const rows = await pg.query(CAPTURED_TABLES_SQL);
      schemas = [...new Set(rows.map((r) => String(r.schema)))];
      if (rows.length === 0) return [];
      const bySchema = new Map<string, Map<string, CapturedShape>>();
      const exactReals = new Map<string, boolean>();
      for (const r of rows) {
        const schema = String(r.schema);
        const tables = bySchema.get(schema) ?? new Map<string, CapturedShape>();
        bySchema.set(schema, tables);
        exactReals.set(schema, (exactReals.get(schema) ?? true) && r.exact_reals === true);
        const pk = r.pk as string[];
        tables.set(qualified(schema, String(r.name)), {
          columns: r.columns as string[],
          ...(pk.length === 1 && { primaryKey: pk[0]! }),
          ...(pk.length > 1 && { keys: [pk] }),
        });
      }
      return [...bySchema].map(
        ([schema, tables]): CaptureInstallation => ({
          id: captureSchema(schema),
          tables,
          exactReals: exactReals.get(schema) === true,
          feed: (shapes) =>
            mapFeed(
              postgresCaptureFeed(pg, schema, (t) => shapes(qualified(schema, t))?.columns, {
                unref: true,
              }),
              (e) => ({ ...e, table: qualified(schema, e.table) }),
            ),
        }),
      );
    },
    // The consumer applies changes as they become visible, each deleted once applied, so
    // a load after which the change tables hold no change it has not applied saw exactly
    // the changes applied before it. Changes of concurrent transactions may be applied in
    // another order than their commits, but then they change other rows (one row's changes
    // are ordered by its lock, and the deferred trigger numbers them at the commit), and
    // each record's patch is exact for the rows it carries whatever the others' order.
    async pendingInOrder(tables, applied) {
      const reads: string[] = [];
      const params: string[][] = [];
      for (const schema of schemas) {
        const id = captureSchema(schema);
        let where = "";
        if (tables !== undefined) {
          // The change table names its tables without their schema.
          const names = tables.flatMap((t) => {
            const bare = t.slice(t.indexOf(".") + 1);
            return qualified(schema, bare) === t ? [bare] : [];
          });
          if (names.length === 0) continue;
          params.push(names);
          where = `WHERE tbl = ANY ($${params.length})`;
        }
        // As the feed reads them (seq and at), so that `applied` knows them.
        reads.push(`(SELECT ${literal(id)} AS id, seq::float8 AS seq, ${atMs("at")} AS at
          FROM ${quote(id)}.changes ${where} ORDER BY seq LIMIT ${PENDING_LOOK})`);
      }
      if (reads.length === 0) return false;
      const rows = await waited(reads.join(" UNION ALL "), params);
      const seen = new Map<string, number>();
      for (const r of rows) {
        const id = String(r.id);
        seen.set(id, (seen.get(id) ?? 0) + 1);
        if (!applied?.(id, { seq: Number(r.seq), at: Number(r.at) })) return true;
      }
      // A full look may have left out a change that waits.
      return [...seen.values()].some((n) => n >= PENDING_LOOK);
    },
  };
}

/**
 * postgres.js's factory, from the application's own copy (see nodeRequire). Only reached
 * with a postgres.js client, so only on Node.
 */
function loadPostgres(): (options: unknown) => postgres.Sql {
  const loaded = nodeRequire(import.meta.url)("postgres") as {
    default?: (options: unknown) => postgres.Sql;
  };
  return loaded.default ?? (loaded as unknown as (options: unknown) => postgres.Sql);
}
