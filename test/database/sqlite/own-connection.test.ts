import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import BetterSqlite from "better-sqlite3";
import Libsql from "libsql";
import { afterAll, describe, expect, it } from "vitest";
import { ownConnection, type SyncSqlite } from "../../../src/database/sqlite/own-connection.ts";

const dir = mkdtempSync(join(tmpdir(), "edgecache-own-conn-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The two synchronous SQLite libraries, as far as the test uses them. */
interface Db {
  exec(sql: string): unknown;
  prepare(sql: string): { get(): unknown; run(...params: unknown[]): unknown };
  close(): unknown;
}
const libraries: [string, new (path: string) => Db][] = [
  ["libsql", Libsql as never],
  ["better-sqlite3", BetterSqlite as never],
];

describe.each(libraries)("capture's own connection (%s)", (name, Database) => {
  it("after a statement fails busy, its next writes commit and hold no lock", async () => {
    const path = join(dir, `${name}.db`);
    const admin = new Database(path);
    admin.exec("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)");
    const own = ownConnection(async () => new Database(path) as unknown as SyncSqlite);
    await own.all("SELECT 1 AS one", []);
    // Another connection holds the write lock: our statement fails at once.
    admin.exec("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)");
    await expect(own.run("INSERT INTO t VALUES (2)", [])).rejects.toMatchObject({
      code: expect.stringMatching(/^SQLITE_BUSY/),
    });
    admin.exec("COMMIT");
    // libSQL leaves the failed statement's implicit transaction open: without a new
    // connection this write would keep the lock and never commit.
    await own.write("INSERT INTO t VALUES (3)", []);
    const other = new Database(path);
    expect(other.prepare("SELECT count(*) AS n FROM t WHERE x = 3").get()).toMatchObject({ n: 1 });
    other.prepare("INSERT INTO t VALUES (4)").run();
    expect(own.statements).toBeGreaterThanOrEqual(3);
    await own.close();
    other.close();
    admin.close();
  });

  it("writes wait for the lock without blocking, then commit", async () => {
    const path = join(dir, `${name}-wait.db`);
    const admin = new Database(path);
    admin.exec("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)");
    const own = ownConnection(async () => new Database(path) as unknown as SyncSqlite);
    admin.exec("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)");
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    let settled = false;
    const written = own.write("INSERT INTO t VALUES (2)", []).finally(() => {
      settled = true;
    });
    // The event loop runs while the write waits (a blocking wait would stop the ticks and
    // this loop with them, until the test's time runs out), however slow the machine.
    while (ticks <= 5) await new Promise((r) => setTimeout(r, 5));
    expect(settled).toBe(false);
    admin.exec("COMMIT");
    await written;
    clearInterval(timer);
    expect(admin.prepare("SELECT count(*) AS n FROM t").get()).toMatchObject({ n: 2 });
    await own.close();
    admin.close();
  });
});
