import { asc, eq, gt } from "drizzle-orm";
import { integer, pgSchema, text } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { WriteEvent } from "../../src/core/deps/planner.ts";
import type { EdgecacheDrizzleCache } from "../../src/drizzle/index.ts";
import { requirePostgres } from "../helpers/services.ts";
import { type FollowingPostgres, followingPostgres } from "./postgres-following.ts";

/**
 * One row's changes reach the log in commit order on PostgreSQL, carried by NOTIFY or not.
 * Found in review: when the earlier change was not carried (here the 150th change of its
 * transaction; CARRIED_PER_TRANSACTION is 100) and the later one was, the later one was
 * applied at once from its notification and the earlier one at the next read of the change
 * table, both as ordered records. Now carried changes wait for a read once a notification
 * says "read" (see postgresCaptureFeed).
 */

const pg = await requirePostgres();
const schemaName = `ec_reorder_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
const t = pgSchema(schemaName).table("t", {
  id: integer("id").primaryKey(),
  a: integer("a").notNull(),
  pad: text("pad").notNull(),
});
const R = 150;

pg.describe("postgres.js capture: one row's changes applied in commit order", () => {
  let h: FollowingPostgres;
  let admin: postgres.Sql;
  let other: postgres.Sql;
  let cache: EdgecacheDrizzleCache;
  let db: ReturnType<typeof drizzle>;
  const applied: WriteEvent[][] = [];
  /** Holds the apply of T1's change of R this long (widens the window, keeps the order). */
  let holdT1 = 0;

  /**
   * T1 changes 149 other rows, then R to `first` (its 150th change: not carried); T2 sets R
   * to `second`. T1 takes R's lock first, so T2 waits for it and commits after it.
   */
  async function bothChangeR(first: number, second: number): Promise<void> {
    let locked!: () => void;
    const holding = new Promise<void>((r) => {
      locked = r;
    });
    const t1 = admin.begin(async (tx) => {
      await tx.unsafe(`select 1 from ${schemaName}.t where id = ${R} for update`);
      locked();
      await tx.unsafe(`update ${schemaName}.t set pad = pad where id <> ${R}`);
      await tx.unsafe(`update ${schemaName}.t set a = ${first} where id = ${R}`);
      await new Promise((r) => setTimeout(r, 30)); // T2 queues on R's lock meanwhile
    });
    await holding;
    const t2 = other.unsafe(`update ${schemaName}.t set a = ${second} where id = ${R}`);
    await Promise.all([t1, t2]);
  }

  beforeAll(async () => {
    other = postgres(pg.url, { max: 2, onnotice: () => {} });
    h = await followingPostgres(
      pg.url,
      schemaName,
      (
        schema,
      ) => `create table ${schema}.t (id integer primary key, a integer not null, pad text not null);
        insert into ${schema}.t select g, g, 'x' from generate_series(1, ${R}) g`,
      (d) => d.select().from(t).where(eq(t.id, 0)),
      (cache) => {
        const applyWrite = cache.engine.applyWrite.bind(cache.engine);
        cache.engine.applyWrite = ((
          written: WriteEvent | WriteEvent[],
          options?: Parameters<typeof applyWrite>[1],
        ) => {
          const events = Array.isArray(written) ? written : [written];
          const t1 = events.some((e) => e.new?.id === R && e.new?.a === 0);
          if (t1 && holdT1 > 0) {
            return new Promise((r) => setTimeout(r, holdT1)).then(() => {
              applied.push(events);
              return applyWrite(written, options);
            }) as ReturnType<typeof applyWrite>;
          }
          applied.push(events);
          return applyWrite(written, options);
        }) as typeof cache.engine.applyWrite;
      },
    );
    ({ admin, cache, db } = h);
  });
  afterAll(async () => {
    await h?.close();
    await other?.end();
  });

  it("a later change of row R is never applied before an earlier one", async () => {
    let reversed = 0;
    const trials = 30;
    for (let k = 1; k <= trials; k++) {
      applied.length = 0;
      // T1: 149 other rows, then R (its change is the 150th: not carried).
      await bothChangeR(1000 + k, -k);
      expect(await cache.catchUp()).toBe(true);
      const order = applied
        .flat()
        .filter((e) => e.new?.id === R && e.op === "update")
        .map((e) => e.new!.a);
      // Under load T2 may take R's lock first: the value R ends with names the last commit.
      const [row] = await admin.unsafe(`select a from ${schemaName}.t where id = ${R}`);
      const [first, last] = row!.a === -k ? [1000 + k, -k] : [-k, 1000 + k];
      if (order.indexOf(last) >= 0 && order.indexOf(last) < order.indexOf(first)) reversed++;
    }
    expect(reversed).toBe(0);
  }, 60_000);

  it("between the records, an exact page shows only rows the table showed", async () => {
    await admin.unsafe(`update ${schemaName}.t set a = id`);
    expect(await cache.catchUp()).toBe(true);
    await new Promise((r) => setTimeout(r, 100)); // its rows deleted: loads are exact again
    const page = (d: ReturnType<typeof drizzle>, offset: number) =>
      d
        .select()
        .from(t)
        .where(gt(t.id, -1000))
        .orderBy(asc(t.a), asc(t.id))
        .limit(2)
        .offset(offset);
    const ids = (rows: { id: number }[]) => rows.map((r) => r.id).join(",");
    for (const o of [2, 4]) await page(db, o); // cached, exact (page 1 is not)
    await new Promise((r) => setTimeout(r, 50));
    applied.length = 0;
    holdT1 = 400;
    await bothChangeR(0, R);
    // Both committed: page 2 is 3,4 in the database (before T1, and after T2).
    const truth = ids(await page(drizzle(admin), 2));
    await new Promise((r) => setTimeout(r, 100));
    const between = ids(await page(db, 2));
    holdT1 = 0;
    await cache.catchUp();
    await new Promise((r) => setTimeout(r, 450));
    const afterBoth = ids(await page(db, 2));
    expect(between).toBe(truth);
    expect(afterBoth).toBe(truth);
  }, 30_000);

  it("a row changed and changed back: a lookup reloaded between the records is not patched to the value in between", async () => {
    let stale = 0;
    const trials = 40;
    for (let k = 1; k <= trials; k++) {
      await admin.unsafe(`update ${schemaName}.t set a = ${R} where id = ${R}`);
      expect(await cache.catchUp()).toBe(true);
      await new Promise((r) => setTimeout(r, 50));
      // A hot lookup of R (hot keys the write removes are loaded again at once).
      const lookup = (d: ReturnType<typeof drizzle>) =>
        d
          .select()
          .from(t)
          .where(eq(t.id, R))
          .limit(1 + k);
      for (let i = 0; i < 3; i++) await lookup(db);
      // T1 sets R to 1000+k (the 150th change of T1: not carried); T2 sets it back.
      await bothChangeR(1000 + k, R);
      expect(await cache.catchUp()).toBe(true);
      await new Promise((r) => setTimeout(r, 50));
      const cached = (await lookup(db))[0]!.a;
      const fresh = (await lookup(drizzle(admin)))[0]!.a;
      if (cached !== fresh) stale++;
    }
    expect(stale).toBe(0);
  }, 60_000);

  it("a load while a change waits in the table, not applied yet, is not exact: its page is not shifted twice", async () => {
    await admin.unsafe(`update ${schemaName}.t set a = id`);
    expect(await cache.catchUp()).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    const page = (d: ReturnType<typeof drizzle>, offset: number) =>
      d
        .select()
        .from(t)
        .where(gt(t.id, -2000))
        .orderBy(asc(t.a), asc(t.id))
        .limit(2)
        .offset(offset);
    for (const o of [0, 2]) await page(db, o); // exact neighbours
    await new Promise((r) => setTimeout(r, 50));
    holdT1 = 400;
    // R moves to the front; its record is held back, so it waits in the table meanwhile.
    await admin.unsafe(`update ${schemaName}.t set a = 0 where id = ${R}`);
    await new Promise((r) => setTimeout(r, 50));
    // Loaded now, the page shows R's move already: applying its record must not shift it.
    expect(await page(db, 4)).toEqual(await page(drizzle(admin), 4));
    holdT1 = 0;
    expect(await cache.catchUp()).toBe(true);
    await new Promise((r) => setTimeout(r, 450));
    expect(await page(db, 4)).toEqual(await page(drizzle(admin), 4));
  }, 30_000);
});
