// Bundled by test/sql/d1-groups-in-workerd.test.ts and run inside workerd: edgecache/sql
// on a D1 binding, following D1 change capture through the change log's Durable Object,
// with group patches' shapes and writes (test/query-cache/group-shapes.ts). POST /setup
// makes the tables and installs capture; /write runs one write through the entry or around
// it (straight into D1, then caught up); /read answers every shape for both viewers, cached
// and fresh from D1; /stats is the entry's getStats().
import { ChangeLogObject } from "../../src/adapter/cloudflare/change-log-object.ts";
import { installD1Capture } from "../../src/database/d1/change-table.ts";
import { durableChangeLog } from "../../src/log/durable-object.ts";
import { type SqlCache, sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { type Dialect, reads, SCHEMA } from "../query-cache/group-shapes.ts";

export { ChangeLogObject };

// biome-ignore lint/suspicious/noExplicitAny: Cloudflare's binding types are not imported here
type Env = { DB: any; CHANGE_LOG: any };

const D1: Dialect = { p: () => "?", t: (n) => n };

let entry: { sql: SqlCache; sync(): Promise<void> } | undefined;

function open(env: Env) {
  const log = durableChangeLog({ namespace: env.CHANGE_LOG });
  const sql = sqlCache({ client: env.DB, tiers: [memoryStore({ maxBytes: 8_000_000 })], log });
  return { sql, sync: () => log.sync() };
}

async function fresh(env: Env, text: string, params: unknown[]) {
  return (
    await env.DB.prepare(text)
      .bind(...params)
      .all()
  ).results as unknown[];
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const path = new URL(request.url).pathname;
    const body = (request.method === "POST" ? await request.json() : {}) as Record<string, unknown>;
    if (path === "/setup") {
      const statements = SCHEMA(D1.t)
        .split(";")
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
      await env.DB.batch(statements.map((s) => env.DB.prepare(s)));
      await installD1Capture(env.DB);
      entry = open(env);
      return Response.json({});
    }
    entry ??= open(env);
    const { sql } = entry;
    // Other writers' records first (strict mode: every request).
    await entry.sync();
    if (path === "/write") {
      const { text, params, around } = body as unknown as {
        text: string;
        params: unknown[];
        around: boolean;
      };
      if (around) {
        await env.DB.prepare(text)
          .bind(...params)
          .run();
        return Response.json({ caughtUp: await sql.catchUp() });
      }
      await sql.execute(text, params);
      return Response.json({});
    }
    if (path === "/read") {
      const { step } = body as unknown as { step: number };
      const out = [];
      for (const [text, args] of reads(D1)) {
        for (const viewer of [1, 2]) {
          const params = args(viewer, step);
          out.push({
            text,
            params,
            cached: await sql.query(text, params),
            fresh: await fresh(env, text, params),
          });
        }
      }
      return Response.json(out);
    }
    if (path === "/stats") return Response.json(sql.getStats());
    return new Response("not found", { status: 404 });
  },
};
