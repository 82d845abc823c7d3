import { describe, expect, it } from "vitest";
import { withFixture } from "./fixture.ts";

/** A row of the suite's table, as the adapter's reads give it back (made plain). */
export interface Item {
  id: number;
  name: string;
}

/**
 * An ORM's reads and writes through edgecache, under the ORM-adapter suite, over a table
 * `items (id integer primary key, name text not null unique)` holding (1, 'a'), (2, 'b'),
 * (3, 'c'), with change capture installed and followed.
 */
export interface OrmAdapterFixture {
  /** The adapter's cache: its counters and its catch-up on captured writes. */
  cache: { getStats(): { hits: number; misses: number }; catchUp(): Promise<boolean> };
  /** Every item by id, read through the ORM with the cache. */
  list(): Promise<Item[]>;
  /** One item by id (undefined where there is none), read through the ORM with the cache. */
  get(id: number): Promise<Item | undefined>;
  /** Writes through the ORM with the cache. */
  insert(id: number, name: string): Promise<void>;
  rename(id: number, name: string): Promise<void>;
  remove(id: number): Promise<void>;
  /** A transaction through the ORM that inserts the item, then throws: rolled back. */
  rolledBack(id: number, name: string): Promise<void>;
  /** A write around the ORM and the cache, on a connection of its own, committed. */
  around(op: "insert" | "update" | "delete", id: number, name?: string): Promise<void>;
  /** Releases the ORM, the cache and the database. */
  close(): Promise<void>;
}

/**
 * The ORM-adapter conformance suite: an ORM's cache (Drizzle's, Prisma's, Kysely's, the
 * raw SQL entry, or one of your own over the statement cache) answers every read as the
 * database would, whoever wrote: a repeated read is a hit; a write through the ORM shows
 * in the next read, and leaves an item it did not touch cached; a write around it shows
 * once the cache has caught up on capture; a failed write and a rolled-back transaction
 * change nothing.
 *
 * `make` is called by each test for a fresh table.
 *
 * @example
 * import { ormAdapterConformance } from "edgecache/testing";
 * ormAdapterConformance("my ORM", async () => {
 *   const db = await freshItems(); // items seeded, capture installed
 *   const orm = myOrm(db, myOrmCache({ client: db.client }));
 *   return {
 *     cache: orm.cache,
 *     list: () => orm.items.findMany({ orderBy: "id" }),
 *     // ...get, insert, rename, remove, rolledBack, around
 *     close: () => db.drop(),
 *   };
 * });
 */
export function ormAdapterConformance(name: string, make: () => Promise<OrmAdapterFixture>): void {
  const using = (test: (f: OrmAdapterFixture) => Promise<void>) => withFixture(make, test);
  const SEEDED: Item[] = [
    { id: 1, name: "a" },
    { id: 2, name: "b" },
    { id: 3, name: "c" },
  ];
  /** Whether `read` is answered from the cache (a hit counted, no miss). */
  const hits = async (f: OrmAdapterFixture, read: () => Promise<unknown>) => {
    const before = f.cache.getStats();
    await read();
    const after = f.cache.getStats();
    return after.hits > before.hits && after.misses === before.misses;
  };

  describe(`ORM adapter conformance: ${name}`, { timeout: 30_000 }, () => {
    it("answers as the database does, and a repeated read from the cache", () =>
      using(async (f) => {
        expect(await f.list()).toEqual(SEEDED);
        expect(await f.get(2)).toEqual({ id: 2, name: "b" });
        expect(await f.get(9)).toBeUndefined();
        expect(await hits(f, () => f.list())).toBe(true);
        expect(await hits(f, () => f.get(2))).toBe(true);
      }));

    it("shows a write through the ORM in the next read, and keeps an item it did not touch", () =>
      using(async (f) => {
        await f.list();
        await f.get(1);
        await f.get(2);
        await f.rename(2, "bee");
        expect(await f.get(2)).toEqual({ id: 2, name: "bee" });
        expect(await f.list()).toEqual([SEEDED[0], { id: 2, name: "bee" }, SEEDED[2]]);
        expect(await hits(f, () => f.get(1))).toBe(true);
        await f.insert(4, "d");
        await f.remove(1);
        expect(await f.list()).toEqual([{ id: 2, name: "bee" }, SEEDED[2], { id: 4, name: "d" }]);
        expect(await f.get(1)).toBeUndefined();
      }));

    it("shows a write around it once it has caught up on capture, and keeps an item it did not touch", () =>
      using(async (f) => {
        await f.list();
        await f.get(1);
        await f.get(3);
        await f.around("update", 3, "sea");
        await f.around("insert", 5, "e");
        expect(await f.cache.catchUp()).toBe(true);
        expect(await f.get(3)).toEqual({ id: 3, name: "sea" });
        expect(await f.list()).toEqual([
          SEEDED[0],
          SEEDED[1],
          { id: 3, name: "sea" },
          { id: 5, name: "e" },
        ]);
        expect(await hits(f, () => f.get(1))).toBe(true);
        await f.around("delete", 1);
        expect(await f.cache.catchUp()).toBe(true);
        expect(await f.get(1)).toBeUndefined();
      }));

    it("changes nothing on a failed write or a rolled-back transaction", () =>
      using(async (f) => {
        await f.list();
        // A unique violation: the name is taken.
        await expect(f.insert(6, "a")).rejects.toBeDefined();
        await expect(f.rolledBack(7, "g")).rejects.toBeDefined();
        expect(await f.list()).toEqual(SEEDED);
        expect(await f.get(7)).toBeUndefined();
      }));
  });
}
