import Database from "better-sqlite3";
import { eq, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/better-sqlite3";
import { drizzle as drizzleProxy } from "drizzle-orm/sqlite-proxy";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EdgecacheError } from "../../src/core/errors.ts";
import { betterSqliteProxy } from "../../src/drizzle/better-sqlite3.ts";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { type AnyDb, betterSqliteHarness, type Harness } from "./drivers.ts";
import { drizzleSuite } from "./suite.ts";

// drizzle-orm 0.45's better-sqlite3 driver drops the `cache` option (its queries run
// synchronously and never ask a cache): the adapter says so, and what to do instead, rather
// than that the database was not made with a cache.
it("refuses a drizzle-orm/better-sqlite3 database, saying to give the Database to sqlite-proxy through betterSqliteProxy", async () => {
  const sqlite = new Database(":memory:");
  const cache = drizzleCache({ tiers: [memoryStore()] });
  try {
    const db = drizzle(sqlite, { cache });
    // The driver really did drop it: were that to change, this refusal would be wrong.
    expect((db as { $cache?: unknown }).$cache).not.toBe(cache);
    let thrown: unknown;
    try {
      withTransactions(db);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(EdgecacheError);
    expect((thrown as EdgecacheError).code).toBe("E_BAD_OPTION");
    expect((thrown as Error).message).toMatch(/drops the `cache` option/);
    expect((thrown as Error).message).toMatch(/betterSqliteProxy/);
    expect((thrown as Error).message).toMatch(/edgecache\/drizzle\/better-sqlite3/);
  } finally {
    await cache.close();
    sqlite.close();
  }
});

it("still refuses, as before, a database of another driver made without the cache", () => {
  expect(() => withTransactions({ $client: {}, session: {} })).toThrow(
    /expected a Drizzle database made with \{ cache: drizzleCache\(\.\.\.\) \}/,
  );
});

it("betterSqliteProxy refuses what is not a better-sqlite3 Database", () => {
  expect(() => betterSqliteProxy({} as Database.Database)).toThrow(/a better-sqlite3 Database/);
});

describe("drizzle on better-sqlite3 (sqlite-proxy, edgecache's proxy)", () => {
  drizzleSuite(() => betterSqliteHarness());
});

describe("drizzle on better-sqlite3: one connection, transactions to themselves", () => {
  let h: Harness;
  let cache: ReturnType<typeof drizzleCache>;
  let db: AnyDb;
  const names = async () =>
    (await db.select({ name: h.users.name }).from(h.users).orderBy(h.users.id)).map(
      (r: { name: string }) => r.name,
    );
  beforeAll(() => {
    h = betterSqliteHarness();
  });
  afterEach(async () => {
    await cache?.close();
  });
  afterAll(async () => {
    await h?.close();
  });

  it("a write from outside an open transaction waits for it, and is not rolled back with it", async () => {
    await h.reset();
    cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
    db = withTransactions(h.db(cache));
    expect(await names()).toEqual(["Ann"]);
    let inserted!: () => void;
    const insertedBo = new Promise<void>((resolve) => {
      inserted = resolve;
    });
    const rolledBack = db.transaction(async (tx: AnyDb) => {
      await tx.insert(h.users).values({ id: 2, name: "Bo" });
      inserted();
      await new Promise((r) => setTimeout(r, 100));
      expect((await tx.select().from(h.users)).map((r: { id: number }) => r.id)).toEqual([1, 2]);
      throw new Error("rolled back");
    });
    // Another request (this test's own context, not the transaction's) writes meanwhile.
    await insertedBo;
    const outside = db
      .insert(h.users)
      .values({ id: 3, name: "Cy" })
      .then(() => "done");
    await expect(rolledBack).rejects.toThrow("rolled back");
    expect(await outside).toBe("done");
    // Cy was written after the transaction, not inside it: the rollback left it, and the
    // cached select of the table was invalidated by Cy's insert.
    expect(await names()).toEqual(["Ann", "Cy"]);
  });

  it("a committed transaction invalidates what it changed, and hits before it are hits", async () => {
    await h.reset();
    cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
    db = withTransactions(h.db(cache));
    const one = () => db.select().from(h.users).where(eq(h.users.id, 1));
    await one();
    await one();
    expect(cache.getStats().hits).toBeGreaterThan(0);
    await db.transaction(async (tx: AnyDb) => {
      await tx.update(h.users).set({ name: "Eve" }).where(eq(h.users.id, 1));
    });
    expect((await one())[0].name).toBe("Eve");
  });

  it("a transaction outside withTransactions is refused: it would share the connection with every request", async () => {
    await h.reset();
    const database = new Database(":memory:");
    const proxy = betterSqliteProxy(database);
    const plain = drizzleProxy(proxy, proxy.batch, {});
    // Drizzle wraps a driver's error in its own ("Failed query: begin"), the cause ours.
    await expect(plain.transaction(async () => {})).rejects.toMatchObject({
      cause: { code: "E_BAD_OPTION", message: expect.stringMatching(/withTransactions/) },
    });
    database.close();
  });

  it("a statement from outside a transaction that outlasts busyTimeout fails with E_SOURCE_BUSY", async () => {
    const database = new Database(":memory:");
    database.exec("create table t (id integer primary key)");
    const proxy = betterSqliteProxy(database, { busyTimeout: 200 });
    const own = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
    const slow = withTransactions(drizzleProxy(proxy, proxy.batch, { cache: own }));
    let begun!: () => void;
    const open = new Promise<void>((resolve) => {
      begun = resolve;
    });
    const long = slow.transaction(async (tx: AnyDb) => {
      await tx.run(sql`insert into t values (1)`);
      begun();
      await new Promise((r) => setTimeout(r, 600));
    });
    await open;
    const started = Date.now();
    await expect(slow.run(sql`insert into t values (2)`)).rejects.toMatchObject({
      cause: { code: "E_SOURCE_BUSY", message: expect.stringMatching(/waited 200 ms/) },
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    await long;
    // The connection is free again once the transaction committed.
    await slow.run(sql`insert into t values (3)`);
    expect(database.prepare("select id from t").pluck().all()).toEqual([1, 3]);
    await own.close();
    database.close();
  });

  it("a batch is one transaction: a failed statement leaves none of it", async () => {
    await h.reset();
    cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
    db = withTransactions(h.db(cache));
    await expect(
      db.batch([
        db.insert(h.users).values({ id: 4, name: "Di" }),
        db.insert(h.users).values({ id: 1, name: "again" }),
      ]),
    ).rejects.toThrow();
    expect(await names()).toEqual(["Ann"]);
  });
});
