import { rmSync } from "node:fs";
import { afterEach, expect, it } from "vitest";
import { createNodeEdgecache, type NodeEdgecache } from "../../src/adapter/node/modes/data-api.ts";
import { until } from "../helpers/cluster.ts";
import { startRedis } from "../helpers/redis-server.ts";
import { requireRedisServer } from "../helpers/services.ts";
import { tempDir } from "./harness.ts";

// GET /_edgecache/health on a node whose change log is a Redis of this file's own, paused
// (SIGSTOP) as a stalled server would be: the lease lapses, and the check says so.

const server = await requireRedisServer();
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function health(ec: NodeEdgecache) {
  const res = await ec.app.request("/_edgecache/health");
  // biome-ignore lint/suspicious/noExplicitAny: the body is inspected check by check
  return { status: res.status, body: (await res.json()) as any };
}

server.describe("health with a Redis change log", () => {
  it("is 503 naming the log while Redis does not answer, and 200 once it does again", async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const dir = tempDir("edgecache-health-redis-");
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const ec = await createNodeEdgecache({
      cwd: dir,
      demo: { users: 10, orders: 20 },
      redis: { url: redis.url, prefix: "health:", leaseMs: 600 },
      cacheFile: false,
      logLevel: "silent",
    });
    cleanups.push(() => ec.close());
    await until(async () => (await health(ec)).status === 200);
    const node = ec.cache.log.node;
    expect(node).toEqual(expect.any(String));
    expect((await health(ec)).body.checks.log).toEqual({ ok: true, name: "redis", node });

    redis.pause();
    cleanups.push(() => redis.resume()); // before the node closes, which waits on Redis
    // The Redis tier's reads fail first (a command timeout); the lease lapses after.
    await until(async () => (await health(ec)).body.checks.log.ok === false, 15_000);
    const down = await health(ec);
    expect(down.status).toBe(503);
    expect(down.body.status).toBe("fail");
    expect(down.body.checks.log).toEqual({ ok: false, name: "redis", node });
    expect(down.body.checks.tiers.ok).toBe(false); // its Redis tier
    expect(down.body.checks.source).toEqual({ ok: true });

    redis.resume();
    await until(async () => (await health(ec)).status === 200, 15_000);
  }, 40_000);
});
