import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "@libsql/client";
import Database from "better-sqlite3";
import { demoRows } from "../../src/demo/seed.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import {
  CASCADE_SQL,
  CONFORMANCE_SIZE,
  DEMO_SCHEMA,
  demoViews,
  type SourceBackend,
  seedDemo,
  sourceConformance,
} from "../../src/testing/index.ts";

// The data API's source on a libSQL client: the same contract as on better-sqlite3.

/** The source on `client`, which is closed after it, then `after` runs. */
function served(client: Client, after = () => {}): SourceBackend {
  const source = sqliteSource({ client, views: demoViews });
  return {
    source,
    close: async () => {
      await source.close();
      client.close();
      after();
    },
  };
}

sourceConformance("libSQL (file)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-libsql-"));
  const path = join(dir, "demo.db");
  // Seeded and closed before libSQL opens it: two SQLite libraries do not share locks.
  const seeder = new Database(path);
  seedDemo(seeder, CONFORMANCE_SIZE);
  for (const sql of CASCADE_SQL) seeder.exec(sql);
  seeder.close();
  return served(createClient({ url: `file:${path}` }), () =>
    rmSync(dir, { recursive: true, force: true }),
  );
});

sourceConformance("libSQL (:memory:)", async () => {
  const client = createClient({ url: ":memory:" });
  await client.executeMultiple(DEMO_SCHEMA);
  const { users, orders } = demoRows(CONFORMANCE_SIZE);
  await client.batch(
    [
      ...users.map((args) => ({
        sql: "INSERT INTO users (id, firstName, lastName, email, createdAt) VALUES (?, ?, ?, ?, ?)",
        args,
      })),
      ...orders.map((args) => ({
        sql: "INSERT INTO orders (id, userId, total, status, createdAt) VALUES (?, ?, ?, ?, ?)",
        args,
      })),
      ...CASCADE_SQL,
    ],
    "write",
  );
  return served(client);
});
