import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { SyncSqliteDriver } from "../../../src/sql/sqlite/sync-driver.ts";

const dir = mkdtempSync(join(tmpdir(), "edgecache-sync-timeout-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("SQLite driver: the connection's busy_timeout around a write", () => {
  it.each([true, false])(
    "is 0 during the write and as before after it, also once the application's SQL set another (owned %s)",
    async (owned) => {
      const db = new Database(join(dir, `owned-${owned}.db`));
      db.pragma("busy_timeout = 3000");
      const driver = new SyncSqliteDriver(db, { owned, busyTimeout: 100 });
      const timeout = () => db.pragma("busy_timeout", { simple: true });
      try {
        // Waits between tries, not inside SQLite: that would block the event loop.
        expect(await driver.locked(timeout)).toBe(0);
        expect(timeout()).toBe(3000);
        await driver.locked(() => {});
        expect(timeout()).toBe(3000);
        // The application's statements run as it runs them, and may change the setting.
        await driver.run("PRAGMA busy_timeout = 1234", []);
        expect(await driver.locked(timeout)).toBe(0);
        expect(timeout()).toBe(1234);
      } finally {
        await driver.close();
        if (db.open) db.close();
      }
    },
  );
});
