import { asc, desc, eq } from "drizzle-orm";
import { date, integer, interval, pgSchema, text, timestamp } from "drizzle-orm/pg-core";
import { afterAll, expect, it } from "vitest";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { requirePostgres } from "../helpers/services.ts";
import {
  type AnyDb,
  betterSqliteHarness,
  type Harness,
  libsqlHarness,
  nodePgHarness,
  postgresJsHarness,
} from "./drivers.ts";
import { usersName } from "./suite.ts";

// Hidden keys (issue 71 item 2), at their edges: what a review of the first version found.
// A select the adapter runs with its keys carried must hand Drizzle exactly what Drizzle's
// own statement would, whichever held result answers it, and the cache's own selects never
// read a transaction's rows.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const pg = await requirePostgres();
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
});

async function eventually(check: () => boolean): Promise<void> {
  const until = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > until) throw new Error("timeout");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A cache on `h` and Drizzle over it, returned once capture follows its writes. */
async function open(h: Harness) {
  const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all", reload: false });
  closers.push(() => cache.close());
  const db = withTransactions(h.db(cache));
  await db.select().from(h.users).where(eq(h.users.id, 0));
  await followed(cache);
  return { cache, db };
}

function followed(cache: { getStats(): { writes: string } }): Promise<void> {
  return eventually(() => cache.getStats().writes === "capture");
}

// A lookup that shows the base's key and the join link itself (so nothing is carried for it)
// is answered from a held list whose carried statement reads the same: it is cut to its own
// columns, not the list's.
for (const [label, make] of [
  ["libsql", () => libsqlHarness()],
  ["postgres.js", () => postgresJsHarness(pg.url)],
] as const) {
  it(`${label}: a lookup answered from a held list that carries hidden keys gets every column it asked for`, async () => {
    const h = make();
    closers.push(() => h.close());
    await h.reset();
    await h.installCapture();
    const plain = h.db();
    const { cache, db } = await open(h);
    const list = (d: AnyDb) =>
      d
        .select({ title: h.posts.title, name: h.users.name })
        .from(h.posts)
        .innerJoin(h.users, eq(h.users.id, h.posts.userId))
        .orderBy(desc(h.posts.id))
        .limit(5);
    const one = (d: AnyDb) =>
      d
        .select({
          title: h.posts.title,
          name: h.users.name,
          id: h.posts.id,
          userId: h.posts.userId,
        })
        .from(h.posts)
        .innerJoin(h.users, eq(h.users.id, h.posts.userId))
        .where(eq(h.posts.id, 1));
    expect(await list(db)).toEqual(await list(plain));
    const answered = cache.getStats().groupPatches;
    const got = await one(db);
    expect(got).toEqual(await one(plain));
    // On libSQL answered from the held list, which carries the columns this select shows
    // itself (PostgreSQL's statements name the schema: another rows source).
    if (label === "libsql") {
      expect(cache.getStats().groupPatches.answered).toBe(answered.answered + 1);
    }
  });
}

// node-postgres: Drizzle reads its rows with type parsers of its own (timestamps, dates and
// intervals as the server's text); the adapter's runner reads them so too.
it("node-postgres (Pool): a select run with hidden keys reads timestamps, dates and intervals as Drizzle does", async () => {
  const h = nodePgHarness(pg.url);
  closers.push(() => h.close());
  await h.reset();
  const schema = usersName(h).split(".")[0]!;
  await h.exec(
    `alter table ${schema}.users add column ts timestamp(6), add column iv interval, add column d date;
     update ${schema}.users set ts = '2024-01-02 03:04:05.123456', iv = '1 day 02:00:00', d = '2024-01-02' where id = 1`,
  );
  await h.installCapture();
  const users = pgSchema(schema).table("users", {
    id: integer("id").primaryKey(),
    name: text("name").notNull(),
    ts: timestamp("ts", { mode: "string", precision: 6 }),
    iv: interval("iv"),
    d: date("d", { mode: "string" }),
  });
  const plain = h.db();
  const { db } = await open(h);
  const q = (d: AnyDb) =>
    d
      .select({ title: h.posts.title, ts: users.ts, iv: users.iv, d: users.d })
      .from(h.posts)
      .innerJoin(users, eq(users.id, h.posts.userId))
      .orderBy(desc(h.posts.id))
      .limit(5);
  const expected = await q(plain);
  const got = await q(db);
  expect(got).toEqual(expected);
});

