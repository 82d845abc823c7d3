import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { CASCADE_SQL, CONFORMANCE_SIZE, seedDemo } from "../../src/testing/index.ts";

/**
 * A SQLite file in a directory of its own holding what the source suite serves (the demo
 * tables and CASCADE_SQL's), seeded and closed before the library under test opens it (two
 * SQLite libraries in one process do not share locks); `remove` deletes the directory.
 */
export function seededDemoFile(): { path: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-source-"));
  const path = join(dir, "demo.db");
  const seeder = new Database(path);
  seedDemo(seeder, CONFORMANCE_SIZE);
  for (const sql of CASCADE_SQL) seeder.exec(sql);
  seeder.close();
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
