import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import {
  createNodeEdgecache,
  type NodeEdgecache,
} from "../../../src/adapter/node/modes/data-api.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { until } from "../../helpers/cluster.ts";
import { type NodeProcess, redisConfig, startNode } from "../../helpers/nodes.ts";
import { type PrivateRedis, startRedis } from "../../helpers/redis-server.ts";
import { requireRedis, requireRedisServer } from "../../helpers/services.ts";

/**
 * Faults of the shared Redis, on a redis-server of this file's own (the shared one is never
 * stopped): down at start, paused, restarted empty; and a node killed with -9. Whatever
 * happens, no client sees a 5xx because of the cache and no read is stale.
 */

const LEASE_MS = 600;
const server = await requireRedisServer();
const shared = await requireRedis();

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-faults-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function node(
  dir: string,
  redis: PrivateRedis | string,
  name: string,
): Promise<NodeEdgecache> {
  const url = typeof redis === "string" ? redis : redis.url;
  const ec = await createNodeEdgecache({
    cwd: dir,
    demo: { users: 30, orders: 60 },
    redis: { url, prefix: "faults:", leaseMs: LEASE_MS },
    cacheFile: join(dir, `${name}.cache.db`),
  });
  cleanup.push(() => ec.close());
  return ec;
}

async function get(ec: NodeEdgecache, path: string) {
  const res = await ec.app.request(path);
  return {
    status: res.status,
    cache: res.headers.get("cache-status") ?? "",
    body: (await res.json()) as Record<string, unknown>,
  };
}

function patch(ec: NodeEdgecache, path: string, values: unknown) {
  return ec.app.request(path, {
    method: "PATCH",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(values),
  });
}

