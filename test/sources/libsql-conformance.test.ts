import { type Client, createClient } from "@libsql/client";
import { demoRows } from "../../src/demo/seed.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import {
  CASCADE_SQL,
  CONFORMANCE_SIZE,
  DEMO_SCHEMA,
  demoViews,
  type SourceBackend,
  sourceConformance,
} from "../../src/testing/index.ts";
import { seededDemoFile } from "./seeded-file.ts";

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
  const file = seededDemoFile();
  return served(createClient({ url: `file:${file.path}` }), file.remove);
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
