import Database from "better-sqlite3";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import {
  CASCADE_SQL,
  CONFORMANCE_SIZE,
  demoViews,
  seedDemo,
  sourceConformance,
} from "../../src/testing/index.ts";

sourceConformance("better-sqlite3", async () => {
  const db = new Database(":memory:");
  seedDemo(db, CONFORMANCE_SIZE);
  for (const sql of CASCADE_SQL) db.exec(sql);
  const source = sqliteSource({ database: db, views: demoViews });
  return {
    source,
    close: async () => {
      await source.close();
      db.close();
    },
  };
});
