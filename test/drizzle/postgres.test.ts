import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { requirePostgres } from "../helpers/services.ts";
import { UpstashStyleCache } from "../helpers/upstash-style-cache.ts";
import { type AnyDb, type Harness, nodePgHarness, postgresJsHarness } from "./drivers.ts";
import { drizzleSuite, usersName } from "./suite.ts";

const pg = await requirePostgres();

/** Faults of Drizzle's cache that need PostgreSQL: a mutation in flight, schemas. */
function postgresFaults(make: () => Harness): void {
  let h: Harness;
  beforeAll(async () => {
    h = make();
    await h.reset();
  });
  afterAll(async () => {
    await h?.close();
  });
  const both = () => [
    { name: "upstash-style", db: h.db(new UpstashStyleCache({ values: "exact" })) as AnyDb },
    {
      name: "edgecache",
      db: withTransactions(h.db(drizzleCache({ tiers: [memoryStore()], strategy: "all" }))),
    },
  ];
  const nameOf = async (db: AnyDb) =>
    (await db.select().from(h.users).where(eq(h.users.id, 1)))[0]?.name;

  it("a select that runs while a mutation is in flight does not cache the old row", async () => {
    // Drizzle invalidates when the update starts (drizzle issue 5828): the update waits on a
    // row lock, a select meanwhile reads the committed old row and caches it, and the update
    // then commits with nothing left to invalidate the old row.
    const outcome: Record<string, string> = {};
    for (const { name, db } of both()) {
      await h.reset();
      expect(await nameOf(db)).toBe("Ann");
      const release = await h.lockUser!(1);
      const update = db.update(h.users).set({ name: "Bea" }).where(eq(h.users.id, 1)).execute();
      await h.waitForLockWaiter!();
      expect(await nameOf(db)).toBe("Ann"); // not committed yet
      await release();
      await update;
      outcome[name] = await nameOf(db);
    }
    expect(outcome).toEqual({ "upstash-style": "Ann", edgecache: "Bea" });
  });

  it("invalidating a Table object of a schema drops what automatic invalidation would", async () => {
    // Upstash-style names a Table by its bare name; Drizzle registers `schema.table`.
    const outcome: Record<string, string> = {};
    for (const { name, db } of both()) {
      await h.reset();
      await nameOf(db);
      await h.exec(`update ${usersName(h)} set name = 'direct'`);
      await db.$cache.invalidate({ tables: [h.users] });
      outcome[name] = await nameOf(db);
    }
    expect(outcome).toEqual({ "upstash-style": "Ann", edgecache: "direct" });
  });
}

pg.describe("drizzle on postgres-js (PostgreSQL)", () => {
  drizzleSuite(() => postgresJsHarness(pg.url));
  describe("Drizzle's faults that need PostgreSQL, fixed", () => {
    postgresFaults(() => postgresJsHarness(pg.url));
  });
});

pg.describe("drizzle on node-postgres (PostgreSQL)", () => {
  drizzleSuite(() => nodePgHarness(pg.url));
  describe("Drizzle's faults that need PostgreSQL, fixed", () => {
    postgresFaults(() => nodePgHarness(pg.url));
  });
});

pg.describe("drizzle on node-postgres with one pg.Client", () => {
  let h: Harness;
  beforeAll(async () => {
    h = nodePgHarness(pg.url, "client");
    await h.reset();
  });
  afterAll(async () => {
    await h?.close();
  });

  it("a transaction on the db's own session is scoped, and the session given back after", async () => {
    const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
    const db = withTransactions(h.db(cache));
    const nameOf = async (d: AnyDb) =>
      (await d.select().from(h.users).where(eq(h.users.id, 1)))[0]?.name;
    const rename = (d: AnyDb, name: string) =>
      d.update(h.users).set({ name }).where(eq(h.users.id, 1));
    expect(await nameOf(db)).toBe("Ann");
    await db
      .transaction(async (tx: AnyDb) => {
        await rename(tx, "Uncommitted");
        expect(await nameOf(tx)).toBe("Uncommitted");
        tx.rollback();
      })
      .catch(() => {});
    expect(await nameOf(db)).toBe("Ann");
    expect(cache.getStats()).toMatchObject({ hits: 1, misses: 1 }); // nothing of the transaction
    await db.transaction((tx: AnyDb) => rename(tx, "Bea"));
    expect(await nameOf(db)).toBe("Bea");
    expect(await nameOf(db)).toBe("Bea"); // cached again: the session's cache is back
    expect(cache.getStats()).toMatchObject({ hits: 2, misses: 2 });
  });
});
