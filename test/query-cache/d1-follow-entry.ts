// Bundled by test/drizzle/d1-capture-in-workerd.test.ts,
// test/sql/d1-capture-in-workerd.test.ts and test/kysely/d1-in-workerd.test.ts, and run
// inside workerd: edgecache/drizzle, edgecache/sql and edgecache/kysely (over kysely-d1's
// dialect) on D1, following D1 change capture through the change log's Durable Object
// (which drains D1's change table, EDGECACHE_CAPTURE_MS), as a Worker would use them. The
// table, its writes around edgecache and the routes are d1-follow-table.ts's.
import { and, asc, eq, gt, inArray, isNull, like, or } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { type ExpressionBuilder, Kysely } from "kysely";
import { D1Dialect } from "kysely-d1";
import { ChangeLogObject } from "../../src/adapter/cloudflare/change-log-object.ts";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { kyselyCache } from "../../src/kysely/index.ts";
import { durableChangeLog } from "../../src/log/durable-object.ts";
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { around, type Env, followingEntry, nameOf, type Op } from "./d1-follow-table.ts";

export { ChangeLogObject };

const users = sqliteTable("users", {
  id: integer("id").primaryKey(),
  name: text("name"),
  score: integer("score").notNull(),
});

interface KyselyDb {
  users: { id: number; name: string | null; score: number };
}

function open(env: Env) {
  // A log per engine: a log has one follower.
  const logs = [0, 1, 2].map(() => durableChangeLog({ namespace: env.CHANGE_LOG }));
  const tiers = () => [memoryStore({ maxBytes: 4_000_000 })];
  const cache = drizzleCache({ tiers: tiers(), log: logs[0], strategy: "all" });
  const db = withTransactions(drizzle(env.DB, { cache }));
  const sql = sqlCache({ client: env.DB, tiers: tiers(), log: logs[1] });
  const dialect = kyselyCache(new D1Dialect({ database: env.DB }), {
    client: env.DB,
    tiers: tiers(),
    log: logs[2],
  });
  const kysely = new Kysely<KyselyDb>({ dialect });
  const freshKysely = new Kysely<KyselyDb>({ dialect: new D1Dialect({ database: env.DB }) });
  return { logs, cache, db, sql, dialect, kysely, freshKysely, fresh: drizzle(env.DB) };
}

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

type Kdb = Kysely<KyselyDb>;

/** Kysely's columns, or every column: a result of `select *` is read again, not patched. */
const COLUMNS = ["id", "name", "score"] as const;

/**
 * Kysely's selects: the shapes of READS as Kysely compiles them (quoted names), half with
 * their columns listed, half with `selectAll()`.
 */
const KYSELY_READS = [
  (db: Kdb, p: number) => db.selectFrom("users").select(COLUMNS).where("id", "=", p),
  (db: Kdb, p: number) =>
    db
      .selectFrom("users")
      .selectAll()
      .where("name", "=", `n${p % 3}`)
      .orderBy("id"),
  (db: Kdb, p: number) =>
    db
      .selectFrom("users")
      .select(COLUMNS)
      .where("score", ">", p)
      .orderBy("score")
      .orderBy("id")
      .limit(3),
  (db: Kdb, _p: number) => db.selectFrom("users").selectAll().orderBy("id").limit(4).offset(2),
  (db: Kdb, p: number) =>
    db
      .selectFrom("users")
      .select(COLUMNS)
      .where("id", "in", [p, p + 1, p + 2])
      .orderBy("id"),
  (db: Kdb, p: number) =>
    db
      .selectFrom("users")
      .selectAll()
      .where((eb: ExpressionBuilder<KyselyDb, "users">) =>
        eb.or([eb("name", "like", "n1%"), eb.and([eb("name", "is", null), eb("score", ">", p)])]),
      )
      .orderBy("id"),
];

async function drizzleOp(i: ReturnType<typeof open>, env: Env, op: Op) {
  const name = nameOf(op);
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
  await around(env, op);
  // Read after the drain caught up: the object drains now, this isolate applies it.
  return { caughtUp: await i.cache.catchUp() };
}

async function sqlOp(i: ReturnType<typeof open>, env: Env, op: Op) {
  const name = nameOf(op);
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
  await around(env, op);
  return { caughtUp: await i.sql.catchUp() };
}

async function kyselyOp(i: ReturnType<typeof open>, env: Env, op: Op) {
  const name = nameOf(op);
  if (op.kind === "read") {
    const read = KYSELY_READS[op.which % KYSELY_READS.length]!;
    const cached = await read(i.kysely, op.id).execute();
    const fresh = await read(i.freshKysely, op.id).execute();
    return { cached, fresh };
  }
  if (op.kind === "write") {
    if (op.which === 0) {
      await i.kysely
        .updateTable("users")
        .set({ name, score: op.value })
        .where("id", "=", op.id)
        .execute();
    } else if (op.which === 1) {
      await i.kysely
        .insertInto("users")
        .values({ id: op.id, name, score: op.value })
        .onConflict((oc) => oc.column("id").doUpdateSet({ name, score: op.value }))
        .execute();
    } else await i.kysely.deleteFrom("users").where("id", "=", op.id).execute();
    return {};
  }
  await around(env, op);
  return { caughtUp: await i.dialect.cache.catchUp() };
}

/**
 * The counts of an update of rows 1 and 2 as each reports it: through Drizzle (`run()`'s
 * meta), edgecache/sql (`rowsAffected`), Kysely (`numUpdatedRows`) and the binding itself;
 * and Kysely's insertId of an insert (row 20, deleted again).
 */
async function countsOp(i: ReturnType<typeof open>, env: Env, _op: Op) {
  const drizzleRun = await i.db
    .update(users)
    .set({ name: "c" })
    .where(inArray(users.id, [1, 2]))
    .run();
  const sqlRun = await i.sql.execute("update users set name = 'c' where id in (1, 2)");
  const kyselyRun = await i.kysely
    .updateTable("users")
    .set({ name: "c" })
    .where("id", "in", [1, 2])
    .executeTakeFirstOrThrow();
  const inserted = await i.kysely
    .insertInto("users")
    .values({ id: 20, name: "c", score: 0 })
    .executeTakeFirstOrThrow();
  await i.kysely.deleteFrom("users").where("id", "=", 20).execute();
  const binding = await env.DB.prepare("update users set name = 'c' where id in (1, 2)").run();
  return {
    drizzle: drizzleRun.meta.changes,
    sql: sqlRun.rowsAffected,
    kysely: Number(kyselyRun.numUpdatedRows),
    kyselyInsertId: Number(inserted.insertId),
    binding: binding.meta.changes,
  };
}

export default followingEntry(
  open,
  { "/drizzle": drizzleOp, "/sql": sqlOp, "/kysely": kyselyOp, "/counts": countsOp },
  (i) => ({ drizzle: i.cache, sql: i.sql, kysely: i.dialect.cache }),
);
