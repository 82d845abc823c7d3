import Database from "better-sqlite3";
import { drizzle } from "drizzle-orm/better-sqlite3";
import { expect, it } from "vitest";
import { EdgecacheError } from "../../src/core/errors.ts";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";

// drizzle-orm 0.45's better-sqlite3 driver drops the `cache` option (its queries run
// synchronously and never ask a cache): the adapter says so, and what to do instead, rather
// than that the database was not made with a cache.
it("refuses a drizzle-orm/better-sqlite3 database, saying to open the file with drizzle-orm/libsql or to use edgecache/sql", async () => {
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
    expect((thrown as Error).message).toMatch(/drizzle-orm\/libsql/);
    expect((thrown as Error).message).toMatch(/edgecache\/sql/);
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
