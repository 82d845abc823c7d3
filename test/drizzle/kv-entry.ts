// Bundled by test/drizzle/kv-in-workerd.test.ts and run inside workerd: Drizzle on
// D1 with edgecache/drizzle over isolate memory and Workers KV. Each Worker is an isolate
// of its own; with LOG bound, isolates follow one Durable Object change log.

import { eq } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { ChangeLogObject } from "../../src/adapter/cloudflare/change-log-object.ts";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import type { DurableObjectNamespaceLike } from "../../src/durable/rpc.ts";
import { type DurableChangeLog, durableChangeLog } from "../../src/log/durable-object.ts";
import { type KvNamespaceLike, kvStore } from "../../src/stores/kv.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { answeringErrors } from "../helpers/entry-errors.ts";

export { ChangeLogObject };

const users = sqliteTable("users", {
  id: integer("id").primaryKey(),
  name: text("name").notNull(),
  at: integer("at", { mode: "timestamp_ms" }),
});

type Env = {
  // biome-ignore lint/suspicious/noExplicitAny: D1's binding type is Cloudflare's, not imported here
  DB: any;
  CACHE: KvNamespaceLike & {
    list(options?: { prefix?: string }): Promise<{ keys: { name: string }[] }>;
  };
  LOG?: DurableObjectNamespaceLike;
  /** The log's object name, so each test has one of its own. */
  LOG_NAME?: string;
};

let isolate:
  | { cache: ReturnType<typeof drizzleCache>; log?: DurableChangeLog; db: ReturnType<typeof db> }
  | undefined;

const db = (env: Env, cache: ReturnType<typeof drizzleCache>) =>
  withTransactions(drizzle(env.DB, { cache }));

function setUp(env: Env) {
  if (isolate) return isolate;
  const log = env.LOG && durableChangeLog({ namespace: env.LOG, name: env.LOG_NAME ?? "drizzle" });
  const cache = drizzleCache({
    tiers: [memoryStore({ maxBytes: 1_000_000 }), kvStore({ namespace: env.CACHE })],
    strategy: "all",
    ...(log && { log }),
  });
  isolate = { cache, db: db(env, cache), ...(log && { log }) };
  return isolate;
}

export default answeringErrors<Env>(route);

async function route(request: Request, env: Env): Promise<Response> {
  const url = new URL(request.url);
  const id = Number(url.searchParams.get("id") ?? "1");
  if (url.pathname === "/seed") {
    await env.DB.exec(
      "create table if not exists users (id integer primary key, name text not null, at integer)",
    );
    await env.DB.prepare("insert or replace into users values (?, ?, ?)")
      .bind(id, url.searchParams.get("name"), 1700000000123)
      .run();
    return Response.json({ ok: true });
  }
  const { cache, db, log } = setUp(env);
  // Strict mode: an isolate applies the log's records before its reads.
  await log?.sync();
  switch (url.pathname) {
    case "/read": {
      const rows = await db.select().from(users).where(eq(users.id, id));
      const stats = cache.engine.stats();
      return Response.json({
        rows,
        isDate: rows[0]?.at instanceof Date,
        drizzle: cache.getStats(),
        tiers: Object.fromEntries(
          stats.tiers.map((t) => [t.name, { hits: t.hits, errors: t.errors }]),
        ),
      });
    }
    case "/update": {
      await db
        .update(users)
        .set({ name: url.searchParams.get("name")! })
        .where(eq(users.id, id));
      return Response.json({ ok: true });
    }
    case "/kv":
      return Response.json(
        (await env.CACHE.list({ prefix: "edgecache:drizzle:" })).keys.map((k) => k.name),
      );
    default:
      return new Response("no route", { status: 404 });
  }
}
