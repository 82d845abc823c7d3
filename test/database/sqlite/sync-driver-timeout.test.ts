import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { rowsOf } from "../../../src/database/dialect.ts";
import { SyncSqliteDriver } from "../../../src/database/sqlite/sync-driver.ts";

const dir = mkdtempSync(join(tmpdir(), "edgecache-sync-timeout-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const opened: { db: Database.Database; driver?: SyncSqliteDriver }[] = [];
afterEach(async () => {
  for (const { db, driver } of opened.splice(0)) {
    await driver?.close();
    if (db.open) db.close();
  }
});

/** A connection to a file of its own, handed to the driver, and its busy_timeout now. */
function connection(name: string, options: { owned: boolean; busyTimeout?: number }) {
  const db = new Database(join(dir, `${name}.db`));
  const driver = new SyncSqliteDriver(db, { busyTimeout: 100, ...options });
  opened.push({ db, driver });
  return { db, driver, timeout: () => db.pragma("busy_timeout", { simple: true }) };
}

describe("SQLite driver: the connection's busy_timeout around a write", () => {
  it("is 0 during the write and as before after it, also once the application's SQL set another (the application's connection)", async () => {
    const { db, driver, timeout } = connection("guest", { owned: false });
    db.pragma("busy_timeout = 3000");
    // Waits between tries, not inside SQLite: that would block the event loop.
    expect(await driver.locked(timeout)).toBe(0);
    expect(timeout()).toBe(3000);
    await driver.locked(() => {});
    expect(timeout()).toBe(3000);
    // The application's statements run as it runs them, and may change the setting.
    await driver.run("PRAGMA busy_timeout = 1234", []);
    expect(await driver.locked(timeout)).toBe(0);
    expect(timeout()).toBe(1234);
  });

  it("is put back as the application last set it, also when it set it after handing the connection over", async () => {
    const { db, driver, timeout } = connection("guest-later", { owned: false });
    db.pragma("busy_timeout = 2500");
    await driver.locked(() => {});
    expect(timeout()).toBe(2500);
    db.pragma("busy_timeout = 700");
    await driver.locked(() => {});
    expect(timeout()).toBe(700);
  });

  it("is 0 on edgecache's own connection, unless the application's SQL set another, which a write puts back", async () => {
    const { driver, timeout } = connection("owned", { owned: true });
    expect(timeout()).toBe(0);
    expect(await driver.locked(timeout)).toBe(0);
    expect(timeout()).toBe(0);
    await driver.run("PRAGMA busy_timeout = 1234", []);
    expect(await driver.locked(timeout)).toBe(0);
    expect(timeout()).toBe(1234);
  });

  // With busy_timeout 0 a read that meets another connection's lock fails at once: on
  // edgecache's own connection it is tried again after a pause, as a write is, for
  // busyTimeout at most (rollback-journal mode, where a writer's lock keeps readers out).
  describe("a read on edgecache's own connection while another holds the lock", () => {
    function locked(name: string, busyTimeout: number) {
      const setup = new Database(join(dir, `${name}.db`));
      setup.pragma("journal_mode = DELETE");
      setup.exec("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1)");
      setup.close();
      const { driver } = connection(name, { owned: true, busyTimeout });
      const other = new Database(join(dir, `${name}.db`));
      opened.push({ db: other });
      other.exec("BEGIN EXCLUSIVE");
      const read = driver.read(rowsOf({ sql: "SELECT id FROM t", params: [] }));
      return { read, release: () => other.exec("COMMIT") };
    }

    it("waits for the lock, and reads once it is released", async () => {
      // Released by a timer: the read's tries must leave the event loop free to run it.
      const { read, release } = locked("read-waits", 10_000);
      setTimeout(release, 50);
      await expect(read).resolves.toEqual([{ id: 1 }]);
    });

    it("fails with SQLITE_BUSY once busyTimeout has passed", async () => {
      const { read, release } = locked("read-gives-up", 100);
      await expect(read).rejects.toMatchObject({ code: "SQLITE_BUSY" });
      release();
    });
  });
});
