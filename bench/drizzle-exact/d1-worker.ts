// Run inside workerd (miniflare, with the `nodejs_als` flag) by each ORM's D1 entry
// (d1-entry.ts: Drizzle, d1-kysely-entry.ts, d1-prisma-entry.ts): bench:drizzle-exact's
// application as a Worker on D1, its cache following D1 change capture through the change
// log's Durable Object (which drains D1's change table), as the ORMs' guides set it up. The
// bench process (d1.ts) sends one request per operation of its sequence.
import type { DurableChangeLog } from "../../src/log/durable-object.ts";
import { durableChangeLog } from "../../src/log/durable-object.ts";
import type { WriteOp } from "../workload/generate.ts";
import type { ReadSpec, Row, Table } from "../workload/oracle.ts";
import type { Mode } from "./app.ts";
import type { Counts } from "./contestant.ts";
import { catchUp, type OrmApp } from "./orm-queries.ts";
import { aroundStatement, type ReadResult } from "./queries.ts";
import { type StatementCounter, Statements } from "./statements.ts";

// biome-ignore lint/suspicious/noExplicitAny: Cloudflare's binding types are not imported here
export type Env = { DB: any; CHANGE_LOG: any };
type Context = { waitUntil(work: Promise<unknown>): void };

/** What /setup is sent: the template database's schema and rows. */
export interface D1Setup {
  mode: Mode;
  /** CREATE TABLE and CREATE INDEX statements, in order. */
  schema: string[];
  rows: Record<Table, Row[]>;
}

/** One ORM's application in the Worker, over its cached client and an uncached one. */
export interface WorkerApp {
  read(spec: ReadSpec): Promise<ReadResult>;
  write(op: WriteOp, values: Row | undefined): Promise<void>;
  /** The row as the uncached client reads it. */
  fresh(table: Table, id: string): Promise<Row | undefined>;
  entries(): number;
  /** Cached entries removed by writes so far. */
  removed(): number;
  stats(): Counts["stats"];
  /** Resolves once the writes committed so far reach the cache (capture), at once otherwise. */
  catchUp(): Promise<void>;
  /** Resolves once the cache's background work (reloads of hot selects) has settled. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Opens the application over the seeded D1 database in `mode` (capture installed by it),
 * its statements counted by `counter`; `log` (none for the Upstash-style model) is the one
 * its cache follows.
 */
export type OpenWorkerApp = (
  env: Env,
  mode: Mode,
  counter: StatementCounter,
  log: DurableChangeLog | undefined,
) => Promise<WorkerApp>;

/** Rows per INSERT: D1 binds at most 100 parameters to a statement. */
const ROWS_PER_INSERT = 16;

/** The Worker of the application `open` makes. */
export function d1Worker(open: OpenWorkerApp) {
  let isolate: { app: WorkerApp; statements: Statements; log?: DurableChangeLog } | undefined;
  return {
    async fetch(request: Request, env: Env, ctx: Context): Promise<Response> {
      const path = new URL(request.url).pathname;
      try {
        if (path === "/setup") {
          const { mode, schema, rows } = (await request.json()) as D1Setup;
          await seed(env, schema, rows);
          const statements = new Statements();
          const log =
            mode === "table-keyed" ? undefined : durableChangeLog({ namespace: env.CHANGE_LOG });
          const app = await open(env, mode, statements, log);
          isolate = { app, statements, ...(log && { log }) };
          return Response.json({});
        }
        const i = isolate;
        if (!i) return Response.json({ error: "not set up" }, { status: 409 });
        // Apply other isolates' writes before answering, as a Worker does on each request.
        await i.log?.sync();
        if (path === "/read") {
          const spec = (await request.json()) as ReadSpec;
          const { value, statements } = await i.statements.within(() => i.app.read(spec));
          return Response.json({ ...value, statements });
        }
        if (path === "/write") {
          const { op, values, around } = (await request.json()) as {
            op: WriteOp;
            values?: Row;
            around: boolean;
          };
          if (around) {
            // Straight into D1 through the binding, as `wrangler d1 execute` or another Worker.
            const { sql, params } = aroundStatement(op, values);
            i.statements.count(sql);
            await env.DB.prepare(sql)
              .bind(...params)
              .run();
            await i.app.catchUp();
          } else await i.app.write(op, values);
          return Response.json({});
        }
        if (path === "/fresh") {
          const { table, id } = (await request.json()) as { table: Table; id: string };
          return Response.json({ row: await i.app.fresh(table, id) });
        }
        if (path === "/entries") return Response.json({ entries: i.app.entries() });
        if (path === "/counts") {
          return Response.json({
            statements: i.statements.total,
            capture: i.statements.capture,
            removed: i.app.removed(),
            stats: i.app.stats(),
          } satisfies Counts);
        }
        if (path === "/catch-up") {
          await i.app.catchUp();
          return Response.json({});
        }
        if (path === "/close") {
          await i.app.close();
          isolate = undefined;
          return Response.json({});
        }
        return Response.json({ error: `no route ${path}` }, { status: 404 });
      } catch (err) {
        return Response.json({ error: String((err as Error)?.message ?? err) }, { status: 500 });
      } finally {
        // The cache's background work (reloading a hot select a write invalidated) runs in the
        // request that started it and ends with it: each request waits for it after its
        // response, as the data API's Worker does (src/adapter/cloudflare/worker.ts).
        if (isolate) ctx.waitUntil(isolate.app.idle());
      }
    },
  };
}

/** The template's tables and rows in D1. */
async function seed(env: Env, schema: string[], rows: Record<Table, Row[]>): Promise<void> {
  for (const sql of schema) await env.DB.prepare(sql).run();
  for (const [table, all] of Object.entries(rows)) {
    const columns = Object.keys(all[0] ?? {});
    const statements = [];
    for (let k = 0; k < all.length; k += ROWS_PER_INSERT) {
      const chunk = all.slice(k, k + ROWS_PER_INSERT);
      const marks = chunk.map(() => `(${columns.map(() => "?").join(", ")})`).join(", ");
      statements.push(
        env.DB.prepare(
          `INSERT INTO "${table}" (${columns.map((c) => `"${c}"`).join(", ")}) VALUES ${marks}`,
        ).bind(...chunk.flatMap((r) => columns.map((c) => r[c]))),
      );
    }
    if (statements.length > 0) await env.DB.batch(statements);
  }
}

/** Kysely's or Prisma's application (orm-queries.ts) as the Worker drives it. */
export function workerOrmApp(app: OrmApp, mode: Mode): WorkerApp {
  return {
    read: (spec) => app.read(spec),
    write: (op, values) => app.write(op, values),
    fresh: (table, id) => app.fresh(table, id),
    entries: () => app.cache.getStats().keys,
    removed: () => app.cache.engine.stats().invalidations,
    stats: () => app.cache.getStats(),
    catchUp: () => catchUp(app, mode),
    idle: () => app.cache.engine.drain(),
    close: () => app.close(),
  };
}
