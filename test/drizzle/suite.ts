import { eq } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createCache } from "../../src/core/cache/index.ts";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { chaosStore, fakeClock } from "../helpers/chaos-store.ts";
import { UpstashStyleCache } from "../helpers/upstash-style-cache.ts";
import type { AnyDb, Harness } from "./drivers.ts";

/**
 * What a Drizzle user relies on, run through one driver against its real database: the
 * adapter's contract, and each fault of Drizzle's own cache (shown on an Upstash-style
 * cache, then shown fixed on edgecache's).
 */
export function drizzleSuite(make: () => Harness): void {
  let h: Harness;
  const cached = (strategy: "all" | "explicit" = "all") => {
    const cache = drizzleCache({ tiers: [memoryStore()], strategy });
    return { cache, db: withTransactions(h.db(cache)) };
  };
  const user1 = (db: AnyDb) => db.select().from(h.users).where(eq(h.users.id, 1));
  const nameOf = async (db: AnyDb) => (await user1(db))[0]?.name;
  const rename = (db: AnyDb, name: string) =>
    db.update(h.users).set({ name }).where(eq(h.users.id, 1));

  beforeAll(async () => {
    h = make();
    await h.reset();
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(async () => {
    await h.reset();
  });

  describe("the adapter", () => {
    it('strategy "all" caches every select and returns what the driver returned', async () => {
      const plain = await user1(h.db());
      const { cache, db } = cached("all");
      const first = await user1(db);
      const second = await user1(db);
      expect(first).toStrictEqual(plain);
      expect(second).toStrictEqual(plain);
      expect(cache.getStats()).toMatchObject({ hits: 1, misses: 1, stored: 1, keys: 1 });
      // Its lookups under its query shape: the share of the reads it carries.
      expect(cache.getStats().shapes).toEqual([
        expect.objectContaining({ granularity: "row", stored: 1, hits: 1, misses: 1 }),
      ]);
      await db.select().from(h.users).$withCache(false);
      expect(cache.getStats().keys).toBe(1); // $withCache(false) opts out
    });

    it('strategy "explicit" caches only $withCache queries', async () => {
      const { cache, db } = cached("explicit");
      await user1(db);
      await user1(db);
      expect(cache.getStats()).toMatchObject({ hits: 0, misses: 0, keys: 0 });
      await user1(db).$withCache();
      const rows = await user1(db).$withCache();
      expect(rows[0].name).toBe("Ann");
      expect(cache.getStats()).toMatchObject({ hits: 1, misses: 1, keys: 1 });
    });

    it("a mutation invalidates every cached query that read its table, and only those", async () => {
      const { cache, db } = cached();
      const joined = () =>
        db.select().from(h.users).innerJoin(h.posts, eq(h.posts.userId, h.users.id));
      await user1(db);
      await joined();
      await db.select().from(h.posts);
      expect(cache.getStats().tables).toMatchObject({ [usersName(h)]: 2, [postsName(h)]: 2 });
      await db.insert(h.posts).values({ id: 2, userId: 1, title: "second" });
      expect((await joined()).length).toBe(2);
      expect((await db.select().from(h.posts)).length).toBe(2);
      await rename(db, "Bea");
      expect(await nameOf(db)).toBe("Bea");
      await db.delete(h.posts).where(eq(h.posts.id, 2));
      expect((await db.select().from(h.posts)).length).toBe(1);
      const before = cache.getStats().hits;
      await user1(db); // users untouched since its last load: still cached
      expect(cache.getStats().hits).toBe(before + 1);
    });

    it("invalidates by Table object, by name (schema-qualified or not) and by tag", async () => {
      const { cache, db } = cached();
      const invalidations = [
        { tables: [h.users] },
        { tables: h.users },
        { tables: [usersName(h)] },
        { tags: "feed" },
      ];
      for (const invalidation of invalidations) {
        await user1(db);
        await db.select().from(h.posts).$withCache({ tag: "feed" });
        await h.exec(
          `update ${usersName(h)} set name = 'direct'; update ${postsName(h)} set title = 'direct'`,
        );
        await db.$cache.invalidate(invalidation);
        const tagged = await db.select().from(h.posts).$withCache({ tag: "feed" });
        if (invalidation.tags) expect(tagged[0].title).toBe("direct");
        else expect(await nameOf(db)).toBe("direct");
        await h.reset();
        await cache.clearAll();
      }
      expect(cache.getStats().keys).toBe(0);
    });

    it("$withCache({ config }) sets the TTL: ex, px, exat, pxat and keepTtl", async () => {
      const clock = fakeClock(Math.floor(Date.now() / 1000) * 1000);
      const engine = createCache({ tiers: [memoryStore({ now: clock.now })], now: clock.now });
      const cache = drizzleCache({ cache: engine, strategy: "explicit", now: clock.now });
      const db = h.db(cache);
      const q = (config: object) => user1(db).$withCache({ config });
      const cases: [() => object, number][] = [
        [() => ({ ex: 2 }), 2000],
        [() => ({ px: 1500 }), 1500],
        [() => ({ exat: clock.now() / 1000 + 3 }), 3000],
        [() => ({ pxat: clock.now() + 2500 }), 2500],
      ];
      for (const [config, life] of cases) {
        await cache.clearAll();
        const c = config();
        await q(c);
        clock.advance(life - 100);
        const hits = cache.getStats().hits;
        await q(c);
        expect(cache.getStats().hits, JSON.stringify(c)).toBe(hits + 1);
        clock.advance(200);
        await q(c);
        expect(cache.getStats().hits, JSON.stringify(c)).toBe(hits + 1);
      }
      // keepTtl keeps the expiry of the key's previous put (else the default, an hour)
      await cache.clearAll();
      await q({ px: 1000 });
      await db.$cache.invalidate({ tables: [h.users] });
      await q({ keepTtl: true });
      clock.advance(1100);
      const hits = cache.getStats().hits;
      await q({ keepTtl: true });
      expect(cache.getStats().hits).toBe(hits);
    });

    it("a failing tier never fails a query: counted, logged once per kind", async () => {
      const chaos = chaosStore(memoryStore());
      const lines: string[] = [];
      const logger = { warn: (m: string) => lines.push(m) };
      const engine = createCache({ tiers: [chaos.store], logger });
      const cache = drizzleCache({ cache: engine, strategy: "all", logger });
      const db = withTransactions(h.db(cache));
      chaos.fail("get", "set", "delete");
      for (let i = 0; i < 5; i++) expect(await nameOf(db)).toBe("Ann");
      await rename(db, "Bea");
      expect(await nameOf(db)).toBe("Bea");
      expect(engine.stats().tiers[0]!.errors).toBeGreaterThanOrEqual(10);
      const kinds = lines.map((l) => l.replace(/ \(and \d+ more.*\)/, ""));
      expect(new Set(kinds).size).toBe(kinds.length); // once per kind within the interval
      expect(cache.getStats().tierErrors).toBeGreaterThanOrEqual(10);
      chaos.heal();
      await rename(db, "Cy"); // a delete that succeeds clears what the failed ones left
      await nameOf(db);
      expect(await nameOf(db)).toBe("Cy");
      expect(cache.getStats().hits).toBe(1);
    });
  });

  describe("Drizzle's faults, fixed", () => {
    it("a mutation inside a transaction invalidates at commit, not before", async () => {
      // Upstash-style: the update's invalidation runs at once; a read meanwhile caches the
      // committed old row, and nothing invalidates it when the transaction commits.
      // On one connection (h.oneConnection) plain Drizzle may not open a transaction, and a
      // read on db inside one waits for it: the Upstash-style half and that read are left out.
      for (const ours of h.oneConnection ? [true] : [false, true]) {
        const db = ours ? cached().db : h.db(new UpstashStyleCache({ values: "exact" }));
        await h.reset();
        await db.transaction(async (tx: AnyDb) => {
          await rename(tx, "Bea");
          if (!h.oneConnection) expect(await nameOf(db)).toBe("Ann"); // outside: not committed yet
        });
        expect(await nameOf(db), ours ? "edgecache" : "upstash-style").toBe(ours ? "Bea" : "Ann");
      }
    });

    it("a rolled-back transaction invalidates nothing", async () => {
      const upstash = new UpstashStyleCache({ values: "exact" });
      const { cache, db: ours } = cached();
      for (const db of h.oneConnection ? [ours] : [h.db(upstash), ours]) {
        expect(await nameOf(db)).toBe("Ann");
        await db
          .transaction(async (tx: AnyDb) => {
            await rename(tx, "Bea");
            tx.rollback();
          })
          .catch(() => {});
        expect(await nameOf(db)).toBe("Ann");
      }
      if (!h.oneConnection) expect(upstash.size).toBe(1); // dropped by the rolled-back update, loaded again
      expect(cache.getStats()).toMatchObject({ misses: 1, hits: 1 }); // survived the rollback
    });

    it("reads inside a transaction are neither served from the cache nor stored", async () => {
      // Upstash-style: the transaction's own read of its uncommitted row is cached and
      // outlives the rollback, so everyone reads a value that never existed.
      for (const ours of h.oneConnection ? [true] : [false, true]) {
        const db = ours ? cached().db : h.db(new UpstashStyleCache({ values: "exact" }));
        await h.reset();
        expect(await nameOf(db)).toBe("Ann");
        await db
          .transaction(async (tx: AnyDb) => {
            await rename(tx, "Uncommitted");
            expect(await nameOf(tx)).toBe("Uncommitted");
            await tx.transaction(async (inner: AnyDb) => {
              expect(await nameOf(inner)).toBe("Uncommitted");
            });
            tx.rollback();
          })
          .catch(() => {});
        expect(await nameOf(db), ours ? "edgecache" : "upstash-style").toBe(
          ours ? "Ann" : "Uncommitted",
        );
      }
    });

    it("values come back exactly as the driver returned them (dates, bigints, rows)", async () => {
      const plain = await h.db().select().from(h.users);
      const { cache, db } = cached();
      await db.select().from(h.users);
      const hit = await db.select().from(h.users);
      expect(cache.getStats().hits).toBe(1);
      expect(hit).toStrictEqual(plain);
      expect(hit[0].at).toBeInstanceOf(Date);
      expect(hit[0].at.getTime()).toBe(plain[0].at.getTime());
    });
  });
}

export function usersName(h: Harness): string {
  const schema = h.users[Symbol.for("drizzle:Schema")];
  return schema ? `${schema}.users` : "users";
}

export function postsName(h: Harness): string {
  const schema = h.posts[Symbol.for("drizzle:Schema")];
  return schema ? `${schema}.posts` : "posts";
}
