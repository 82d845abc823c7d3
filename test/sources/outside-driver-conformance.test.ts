import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { demoViews, sourceConformance } from "../../src/testing/index.ts";
import { plainSqliteDriver } from "../database/outside-driver.ts";
import { seededDemoFile } from "./seeded-file.ts";

// The data API's SQLite source over a driver written outside edgecache (a thin wrapper
// over better-sqlite3 that knows nothing of change capture), held to the source suite.

sourceConformance("a driver written outside edgecache (file)", async () => {
  const file = seededDemoFile();
  const driver = plainSqliteDriver(file.path);
  const source = sqliteSource({ driver, views: demoViews });
  return {
    source,
    close: async () => {
      await source.close();
      await driver.close();
      file.remove();
    },
  };
});

describe("change capture through a driver written outside edgecache", () => {
  it("installs, feeds the writes made around the source, and removes the source's own once recorded", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgecache-outside-capture-"));
    const path = join(dir, "db.sqlite");
    const around = new Database(path);
    around.exec("PRAGMA journal_mode = WAL; CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)");
    const driver = plainSqliteDriver(path);
    const source = sqliteSource({ driver });
    try {
      expect((await source.installCapture()).tables).toEqual(["notes"]);
      const feed = source.captureFeed();
      // A write made around the source is in the change table for the feed.
      around.prepare("INSERT INTO notes VALUES ('n1', 'around')").run();
      const changes = await feed.read(100, true);
      expect(changes.map((c) => [c.event.table, c.event.op])).toEqual([["notes", "insert"]]);
      await feed.consume(changes);
      // The source's own write is marked in its transaction (the driver knows nothing of
      // it), left out of reads while the data API records it, and removed once recorded.
      await source.insert("notes", { id: "n2", body: "through" }, { capture: "mark-1" });
      const marked = around.prepare("SELECT api FROM _edgecache_changes").all();
      expect(marked).toEqual([{ api: "mark-1" }]);
      expect(await feed.read(100, true)).toEqual([]);
      await source.recorded("mark-1");
      expect((await source.captureStatus()).backlog).toBe(0);
    } finally {
      await source.close();
      await driver.close();
      around.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
