import { describe, expect, it } from "vitest";
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { sqlDriverConformance } from "../../src/testing/index.ts";
import { plainSqliteDriver } from "./outside-driver.ts";

// A driver written outside edgecache (outside-driver.ts) under the driver contract's suite,
// and under the raw SQL entry: statements cached on it, writes through it invalidating the
// tables they name (no change capture behind a driver of your own).

sqlDriverConformance(
  "a driver written outside edgecache (better-sqlite3, memory)",
  async () => {
    const driver = plainSqliteDriver(":memory:");
    return { driver, close: () => driver.close() };
  },
  { kind: "plain-sqlite", dialect: "sqlite" },
);

describe("the raw SQL entry on a driver written outside edgecache", () => {
  it("caches a select, and a write through it invalidates what it changed", async () => {
    const driver = plainSqliteDriver(":memory:");
    await driver.run("create table users (id integer primary key, name text)", []);
    await driver.run("insert into users values (1, 'Ann'), (2, 'Bo')", []);
    const sql = sqlCache({ client: driver, tiers: [memoryStore()] });
    try {
      const read = () => sql.query("select id, name from users where id = ?", [1]);
      expect(await read()).toEqual([{ id: 1, name: "Ann" }]);
      expect(await read()).toEqual([{ id: 1, name: "Ann" }]);
      expect(sql.getStats().hits).toBe(1);
      await sql.execute("update users set name = ? where id = ?", ["Annie", 1]);
      expect(await read()).toEqual([{ id: 1, name: "Annie" }]);
      expect(sql.getStats().writes).toBe("tables");
    } finally {
      await sql.close();
      await driver.close();
    }
  });
});
