import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { rowsOf } from "../../../src/sql/dialect.ts";
import { SyncSqliteDriver } from "../../../src/sql/sqlite/sync-driver.ts";

const dir = mkdtempSync(join(tmpdir(), "edgecache-sync-timeout-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("SQLite driver: the connection's busy_timeout around a write", () => {
  it("is 0 during the write and as before after it, also once the application's SQL set another (the application's connection)", async () => {
    const db = new Database(join(dir, "guest.db"));
    db.pragma("busy_timeout = 3000");
    const driver = new SyncSqliteDriver(db, { owned: false, busyTimeout: 100 });
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
      db.close();
    }
  });

  it("is put back as the application last set it, also when it set it after handing the connection over", async () => {
    const db = new Database(join(dir, "guest-later.db"));
    const driver = new SyncSqliteDriver(db, { owned: false, busyTimeout: 100 });
    const timeout = () => db.pragma("busy_timeout", { simple: true });
    try {
      db.pragma("busy_timeout = 2500");
      await driver.locked(() => {});
      expect(timeout()).toBe(2500);
      db.pragma("busy_timeout = 700");
      await driver.locked(() => {});
      expect(timeout()).toBe(700);
    } finally {
      await driver.close();
      db.close();
    }
  });

  it("is 0 on edgecache's own connection, unless the application's SQL set another, which a write puts back", async () => {
    const db = new Database(join(dir, "owned.db"));
    db.pragma("busy_timeout = 3000");
    const driver = new SyncSqliteDriver(db, { owned: true, busyTimeout: 100 });
    const timeout = () => db.pragma("busy_timeout", { simple: true });
    try {
      expect(timeout()).toBe(0);
      expect(await driver.locked(timeout)).toBe(0);
      expect(timeout()).toBe(0);
      await driver.run("PRAGMA busy_timeout = 1234", []);
      expect(await driver.locked(timeout)).toBe(0);
      expect(timeout()).toBe(1234);
    } finally {
      await driver.close();
    }
  });

  // With busy_timeout 0 a read that meets another connection's lock fails at once: on
  // edgecache's own connection it is tried again after a pause, as a write is, for
  // busyTimeout at most (rollback-journal mode, where a writer's lock keeps readers out).
  it.each([
    [80, "waits for the lock"],
    [400, "fails with SQLITE_BUSY once busyTimeout has passed"],
  ])("a read on edgecache's own connection, the lock held %i ms: %s", async (holdMs) => {
    const path = join(dir, `read-${holdMs}.db`);
    const setup = new Database(path);
    setup.pragma("journal_mode = DELETE");
    setup.exec("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1)");
    setup.close();
    const driver = new SyncSqliteDriver(new Database(path), { owned: true, busyTimeout: 200 });
    const other = new Database(path);
    try {
      other.exec("BEGIN EXCLUSIVE");
      const released = new Promise<void>((resolve) =>
        setTimeout(() => {
          other.exec("COMMIT");
          resolve();
        }, holdMs),
      );
      const read = driver.read(rowsOf({ sql: "SELECT id FROM t", params: [] }));
      if (holdMs < 200) await expect(read).resolves.toEqual([{ id: 1 }]);
      else await expect(read).rejects.toMatchObject({ code: "SQLITE_BUSY" });
      await released;
    } finally {
      await driver.close();
      other.close();
    }
  });
});
