import { rmSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { randomId } from "../../src/core/random-id.ts";
import { tempDir } from "../app/harness.ts";
import { requirePostgres } from "../helpers/services.ts";
import { cli, serveTenants } from "./run-cli.ts";

// A tenant served from PostgreSQL beside one on SQLite, with identical URLs: each reads its
// own database through its own cache.

const postgres = await requirePostgres();

postgres.describe("a tenant on PostgreSQL", () => {
  const name = `edgecache_ops_${randomId()
    .toLowerCase()
    .replace(/[^a-z0-9]/g, "")}`;
  const admin = () => new pg.Client({ connectionString: postgres.url });
  let dir: string;
  let node: { url: string; stop(): Promise<void> };
  let url: string;
  const keys: Record<string, string> = {};

  beforeAll(async () => {
    dir = tempDir("edgecache-tenants-pg-");
    const c = admin();
    await c.connect();
    await c.query(`CREATE DATABASE ${name}`);
    await c.end();
    const dbUrl = new URL(postgres.url);
    dbUrl.pathname = `/${name}`;
    const t = new pg.Client({ connectionString: dbUrl.href });
    await t.connect();
    await t.query("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
    await t.query("INSERT INTO items VALUES (1, 'from-postgres')");
    await t.end();
    const lite = new Database(join(dir, "lite.db"));
    lite.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
    lite.exec("INSERT INTO items VALUES (1, 'from-sqlite')");
    lite.close();
    const state = join(dir, "state.db");
    for (const [tenant, db] of [
      ["pg", dbUrl.href],
      ["lite", join(dir, "lite.db")],
    ] as const) {
      const r = await cli(["tenants", "create", tenant, "--db", db, "--json", "--state", state]);
      expect(r.code).toBe(0);
      keys[tenant] = JSON.parse(r.stdout).key;
    }
    node = await serveTenants(state, { cwd: dir });
    url = node.url;
  }, 60_000);

  afterAll(async () => {
    await node?.stop();
    const c = admin();
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("identical URLs read each tenant's own database, then hit each one's cache", async () => {
    for (const [tenant, expected] of [
      ["pg", "from-postgres"],
      ["lite", "from-sqlite"],
    ] as const) {
      for (const status of [/fwd=miss/, /^edgecache; hit/]) {
        const r = await fetch(`${url}/v1/items/1`, {
          headers: { "x-edgecache-key": keys[tenant]! },
        });
        expect(await r.text()).toContain(expected);
        expect(r.headers.get("cache-status")).toMatch(status);
      }
    }
  }, 30_000);
});
