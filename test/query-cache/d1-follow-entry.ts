// Bundled by test/drizzle/d1-capture-in-workerd.test.ts and
// test/raw-sql/d1-capture-in-workerd.test.ts, and run inside workerd: edgecache/drizzle and
// edgecache/sql on D1, following D1 change capture through the change log's Durable Object
// (which drains D1's change table, EDGECACHE_CAPTURE_MS), as a Worker would use them.
import { and, asc, eq, gt, inArray, isNull, like, or } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { ChangeLogObject } from "../../src/adapter/cloudflare/change-log-object.ts";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { durableChangeLog } from "../../src/log/durable-object.ts";
import { sqlCache } from "../../src/raw-sql/index.ts";
import { installD1Capture } from "../../src/sql/d1/capture.ts";
import { memoryStore } from "../../src/stores/memory.ts";

export { ChangeLogObject };

const users = sqliteTable("users", {
  id: integer("id").primaryKey(),
  name: text("name"),
  score: integer("score").notNull(),
});

// biome-ignore lint/suspicious/noExplicitAny: Cloudflare's binding types are not imported here
type Env = { DB: any; CHANGE_LOG: any };

function open(env: Env) {
  // A log per engine: a log has one follower.
  const logs = [0, 1].map(() => durableChangeLog({ namespace: env.CHANGE_LOG }));
  const tiers = () => [memoryStore({ maxBytes: 4_000_000 })];
  const cache = drizzleCache({ tiers: tiers(), log: logs[0], strategy: "all" });
  const db = withTransactions(drizzle(env.DB, { cache }));
  const sql = sqlCache({ client: env.DB, tiers: tiers(), log: logs[1] });
  return { logs, cache, db, sql, fresh: drizzle(env.DB) };
}

let isolate: ReturnType<typeof open> | undefined;

type Db = ReturnType<typeof open>["fresh"];

/** The selects the property draws from: shapes the planner registers exactly, and a count. */
export const READS = [
  (db: Db, p: number) => db.select().from(users).where(eq(users.id, p)),
  (db: Db, p: number) =>
    db
      .select()
      .from(users)
      .where(eq(users.name, `n${p % 3}`))
      .orderBy(asc(users.id)),
  (db: Db, p: number) =>
    db
      .select()
      .from(users)
      .where(gt(users.score, p))
      .orderBy(asc(users.score), asc(users.id))
      .limit(3),
  (db: Db, _p: number) => db.select().from(users).orderBy(asc(users.id)).limit(4).offset(2),
  (db: Db, p: number) =>
    db
      .select()
      .from(users)
      .where(inArray(users.id, [p, p + 1, p + 2]))
      .orderBy(asc(users.id)),
  (db: Db, p: number) =>
    db
      .select()
      .from(users)
      .where(or(like(users.name, "n1%"), and(isNull(users.name), gt(users.score, p))))
      .orderBy(asc(users.id)),
];

/** Raw SQL reads for edgecache/sql: the same kinds of shapes. */
const SQL_READS: [string, (p: number) => unknown[]][] = [
  ["select id, name, score from users where id = ?", (p) => [p]],
  ["select id, name, score from users where name = ? order by id", (p) => [`n${p % 3}`]],
  ["select id, name, score from users where score > ? order by score, id limit 3", (p) => [p]],
  ["select id, name, score from users order by id limit 4 offset 2", () => []],
  ["select count(*) as n from users", () => []],
];

interface Op {
  /** "read", "write" (through the entry), "around" (straight into D1). */
  kind: "read" | "write" | "around";
  /** Which read, or which write: 0 update, 1 upsert, 2 delete. */
  which: number;
  id: number;
  value: number;
}

async function drizzleOp(i: ReturnType<typeof open>, env: Env, op: Op) {
  const name = op.value % 4 === 3 ? null : `n${op.value % 3}`;
  if (op.kind === "read") {
    const read = READS[op.which % READS.length]!;
    const cached = await read(i.db as unknown as Db, op.id);
    const fresh = await read(i.fresh, op.id);
    return { cached, fresh };
  }
  if (op.kind === "write") {
    if (op.which === 0) {
      await i.db.update(users).set({ name, score: op.value }).where(eq(users.id, op.id));
    } else if (op.which === 1) {
      await i.db
        .insert(users)
        .values({ id: op.id, name, score: op.value })
        .onConflictDoUpdate({ target: users.id, set: { name, score: op.value } });
    } else await i.db.delete(users).where(eq(users.id, op.id));
    return {};
  }
  await around(env, op, name);
  // Read after the drain caught up: the object drains now, this isolate applies it.
  return { caughtUp: await i.cache.catchUp() };
}

async function sqlOp(i: ReturnType<typeof open>, env: Env, op: Op) {
  const name = op.value % 4 === 3 ? null : `n${op.value % 3}`;
  if (op.kind === "read") {
    const [text, params] = SQL_READS[op.which % SQL_READS.length]!;
    const cached = await i.sql.query(text, params(op.id));
    const fresh = (
      await env.DB.prepare(text)
        .bind(...params(op.id))
        .all()
    ).results;
    return { cached, fresh };
  }
  if (op.kind === "write") {
    if (op.which === 0) {
      await i.sql.execute("update users set name = ?, score = ? where id = ?", [
        name,
        op.value,
        op.id,
      ]);
    } else if (op.which === 1) {
      await i.sql.execute(
        "insert into users (id, name, score) values (?, ?, ?) on conflict (id) do update set name = excluded.name, score = excluded.score",
        [op.id, name, op.value],
      );
    } else await i.sql.execute("delete from users where id = ?", [op.id]);
    return {};
  }
  await around(env, op, name);
  return { caughtUp: await i.sql.catchUp() };
}

/** A write made around edgecache, straight through the binding (as `wrangler d1 execute`). */
async function around(env: Env, op: Op, name: string | null) {
  const statements = [
    env.DB.prepare("update users set name = ?, score = ? where id = ?").bind(name, op.value, op.id),
    env.DB.prepare(
      "insert into users (id, name, score) values (?, ?, ?) on conflict (id) do update set name = excluded.name, score = excluded.score",
    ).bind(op.id, name, op.value),
    env.DB.prepare("delete from users where id = ?").bind(op.id),
  ];
  await statements[op.which % 3].run();
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const path = new URL(request.url).pathname;
    if (path === "/setup") {
      const { capture } = (await request.json()) as { capture: boolean };
      await env.DB.exec(
        "create table if not exists users (id integer primary key, name text, score integer not null)",
      );
      await env.DB.exec("delete from users");
      const rows = Array.from({ length: 10 }, (_, k) => `(${k + 1}, 'n${k % 3}', ${k * 3})`);
      await env.DB.exec(`insert into users values ${rows.join(", ")}`);
      if (capture) await installD1Capture(env.DB);
      isolate = open(env);
      return Response.json({});
    }
    isolate ??= open(env);
    const i = isolate;
    // Apply other writers' records before reading (strict mode: every request).
    await Promise.all(i.logs.map((log) => log.sync()));
    if (path === "/drizzle" || path === "/sql") {
      const ops = (await request.json()) as Op[];
      const results = [];
      for (const op of ops) {
        results.push(await (path === "/drizzle" ? drizzleOp(i, env, op) : sqlOp(i, env, op)));
      }
      return Response.json(results);
    }
    if (path === "/catch-up") {
      return Response.json({ drizzle: await i.cache.catchUp(), sql: await i.sql.catchUp() });
    }
    if (path === "/stats") {
      return Response.json({ drizzle: i.cache.getStats(), sql: i.sql.getStats() });
    }
    return new Response("not found", { status: 404 });
  },
};