for (const firstInTx of [false, true]) {
  it(`better-sqlite3 through the proxy: a group patch never reads a transaction that rolls back (capture first followed inside a transaction: ${firstInTx})`, async () => {
    const h = betterSqliteHarness();
    await h.reset();
    await h.installCapture();
    const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all", reload: false });
    const db = withTransactions(h.db(cache));
    const _plain = h.db();
    await sleep(300);
    if (firstInTx) {
      await db.transaction(async (tx: AnyDb) => {
        await tx.update(h.users).set({ name: "Ann" }).where(eq(h.users.id, 1));
      });
    } else {
      await db.update(h.users).set({ name: "Ann" }).where(eq(h.users.id, 1));
    }
    await followed(cache);
    const q = (d: AnyDb) =>
      d
        .select({ id: h.posts.id, userId: h.posts.userId, name: h.users.name })
        .from(h.posts)
        .innerJoin(h.users, eq(h.users.id, h.posts.userId))
        .orderBy(asc(h.posts.id));
    await q(db);
    await q(db);
    await h.exec(`update users set name = 'Committed' where id = 1`);
    let release = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let started = () => {};
    const inTx = new Promise<void>((r) => {
      started = r;
    });
    const t = db
      .transaction(async (tx: AnyDb) => {
        await tx.update(h.users).set({ name: "Uncommitted" }).where(eq(h.users.id, 1));
        started();
        await gate;
        throw new Error("rollback");
      })
      .catch(() => {});
    await inTx;
    await sleep(500);
    release();
    await t;
    await cache.catchUp();
    await cache.engine.drain();
    const got = await q(db);
    await cache.close();
    await h.close();
    expect(got).toEqual([{ id: 1, userId: 1, name: "Committed" }]);
  });
}

it("libSQL: a list stored with autoInvalidate: false (its tags alone) answers no other lookup after a write", async () => {
  const h = libsqlHarness();
  closers.push(() => h.close());
  await h.reset();
  await h.installCapture();
  const { db } = await open(h);
  const base = (d: AnyDb) =>
    d
      .select({ title: h.posts.title, name: h.users.name })
      .from(h.posts)
      .innerJoin(h.users, eq(h.users.id, h.posts.userId));
  await base(db).orderBy(desc(h.posts.id)).limit(5).$withCache({ autoInvalidate: false });
  await db.update(h.posts).set({ title: "changed" }).where(eq(h.posts.id, 1));
  const got = await base(db).where(eq(h.posts.id, 1));
  expect(got).toEqual([{ title: "changed", name: "Ann" }]);
});

it("libSQL: run() of a select hands over the driver's result, and all() of it the rows", async () => {
  const h = libsqlHarness();
  closers.push(() => h.close());
  await h.reset();
  await h.installCapture();
  const { db } = await open(h);
  const q = (d: AnyDb) =>
    d
      .select({ title: h.posts.title, name: h.users.name })
      .from(h.posts)
      .innerJoin(h.users, eq(h.users.id, h.posts.userId))
      .orderBy(desc(h.posts.id))
      .limit(5);
  const plain = h.db();
  const want = await q(plain).run();
  const got = await q(db).run();
  // `all()` after `run()`: Drizzle hashes both to one key.
  const after = await q(db);
  expect(after).toEqual(await q(plain));
  expect(Array.isArray(got)).toBe(Array.isArray(want));
});
