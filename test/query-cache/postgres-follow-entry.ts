// Bundled by test/query-cache/postgres-follow-in-workerd.test.ts and run inside workerd:
// edgecache/drizzle and edgecache/sql on postgres.js (workerd's build, over
// `cloudflare:sockets`, through a Hyperdrive binding) following PostgreSQL change capture
// through the change log's Durable Object, which drains the change table of
// EDGECACHE_CAPTURE_SCHEMA (postgresChangeLogObject). The caches live as long as the isolate;
// postgres.js's connections only as long as a request (workerd refuses a socket opened by
// another request), so each request makes its client and the caches' client hands over to it.
import { AsyncLocalStorage } from "node:async_hooks";
import { asc, eq, gt } from "drizzle-orm";
import { integer, pgSchema, text } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { postgresChangeLogObject } from "../../src/adapter/cloudflare/postgres-drain.ts";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { durableChangeLog } from "../../src/log/durable-object.ts";
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";

export const ChangeLogObject = postgresChangeLogObject(postgres);

interface Env {
  HYPERDRIVE: { connectionString: string };
  // biome-ignore lint/suspicious/noExplicitAny: Cloudflare's binding types are not imported here
  CHANGE_LOG: any;
  EDGECACHE_CAPTURE_SCHEMA: string;
}

/** One op of a request: a read (`which` of the reads) or a write through the entry (0 update, 1 upsert, 2 delete). */
export interface Op {
  kind: "read" | "write";
  which: number;
  id: number;
  value: number;
}

/** The name an op writes: n0, n1, n2, or null. */
export const nameOf = (op: Op): string | null => (op.value % 4 === 3 ? null : `n${op.value % 3}`);

/** The running request's postgres.js client, which the isolate's client forwards to. */
const running = new AsyncLocalStorage<postgres.Sql>();
const current = () => running.getStore()!;

/**
 * The client the caches are made with, once per isolate: postgres.js's `Sql` (a function
 * with methods) forwarding every call to the client of the request running.
 */
const requestClient = new Proxy((() => {}) as unknown as postgres.Sql, {
  apply: (_target, _this, args) => (current() as unknown as (...a: unknown[]) => unknown)(...args),
  get: (_target, name) => Reflect.get(current(), name),
});

function open(env: Env) {
  const s = env.EDGECACHE_CAPTURE_SCHEMA;
  const users = pgSchema(s).table("users", {
    id: integer("id").primaryKey(),
    name: text("name"),
    score: integer("score").notNull(),
  });
  // A log per engine: a log has one follower.
  const logs = [0, 1].map(() => durableChangeLog({ namespace: env.CHANGE_LOG }));
  const cache = drizzleCache({ tiers: [memoryStore()], log: logs[0], strategy: "all" });
  const db = withTransactions(drizzle(requestClient, { cache }));
  const sql = sqlCache({ client: requestClient, tiers: [memoryStore()], log: logs[1] });
  const fresh = drizzle(requestClient);
  type Db = typeof fresh;
  const reads = [
    (d: Db, p: number) => d.select().from(users).where(eq(users.id, p)),
    (d: Db, p: number) =>
      d
        .select()
        .from(users)
        .where(eq(users.name, `n${p % 3}`))
        .orderBy(asc(users.id)),
    (d: Db, p: number) =>
      d
        .select()
        .from(users)
        .where(gt(users.score, p))
        .orderBy(asc(users.score), asc(users.id))
        .limit(3),
    (d: Db, _p: number) => d.select().from(users).orderBy(asc(users.id)).limit(4).offset(2),
  ];
  const sqlReads: [string, (p: number) => unknown[]][] = [
    [`select id, name, score from ${s}.users where id = $1`, (p) => [p]],
    [`select id, name, score from ${s}.users where name = $1 order by id`, (p) => [`n${p % 3}`]],
    [
      `select id, name, score from ${s}.users where score > $1 order by score, id limit 3`,
      (p) => [p],
    ],
    [`select id, name, score from ${s}.users order by id limit 4 offset 2`, () => []],
    [`select count(*)::int as n from ${s}.users`, () => []],
  ];

  async function drizzleOp(op: Op) {
    if (op.kind === "read") {
      const read = reads[op.which % reads.length]!;
      return { cached: await read(db as unknown as Db, op.id), fresh: await read(fresh, op.id) };
    }
    const name = nameOf(op);
    if (op.which === 0) {
      await db.update(users).set({ name, score: op.value }).where(eq(users.id, op.id));
    } else if (op.which === 1) {
      await db
        .insert(users)
        .values({ id: op.id, name, score: op.value })
        .onConflictDoUpdate({ target: users.id, set: { name, score: op.value } });
    } else await db.delete(users).where(eq(users.id, op.id));
    return {};
  }

  async function sqlOp(op: Op) {
    if (op.kind === "read") {
      const [text, params] = sqlReads[op.which % sqlReads.length]!;
      const cached = await sql.query(text, params(op.id));
      return { cached, fresh: await current().unsafe(text, params(op.id) as never[]) };
    }
    const name = nameOf(op);
    if (op.which === 0) {
      await sql.execute(`update ${s}.users set name = $1, score = $2 where id = $3`, [
        name,
        op.value,
        op.id,
      ]);
    } else if (op.which === 1) {
      await sql.execute(
        `insert into ${s}.users (id, name, score) values ($1, $2, $3)
          on conflict (id) do update set name = excluded.name, score = excluded.score`,
        [op.id, name, op.value],
      );
    } else await sql.execute(`delete from ${s}.users where id = $1`, [op.id]);
    return {};
  }

  return {
    logs,
    routes: { "/drizzle": drizzleOp, "/sql": sqlOp } as Record<
      string,
      (op: Op) => Promise<unknown>
    >,
    caches: { drizzle: cache, sql } as Record<
      string,
      { catchUp(): Promise<boolean>; getStats(): unknown }
    >,
  };
}

let isolate: ReturnType<typeof open> | undefined;

export default {
  async fetch(
    req: Request,
    env: Env,
    ctx: { waitUntil(p: Promise<unknown>): void },
  ): Promise<Response> {
    const client = postgres(env.HYPERDRIVE.connectionString, {
      max: 2,
      fetch_types: false,
      onnotice: () => {},
    });
    try {
      return await running.run(client, () => handle(req, env));
    } catch (error) {
      return new Response(String((error as Error).stack ?? error), { status: 500 });
    } finally {
      ctx.waitUntil(client.end({ timeout: 1 }));
    }
  },
};

async function handle(request: Request, env: Env): Promise<Response> {
  isolate ??= open(env);
  const i = isolate;
  const path = new URL(request.url).pathname;
  // Apply other writers' records before reading (strict mode: every request).
  await Promise.all(i.logs.map((log) => log.sync()));
  const route = i.routes[path];
  if (route) {
    const results = [];
    for (const op of (await request.json()) as Op[]) results.push(await route(op));
    return Response.json(results);
  }
  const named = Object.entries(i.caches);
  if (path === "/catch-up") {
    // The caches named (each follows capture once it has read a captured table).
    const { caches } = (await request.json()) as { caches: string[] };
    const asked = named.filter(([n]) => caches.includes(n));
    const caught = await Promise.all(asked.map(async ([n, c]) => [n, await c.catchUp()]));
    return Response.json(Object.fromEntries(caught));
  }
  if (path === "/stats") {
    return Response.json(Object.fromEntries(named.map(([n, c]) => [n, c.getStats()])));
  }
  return new Response("not found", { status: 404 });
}
