import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import Database from "better-sqlite3";
import { Miniflare } from "miniflare";
import pgLib from "pg";
import postgres from "postgres";
import { describe, expect, it } from "vitest";
import { clientKind } from "../../src/database/client-kind.ts";
import { sqlDriver } from "../../src/database/drivers.ts";
import { sqlDriverConformance } from "../../src/testing/index.ts";
import { requirePostgres } from "../helpers/services.ts";

// Every client edgecache recognises, its driver held to the one driver contract (database/driver.ts).

const pg = await requirePostgres();

/** A file in a directory of its own, removed at close. */
function tempFile(name: string): { path: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-client-"));
  return { path: join(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

sqlDriverConformance(
  "better-sqlite3 (memory)",
  async () => {
    const db = new Database(":memory:");
    return { client: db, close: async () => void db.close() };
  },
  { kind: "better-sqlite3", dialect: "sqlite" },
);

sqlDriverConformance(
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

sqlDriverConformance(
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

sqlDriverConformance(
  "libSQL (memory)",
  async () => {
    const client = createClient({ url: ":memory:" });
    return { client, close: async () => client.close() };
  },
  { kind: "libsql", dialect: "sqlite" },
);

sqlDriverConformance(
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
  sqlDriverConformance(
    "postgres.js",
    async () => {
      const sql = postgres(pg.url, { max: 2, onnotice: () => {} });
      return { client: sql, close: () => sql.end() };
    },
    { kind: "postgres.js", dialect: "postgres" },
  );

  sqlDriverConformance(
    "node-postgres (Pool)",
    async () => {
      const pool = new pgLib.Pool({ connectionString: pg.url, max: 2 });
      return { client: pool, close: () => pool.end() };
    },
    { kind: "node-postgres", dialect: "postgres" },
  );

  sqlDriverConformance(
    "node-postgres (Client)",
    async () => {
      const client = new pgLib.Client({ connectionString: pg.url });
      await client.connect();
      return { client, close: () => client.end() };
    },
    { kind: "node-postgres", dialect: "postgres" },
  );
});

describe("what is told for a client", () => {
  it("a driver with query, connect and end that is not pg (mysql's shape) is no client", () => {
    const mysqlLike = { query() {}, connect() {}, end() {}, config: {} };
    expect(clientKind(mysqlLike)).toBeUndefined();
    expect(sqlDriver(mysqlLike)).toBeUndefined();
  });
});

pg.describe("node-postgres without parameters", () => {
  it("several statements in one text answer the last one's rows and every change", async () => {
    const pool = new pgLib.Pool({ connectionString: pg.url, max: 1 });
    try {
      const client = sqlDriver(pool)!;
      const t = `ec_multi_${Math.random().toString(36).slice(2, 8)}`;
      const r = await client.run(
        `create temp table ${t} (id int); insert into ${t} values (1), (2); select id from ${t} order by id`,
        [],
      );
      expect(r.rows.map((x) => x.id)).toEqual([1, 2]);
      expect(r.rowsAffected).toBe(2);
    } finally {
      await pool.end();
    }
  });
});
