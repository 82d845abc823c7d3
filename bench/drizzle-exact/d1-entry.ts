// Bundled by bench/drizzle-exact/d1.ts and run inside workerd (miniflare, with the
// `nodejs_als` flag): bench:drizzle-exact's application as a Worker on D1, drizzle-orm/d1
// with edgecache/drizzle following D1 change capture through the change log's Durable
// Object (which drains D1's change table), as docs/guides/drizzle.md sets it up. The bench
// process sends one request per operation of its sequence.
import { drizzle } from "drizzle-orm/d1";
import { ChangeLogObject } from "../../src/adapter/cloudflare/change-log-object.ts";
import { type DurableChangeLog, durableChangeLog } from "../../src/log/durable-object.ts";
import { installD1Capture } from "../../src/sql/d1/capture.ts";
import type { WriteOp } from "../workload/generate.ts";
import type { ReadSpec, Row, Table } from "../workload/oracle.ts";
import { type App, type AppDatabase, type Mode, openApp } from "./app.ts";
import {
  type AnyDb,
  aroundStatement,
  freshRow,
  readQuery,
  sqliteTables,
  writeThroughDrizzle,
} from "./queries.ts";
import { type StatementCounter, Statements } from "./statements.ts";

export { ChangeLogObject };

// biome-ignore lint/suspicious/noExplicitAny: Cloudflare's binding types are not imported here
type Env = { DB: any; CHANGE_LOG: any };
type Context = { waitUntil(work: Promise<unknown>): void };

/** What /setup is sent: the template database's schema and rows. */
export interface D1Setup {
  mode: Mode;
  /** CREATE TABLE and CREATE INDEX statements, in order. */
  schema: string[];
  rows: Record<Table, Row[]>;
}

/** Rows per INSERT: D1 binds at most 100 parameters to a statement. */
const ROWS_PER_INSERT = 16;

let isolate: { app: App; statements: Statements; log?: DurableChangeLog; fresh: AnyDb } | undefined;

export default {
  async fetch(request: Request, env: Env, ctx: Context): Promise<Response> {
    const path = new URL(request.url).pathname;
    try {
      if (path === "/setup") {
        isolate = await setup(env, (await request.json()) as D1Setup);
        return Response.json({});
      }
      const i = isolate;
      if (!i) return Response.json({ error: "not set up" }, { status: 409 });
      // Apply other isolates' writes before answering, as a Worker does on each request.
      await i.log?.sync();
      if (path === "/read") {
        const spec = (await request.json()) as ReadSpec;
        const { value, statements } = await i.statements.within(() =>
          readQuery(i.app.db, sqliteTables, spec),
        );
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
        } else await writeThroughDrizzle(i.app.db, sqliteTables, op, values);
        return Response.json({});
      }
      if (path === "/fresh") {
        const { table, id } = (await request.json()) as { table: Table; id: string };
        return Response.json({ row: await freshRow(i.fresh, sqliteTables, table, id) });
      }
      if (path === "/entries") return Response.json({ entries: i.app.entries() });
      if (path === "/counts") {
        return Response.json({
          statements: i.statements.total,
          capture: i.statements.capture,
          removed: i.app.removed(),
          stats: i.app.stats(),
        });
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

async function setup(env: Env, { mode, schema, rows }: D1Setup) {
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
  const statements = new Statements();
  const log = mode === "table-keyed" ? undefined : durableChangeLog({ namespace: env.CHANGE_LOG });
  const db: AppDatabase = {
    driver: "d1",
    ...sqliteTables,
    app: (cache, counter) => drizzle(counted(env.DB, counter), cache ? { cache } : {}),
    installCapture: async () => {
      await installD1Capture(env.DB);
    },
  };
  const app = await openApp(db, mode, statements, log);
  return { app, statements, ...(log && { log }), fresh: drizzle(env.DB) };
}

/**
 * The binding with its statements counted when they run (Drizzle prepares a select before
 * it asks the cache, so a hit prepares one too and runs none).
 */
// biome-ignore lint/suspicious/noExplicitAny: Cloudflare's D1 types are not imported here
function counted(db: any, counter: StatementCounter): any {
  // biome-ignore lint/suspicious/noExplicitAny: a D1 prepared statement
  const statement = (inner: any, sql: string): any => {
    const runs =
      (method: string) =>
      (...args: unknown[]): Promise<unknown> => {
        counter.count(sql);
        return inner[method](...args);
      };
    return {
      inner,
      sql,
      bind: (...params: unknown[]) => statement(inner.bind(...params), sql),
      all: runs("all"),
      raw: runs("raw"),
      run: runs("run"),
      first: runs("first"),
    };
  };
  return {
    prepare: (sql: string) => statement(db.prepare(sql), sql),
    // biome-ignore lint/suspicious/noExplicitAny: counted statements
    batch: (statements: any[]) => {
      for (const s of statements) counter.count(s.sql);
      return db.batch(statements.map((s) => s.inner));
    },
    exec: (sql: string) => {
      counter.count(sql);
      return db.exec(sql);
    },
  };
}