/** A private Redis, two nodes holding their leases, and a user that `b` has cached. */
async function twoNodesWithCachedUser() {
  const redis = await startRedis();
  const dir = tempDir();
  const a = await node(dir, redis, "a");
  const b = await node(dir, redis, "b");
  await until(() => a.cache.trusted && b.cache.trusted);
  const id = await firstUser(a);
  await get(b, `/v1/users/${id}`);
  return { redis, a, b, id };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const firstUser = async (ec: NodeEdgecache) =>
  ((await get(ec, "/v1/users?limit=1")).body.data as { id: string }[])[0]!.id;

server.describe("Redis faults", () => {
  it("Redis down at start: the node serves from the database, then from cache once Redis is up", async () => {
    const redis = await startRedis();
    await redis.stop();
    const dir = tempDir();
    const a = await node(dir, redis, "a");
    for (let i = 0; i < 3; i++) {
      const r = await get(a, "/v1/users?limit=3");
      expect(r.status).toBe(200);
      expect(r.cache).toContain("fwd=bypass; detail=lease-expired");
    }
    await redis.restart();
    await until(() => a.cache.trusted);
    await get(a, "/v1/users?limit=3");
    expect((await get(a, "/v1/users?limit=3")).cache).toMatch(/hit/);
    expect(a.cache.stats().bypasses).toBeGreaterThanOrEqual(3);
  });

  it("Redis paused (SIGSTOP): reads bypass the cache, a write waits, and nothing is stale after", async () => {
    const { redis, a, b, id } = await twoNodesWithCachedUser();
    expect((await get(b, `/v1/users/${id}`)).cache).toMatch(/hit/);

    redis.pause();
    await sleep(LEASE_MS + 100);
    const during = await get(b, `/v1/users/${id}`);
    expect(during.status).toBe(200);
    expect(during.cache).toContain("fwd=bypass");
    const write = patch(a, `/v1/users/${id}`, { firstName: "Paused" }); // waits for the log
    await sleep(500);
    redis.resume();
    expect((await write).status).toBe(200);
    await until(() => b.cache.trusted);
    expect((await get(b, `/v1/users/${id}`)).body.firstName).toBe("Paused");
  });

  it("Redis killed and restarted under load: every request is answered 200", async () => {
    const redis = await startRedis();
    const dir = tempDir();
    const a = await node(dir, redis, "a");
    await until(() => a.cache.trusted);
    const statuses = new Map<number, number>();
    let running = true;
    const client = async (n: number) => {
      for (let i = 0; running; i++) {
        const path =
          i % 2
            ? `/v1/users?limit=${(n % 5) + 1}&offset=${i % 7}`
            : `/v1/orders?limit=${(i % 9) + 1}`;
        const { status } = await a.app.request(path);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        // As a client across a socket would: a request answered without I/O (SQLite is
        // synchronous, and so are ETags on Node) settles in microtasks, and a loop of them
        // would starve the timers this test runs on.
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    const clients = Array.from({ length: 8 }, (_, n) => client(n));
    await sleep(300);
    await redis.kill();
    await sleep(LEASE_MS * 2);
    await redis.restart();
    await until(() => a.cache.trusted);
    await sleep(300);
    running = false;
    await Promise.all(clients);
    expect([...statuses.keys()]).toEqual([200]);
    const stats = a.cache.stats();
    expect(stats.bypasses).toBeGreaterThan(0);
    expect(stats.log.failures).toBeGreaterThan(0); // counted, and logged at a limited rate
  });

  it("a write while Redis stays down is refused with 503 and not made", async () => {
    const redis = await startRedis();
    const dir = tempDir();
    const a = await node(dir, redis, "a");
    await until(() => a.cache.trusted);
    const id = await firstUser(a);
    await redis.stop();
    await until(() => !a.cache.trusted); // the lease ran out: the node knows the log is gone
    const res = await patch(a, `/v1/users/${id}`, { firstName: "Lost" });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
      "E_LOG_UNAVAILABLE",
    );
    expect((await get(a, `/v1/users/${id}`)).body.firstName).not.toBe("Lost");
  });

  it("Redis restarted empty: nodes start over on the new log and drop what they cached", async () => {
    const { redis, a, b, id } = await twoNodesWithCachedUser();
    await redis.restart();
    expect((await patch(a, `/v1/users/${id}`, { firstName: "Restarted" })).status).toBe(200);
    const after = await get(b, `/v1/users/${id}`);
    expect(after.status).toBe(200);
    expect(after.body.firstName).toBe("Restarted");
    expect(b.cache.stats().resets).toBeGreaterThanOrEqual(2); // the start, and the new log
  });
});

shared.describe("a node killed with -9", () => {
  it("rejoins without serving what changed while it was down", async () => {
    const dir = tempDir();
    redisConfig(dir, { url: shared.url, prefix: `test:${randomId()}:`, leaseMs: LEASE_MS });
    const nodes: NodeProcess[] = [];
    cleanup.push(async () => {
      for (const n of nodes) await n.stop("SIGKILL");
    });
    const a = await startNode(dir, ["--db", "app.db", "--cache-file", "a.cache.db"]);
    nodes.push(a);
    let b = await startNode(dir, ["--db", "app.db", "--cache-file", "b.cache.db"]);
    nodes.push(b);
    const read = async (n: NodeProcess, path: string) => {
      const res = await fetch(n.url + path);
      return {
        cache: res.headers.get("cache-status") ?? "",
        body: (await res.json()) as Record<string, unknown>,
      };
    };
    const id = ((await read(a, "/v1/users?limit=1")).body.data as { id: string }[])[0]!.id;
    await until(async () => (await read(b, `/v1/users/${id}`)).cache.includes("hit"));

    await b.stop("SIGKILL"); // its cache file keeps the entry
    const res = await fetch(`${a.url}/v1/users/${id}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ firstName: "WhileDown" }),
    });
    expect(res.status).toBe(200);
    b = await startNode(dir, ["--db", "app.db", "--cache-file", "b.cache.db"]);
    nodes.push(b);
    for (let i = 0; i < 20; i++) {
      expect((await read(b, `/v1/users/${id}`)).body.firstName).toBe("WhileDown");
      await sleep(20);
    }
  });
});
