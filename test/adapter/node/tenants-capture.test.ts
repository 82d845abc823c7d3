import { rmSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTenantNode, type TenantNode } from "../../../src/adapter/node/tenants/dispatcher.ts";
import { openTenantState } from "../../../src/adapter/node/tenants/state.ts";
import { postgresSource } from "../../../src/sources/postgres.ts";
import { sqliteSource } from "../../../src/sources/sqlite.ts";
import { tempDir } from "../../app/harness.ts";
import { until } from "../../helpers/cluster.ts";
import { withPostgresDatabase } from "../../helpers/postgres.ts";
import { requirePostgres } from "../../helpers/services.ts";

// Change capture for a Node node of tenants (issue 43): each tenant's node follows its own
// database's change table, as a single node does, so a write made around edgecache (another
// process, psql) reaches that tenant's cache, and only that tenant's. SQLite and PostgreSQL.

const postgres = await requirePostgres();
const HIT = /^edgecache; hit/;

postgres.describe("change capture under a node of tenants", () => {
  let dir: string;
  let node: TenantNode;
  let url: string;
  let pgUrl: string;
  let dropPg: () => Promise<void>;
  const keys: Record<string, string> = {};

  beforeAll(async () => {
    dir = tempDir("edgecache-tenants-capture-");
    for (const name of ["shop", "blog"]) {
      const db = new Database(join(dir, `${name}.db`));
      db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
      db.exec(`INSERT INTO items VALUES (1, '${name}-1'), (2, '${name}-2')`);
      db.close();
      const source = sqliteSource({ path: join(dir, `${name}.db`) });
      expect((await source.installCapture()).installed).toBe(true);
      await source.close();
    }
    await new Promise<void>((ready) => {
      void withPostgresDatabase(postgres.url, "edgecache_tenants_capture", async (u, drop) => {
        pgUrl = u;
        dropPg = drop;
        ready();
      });
    });
    const c = new pg.Client({ connectionString: pgUrl });
    await c.connect();
    await c.query("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
    await c.query("INSERT INTO items VALUES (1, 'pg-1'), (2, 'pg-2')");
    await c.end();
    const source = await postgresSource({ url: pgUrl });
    expect((await source.installCapture()).installed).toBe(true);
    await source.close();
    const state = await openTenantState(join(dir, "state.db"));
    for (const [name, database] of [
      ["shop", join(dir, "shop.db")],
      ["blog", join(dir, "blog.db")],
      ["pg", pgUrl],
    ] as const) {
      keys[name] = (await state.create({ name, source: { database } })).key;
    }
    await state.close();
    node = await createTenantNode({ state: join(dir, "state.db"), port: 0, logLevel: "silent" });
    url = (await node.listen()).url;
  }, 60_000);

  afterAll(async () => {
    await node?.close();
    await dropPg?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const read = async (tenant: string, path: string) => {
    const r = await fetch(`${url}${path}`, { headers: { "x-edgecache-key": keys[tenant]! } });
    expect(r.status).toBe(200);
    return {
      json: (await r.json()) as Record<string, unknown>,
      cache: r.headers.get("cache-status") ?? "",
    };
  };

  it("a row changed in a tenant's SQLite file by another process reaches that tenant's cache only", async () => {
    for (const tenant of ["shop", "blog"]) {
      await read(tenant, "/v1/items/1");
      expect((await read(tenant, "/v1/items/1")).cache).toMatch(HIT);
    }
    const db = new Database(join(dir, "shop.db"));
    db.prepare("UPDATE items SET name = 'changed around' WHERE id = 1").run();
    db.close();
    await until(
      async () => (await read("shop", "/v1/items/1")).json.name === "changed around",
      30_000,
    );
    const blog = await read("blog", "/v1/items/1");
    expect(blog.json.name).toBe("blog-1");
    expect(blog.cache).toMatch(HIT);
  }, 60_000);

  it("a row changed in a tenant's PostgreSQL database by psql reaches its cache", async () => {
    await read("pg", "/v1/items?limit=10");
    expect((await read("pg", "/v1/items?limit=10")).cache).toMatch(HIT);
    const c = new pg.Client({ connectionString: pgUrl });
    await c.connect();
    await c.query("UPDATE items SET name = 'psql' WHERE id = 2");
    await c.end();
    await until(async () => {
      const data = (await read("pg", "/v1/items?limit=10")).json.data as { name: string }[];
      return data[1]?.name === "psql";
    }, 30_000);
  }, 60_000);
});
