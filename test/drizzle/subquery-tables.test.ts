import { asc, eq, inArray, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { requirePostgres } from "../helpers/services.ts";
import {
  type AnyDb,
  type Harness,
  libsqlHarness,
  nodePgHarness,
  postgresJsHarness,
} from "./drivers.ts";

const pg = await requirePostgres();

/**
 * Drizzle names a select's FROM and joined tables only. A table read in a subquery or a
 * `sql` fragment is found by the parser: a write through Drizzle to it must drop the select
 * (without change capture, where writes go by table), and a select whose SQL the parser
 * cannot read is not cached, since it may read a table nobody named.
 */
function suite(make: () => Harness): void {
  let h: Harness;
  let plain: AnyDb;
  beforeAll(async () => {
    h = make();
    await h.reset();
    plain = h.db();
  });
  afterAll(async () => {
    await h.close();
  });

  const open = () => {
    const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
    return { cache, db: withTransactions(h.db(cache), { capture: false }) };
  };
  /** Users with their post counts: posts only in a correlated subquery. */
  const counts = (db: AnyDb) =>
    db
      .select({
        id: h.users.id,
        posts:
          sql<number>`(select count(*) from ${h.posts} p where p.user_id = ${h.users.id})`.mapWith(
            Number,
          ),
      })
      .from(h.users)
      .orderBy(asc(h.users.id));
  /** Users who wrote a post: posts only in an IN subquery. */
  const writers = (db: AnyDb) =>
    db
      .select({ id: h.users.id })
      .from(h.users)
      .where(inArray(h.users.id, db.select({ id: h.posts.userId }).from(h.posts)))
      .orderBy(asc(h.users.id));

  it("a write through Drizzle to a table read only in a subquery drops the select", async () => {
    const { cache, db } = open();
    for (const read of [counts, writers]) {
      expect(await read(db)).toEqual(await read(plain));
      expect(await read(db)).toEqual(await read(plain));
    }
    const hits = cache.getStats().hits;
    expect(hits).toBe(2);
    await db.insert(h.posts).values({ id: 50, userId: 1, title: "second" });
    await db.insert(h.users).values({ id: 60, name: "Eve" });
    await db.insert(h.posts).values({ id: 51, userId: 60, title: "first of Eve" });
    for (const read of [counts, writers]) expect(await read(db)).toEqual(await read(plain));
    await db.delete(h.posts).where(eq(h.posts.id, 51));
    for (const read of [counts, writers]) expect(await read(db)).toEqual(await read(plain));
    await db.delete(h.posts).where(inArray(h.posts.id, [50]));
    await db.delete(h.users).where(eq(h.users.id, 60));
    await cache.close();
  });

  it("a select whose SQL the parser cannot read is not cached", async () => {
    const { cache, db } = open();
    // Valid SQL the parser does not read (IS NOT DISTINCT FROM), with a subquery in it.
    const odd = (d: AnyDb) =>
      d
        .select({
          id: h.users.id,
          one: sql<boolean>`(select count(*) from ${h.posts}) is not distinct from 1`.mapWith(
            Boolean,
          ),
        })
        .from(h.users)
        .where(eq(h.users.id, 1));
    expect(await odd(db)).toEqual(await odd(plain));
    expect(await odd(db)).toEqual(await odd(plain));
    const stats = cache.getStats();
    expect(stats.stored).toBe(0);
    expect(stats.uncacheable).toBeGreaterThan(0);
    await cache.close();
  });
}

describe("tables read in subqueries: libSQL", () => suite(() => libsqlHarness()));
pg.describe("tables read in subqueries: postgres-js", () => suite(() => postgresJsHarness(pg.url)));
pg.describe("tables read in subqueries: node-postgres", () => suite(() => nodePgHarness(pg.url)));
