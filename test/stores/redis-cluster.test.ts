import { randomUUID } from "node:crypto";
import { Cluster } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { redisStore } from "../../src/stores/redis.ts";
import { storeConformance } from "../../src/testing/index.ts";
import { storedEntry } from "../helpers/entries.ts";
import type { PrivateRedisCluster } from "../helpers/redis-server.ts";
import { startRedisCluster } from "../helpers/redis-server.ts";
import { requireRedisServer, UNHURRIED_COMMAND_MS } from "../helpers/services.ts";

const server = await requireRedisServer();

server.describe("redis store on a 3-master Redis Cluster", () => {
  let cluster: PrivateRedisCluster;
  let client: Cluster;

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
    client = new Cluster(cluster.nodes, { enableAutoPipelining: true });
    await new Promise((resolve, reject) => {
      client.once("ready", resolve);
      client.once("error", reject);
    });
  });

  afterAll(async () => {
    await client?.quit();
    await cluster?.stop();
  });

  // Each test on its own prefix; the whole cluster goes after the file.
  storeConformance(
    "redis cluster",
    () =>
      redisStore({
        client,
        prefix: `edgecache-test:${randomUUID()}:`,
        commandTimeout: UNHURRIED_COMMAND_MS,
      }),
    { realTime: true },
  );

  it("spreads one store's keys over every master, and lists and deletes them all", async () => {
    const prefix = `edgecache-test:${randomUUID()}:`;
    const store = await redisStore({ client, prefix });
    const keys = Array.from({ length: 60 }, (_, i) => `spread/${i}`);
    for (const key of keys) await store.set(key, storedEntry(), 60_000);

    const masters = client.nodes("master");
    expect(masters).toHaveLength(3);
    for (const node of masters) expect(await node.keys(`${prefix}*`)).not.toHaveLength(0);

    const listed: string[] = [];
    for await (const key of store.keys("spread/")) listed.push(key);
    expect(listed.sort()).toEqual([...keys].sort());
    expect(await store.delete([...keys, "spread/missing"])).toBe(keys.length);
  });
});
