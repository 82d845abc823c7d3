import { rmSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { shortHash } from "../../src/adapter/node/cluster.ts";
import { STATE_LEASE_MS } from "../../src/adapter/node/tenants/state-contract.ts";
import { randomId } from "../../src/core/random-id.ts";
import { exchange } from "../adapter/node/raw-client.ts";
import { tempDir } from "../app/harness.ts";
import { startRedis } from "../helpers/redis-server.ts";
import { type RequiredService, requirePostgres, requireRedis } from "../helpers/services.ts";
import { cli, serveTenants } from "./run-cli.ts";

// Tenants in a state database shared by two running nodes (PostgreSQL, Redis): a tenant
// created, a key rotated or a tenant deleted through the CLI holds on both nodes as soon as
// the command returns, with no restart.

const postgres = await requirePostgres();
const redis = await requireRedis();
const suffix = randomId();

type Node = { url: string; port: number; stop(): Promise<void> };

/** `tenants create shop` over `dir`/shop.db, with --json. */
const createShop = (dir: string, state: string) =>
  cli(["tenants", "create", "shop", "--db", join(dir, "shop.db"), "--json", "--state", state]);

function sharedState(
  kind: string,
  service: RequiredService,
  setUp: () => Promise<{ state: string; tearDown(): Promise<void> }>,
) {
  service.describe(`tenants on ${kind}, two nodes`, () => {
    let dir: string;
    let state: string;
    let tearDown: (() => Promise<void>) | undefined;
    const nodes: Node[] = [];
    const keys: Record<string, string> = {};

    const get = (node: Node, key: string, path = "/v1/items/1") =>
      fetch(`${node.url}${path}`, { headers: { authorization: `Bearer ${key}` } });
    const rawGet = (node: Node, key: string) =>
      exchange(
        node.port,
        `GET /v1/items/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Edgecache-Key: ${key}\r\n\r\n`,
        ["GET"],
      ).then((r) => r.replies[0]!);

    beforeAll(async () => {
      dir = tempDir("edgecache-tenants-shared-");
      ({ state, tearDown } = await setUp());
      const db = new Database(join(dir, "shop.db"));
      db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
      db.exec("INSERT INTO items VALUES (1, 'shop-1')");
      db.close();
      // Both nodes start before any tenant exists; their tenants' caches share Redis.
      for (let i = 0; i < 2; i++) {
        const node = await serveTenants(state, { cwd: dir, env: { REDIS_URL: redis.url } });
        nodes.push({ ...node, port: Number(new URL(node.url).port) });
      }
    }, 60_000);

    /** When each tenant was made: its caches' place in Redis is its name and this. */
    const made: string[] = [];

    afterAll(async () => {
      for (const node of nodes) await node.stop();
      // The tenants' entries and logs in the shared Redis, this run's only.
      const { Redis } = await import("ioredis");
      const client = new Redis(redis.url);
      for (const createdAt of made) {
        const left = await client.keys(`*tenant:shop-${shortHash(createdAt)}:*`);
        if (left.length > 0) await client.del(...left);
      }
      client.disconnect();
      await tearDown?.();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("create: both running nodes serve the new tenant once the command returns", async () => {
      const r = await createShop(dir, state);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const created = JSON.parse(r.stdout);
      made.push(created.createdAt);
      expect(created.nodes).toBe(2);
      keys.shop = created.key;
      for (const node of nodes) {
        const res = await get(node, keys.shop!);
        expect(res.status).toBe(200);
        expect(await res.text()).toContain("shop-1");
      }
      const listed = await cli(["tenants", "list", "--json", "--state", state]);
      expect(JSON.parse(listed.stdout).map((t: { name: string }) => t.name)).toEqual(["shop"]);
      expect(listed.stdout).not.toContain("ek_");
      const dup = await createShop(dir, state);
      expect(dup.code).toBe(1);
      expect(dup.stderr.trim()).toBe('[edgecache] [tenants] tenant "shop" exists');
    }, 30_000);

    it("rotate-key: every node refuses the old key at once, raw hits included", async () => {
      for (const node of nodes) {
        await get(node, keys.shop!);
        expect((await rawGet(node, keys.shop!)).header("cache-status")).toMatch(/^edgecache; hit/);
      }
      const old = keys.shop!;
      const r = await cli(["tenants", "rotate-key", "shop", "--json", "--state", state]);
      expect(r.code).toBe(0);
      keys.shop = JSON.parse(r.stdout).key;
      for (const node of nodes) {
        expect((await rawGet(node, old)).status).toBe(401);
        expect((await get(node, old)).status).toBe(401);
        const fresh = await rawGet(node, keys.shop!);
        expect(fresh.status).toBe(200);
        expect(fresh.header("cache-status")).toMatch(/^edgecache; hit/); // the cache stays
      }
    }, 30_000);

    it("a write through one node reaches the other node's cache", async () => {
      const [a, b] = nodes as [Node, Node];
      for (const node of [a, b, b])
        expect(await (await get(node, keys.shop!)).text()).toContain("shop-1");
      const write = await fetch(`${a.url}/v1/items/1`, {
        method: "PATCH",
        headers: { authorization: `Bearer ${keys.shop}`, "content-type": "application/json" },
        body: JSON.stringify({ name: "shop-1-new" }),
      });
      expect(write.status).toBe(200);
      expect(await (await get(b, keys.shop!)).text()).toContain("shop-1-new");
      expect((await rawGet(b, keys.shop!)).body.toString()).toContain("shop-1-new");
    }, 30_000);

    it("delete: every node refuses its key at once; a tenant made anew starts empty", async () => {
      const r = await cli(["tenants", "delete", "shop", "--state", state]);
      expect(r.code).toBe(0);
      for (const node of nodes) expect((await get(node, keys.shop!)).status).toBe(401);
      const again = await createShop(dir, state);
      keys.shop = JSON.parse(again.stdout).key;
      made.push(JSON.parse(again.stdout).createdAt);
      // Its first read is a miss (the other node may then find it in the shared tier).
      expect((await get(nodes[0]!, keys.shop!)).headers.get("cache-status")).toMatch(/fwd=miss/);
      for (const node of nodes) expect((await get(node, keys.shop!)).status).toBe(200);
      const missing = await cli(["tenants", "delete", "nobody", "--state", state]);
      expect(missing.code).toBe(5);
    }, 30_000);
  });
}

sharedState("PostgreSQL", postgres, async () => {
  const name = `edgecache_state_${suffix.toLowerCase()}`;
  const admin = async (query: string) => {
    const c = new pg.Client({ connectionString: postgres.url });
    await c.connect();
    await c.query(query);
    await c.end();
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(postgres.url);
  url.pathname = `/${name}`;
  return {
    state: url.href,
    tearDown: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
});

sharedState("Redis", redis, async () => ({
  state: `${redis.url}?prefix=edgecache-test-${suffix}:`,
  async tearDown() {
    const { Redis } = await import("ioredis");
    const client = new Redis(redis.url);
    const keys = await client.keys(`edgecache-test-${suffix}:*`);
    if (keys.length > 0) await client.del(...keys);
    client.disconnect();
  },
}));

redis.describe("a node that stops hearing the state", () => {
  it("refuses requests within the lease, and serves again once it hears the state", async () => {
    const server = await startRedis();
    const dir = tempDir("edgecache-tenants-lease-");
    const db = new Database(join(dir, "shop.db"));
    db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
    db.close();
    const created = await createShop(dir, server.url);
    const { key } = JSON.parse(created.stdout);
    const node = await serveTenants(server.url, { cwd: dir });
    try {
      const get = () => fetch(`${node.url}/v1/items`, { headers: { "x-edgecache-key": key } });
      expect((await get()).status).toBe(200);
      server.pause();
      await new Promise((done) => setTimeout(done, STATE_LEASE_MS + 500));
      const refused = await get();
      expect(refused.status).toBe(503);
      expect(await refused.text()).toMatch(/state database/);
      server.resume();
      await expect
        .poll(async () => (await get()).status, { timeout: 10_000, interval: 200 })
        .toBe(200);
    } finally {
      server.resume();
      await node.stop();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
