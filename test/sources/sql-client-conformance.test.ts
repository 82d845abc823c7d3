import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import Database from "better-sqlite3";
import { Miniflare } from "miniflare";
import pgLib from "pg";
import postgres from "postgres";
import { sqlClientConformance } from "../../src/testing/index.ts";
import { requirePostgres } from "../helpers/services.ts";

// Every client edgecache recognises, held to the one client contract (sql-client.ts).

const pg = await requirePostgres();

/** A file in a directory of its own, removed at close. */
function tempFile(name: string): { path: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-client-"));
  return { path: join(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

sqlClientConformance(
  "better-sqlite3 (memory)",
  async () => {
    const db = new Database(":memory:");
    return { client: db, close: async () => void db.close() };
  },
  { kind: "better-sqlite3", dialect: "sqlite" },
);

sqlClientConformance(
  "better-sqlite3 (file)",
  async () => {
    const file = tempFile("db.sqlite");
    const db = new Database(file.path);
    return {
      client: db,
      close: async () => {
        db.close();
        file.remove();
      },
    };
  },
  { kind: "better-sqlite3", dialect: "sqlite" },
);

sqlClientConformance(
  "libSQL (file)",
  async () => {
    const file = tempFile("db.sqlite");
    const client = createClient({ url: `file:${file.path}` });
    return {
      client,
      close: async () => {
        client.close();
        file.remove();
      },
    };
  },
  { kind: "libsql", dialect: "sqlite" },
);

sqlClientConformance(
  "libSQL (memory)",
  async () => {
    const client = createClient({ url: ":memory:" });
    return { client, close: async () => client.close() };
  },
  { kind: "libsql", dialect: "sqlite" },
);

sqlClientConformance(
  "D1 (miniflare)",
  async () => {
    const mf = new Miniflare({
      modules: true,
      script: "export default { fetch() { return new Response('') } }",
      d1Databases: ["DB"],
    });
    const client = await mf.getD1Database("DB");
    return { client, close: () => mf.dispose() };
  },
  { kind: "d1", dialect: "sqlite" },
);

pg.describe("PostgreSQL clients", () => {
  sqlClientConformance(
    "postgres.js",
    async () => {
      const sql = postgres(pg.url, { max: 2, onnotice: () => {} });
      return { client: sql, close: () => sql.end() };
    },
    { kind: "postgres.js", dialect: "postgres" },
  );

  sqlClientConformance(
    "node-postgres (Pool)",
    async () => {
      const pool = new pgLib.Pool({ connectionString: pg.url, max: 2 });
      return { client: pool, close: () => pool.end() };
    },
    { kind: "node-postgres", dialect: "postgres" },
  );

  sqlClientConformance(
    "node-postgres (Client)",
    async () => {
      const client = new pgLib.Client({ connectionString: pg.url });
      await client.connect();
      return { client, close: () => client.end() };
    },
    { kind: "node-postgres", dialect: "postgres" },
  );
});
