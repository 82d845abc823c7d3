import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Cluster } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createNodeEdgecache } from "../../../src/adapter/node/modes/data-api.ts";
import { Cache } from "../../../src/core/cache/index.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { redisChangeLog } from "../../../src/log/redis/index.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { redisStore } from "../../../src/stores/redis.ts";
import { quiet, schema } from "../../helpers/cluster.ts";
import { type PrivateRedisCluster, startRedisCluster } from "../../helpers/redis-server.ts";
import { requireRedisServer } from "../../helpers/services.ts";

const server = await requireRedisServer();

server.describe("the change log on a 3-master Redis Cluster", () => {
  let cluster: PrivateRedisCluster;
  const clients: Cluster[] = [];

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
  });

  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await cluster?.stop();
  });

  async function node(prefix: string) {
    const client = new Cluster(cluster.nodes, { enableAutoPipelining: true });
    client.on("error", () => {});
    clients.push(client);
    const log = await redisChangeLog({ client, prefix, leaseMs: 1000, logger: quiet });
    const shared = await redisStore({ client, prefix });
    const cache = new Cache({ tiers: [memoryStore(), shared], log, schema, logger: quiet });
    const end = Date.now() + 10_000;
    while (!log.trusted()) {
      if (Date.now() > end) throw new Error("no lease on the cluster");
      await new Promise((r) => setTimeout(r, 20));
    }
    return { log, cache };
  }

  it("orders writes from several nodes and invalidates across them", async () => {
    const prefix = `test:${randomId()}:`;
    const a = await node(prefix);
    const b = await node(prefix);
    await b.cache.set("user:1", { name: "Lane" }, { tags: ["users#1"] });
    expect(b.cache.peek("user:1")).toBeDefined();
    await a.cache.applyWrite({
      table: "users",
      op: "update",
      old: { id: 1, name: "Lane" },
      new: { id: 1, name: "Lana" },
    });
    expect(b.cache.peek("user:1")).toBeUndefined();
    // b's copy in the shared tier is refused by a, which never indexed it.
    expect(await a.cache.get("user:1")).toBeUndefined();
    const seqs = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? a : b).cache.invalidate({ keys: [`k${i}`] }).then(() => 0),
      ),
    );
    expect(seqs).toHaveLength(20);
    expect(a.cache.position.seq).toBe(b.cache.position.seq);
    await a.log.close();
    await b.log.close();
  });

  it("two data API nodes configured with { url, cluster: true } see each other's writes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgecache-cluster-"));
    const first = cluster.nodes[0]!;
    const redis = {
      url: `redis://${first.host}:${first.port}`,
      cluster: true,
      prefix: `t:${randomId()}:`,
    };
    const options = { cwd: dir, demo: { users: 10, orders: 10 }, redis, cacheFile: false as const };
    const a = await createNodeEdgecache(options);
    const b = await createNodeEdgecache(options);
    try {
      await Promise.all([a.cache.writable(), b.cache.writable()]);
      const list = (await (await a.app.request("/v1/users?limit=1")).json()) as {
        data: { id: string }[];
      };
      const path = `/v1/users/${list.data[0]!.id}`;
      await b.app.request(path);
      expect((await b.app.request(path)).headers.get("cache-status")).toMatch(/hit/);
      const res = await a.app.request(path, {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ firstName: "Clustered" }),
      });
      expect(res.status).toBe(200);
      expect(((await (await b.app.request(path)).json()) as { firstName: string }).firstName).toBe(
        "Clustered",
      );
    } finally {
      await a.close();
      await b.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
