import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { Relay } from "../../../bench/lib/relay.ts";
import {
  createNodeEdgecache,
  type NodeEdgecache,
} from "../../../src/adapter/node/modes/data-api.ts";
import { resolveResource } from "../../../src/core/data/query.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { demoViews } from "../../../src/demo/seed.ts";
import { sqliteSource } from "../../../src/sources/sqlite.ts";
import { until } from "../../helpers/cluster.ts";
import { requireRedis } from "../../helpers/services.ts";
import { consistencyProperty, type Deployment, nodesInProcess } from "./property.ts";

const service = await requireRedis(process.env.REDIS_URL);

/** A relay to the shared Redis that adds `rttMs` of round trip. */
function relayToRedis(url: string, rttMs: number): Promise<Relay> {
  const { hostname, port } = new URL(url);
  return Relay.start({
    target: { host: hostname || "127.0.0.1", port: Number(port || 6379) },
    rttMs,
  });
}

/**
 * Two nodes over one database sharing Redis, as in cluster.property.test.ts, but the second
 * one's Redis link crosses a 20 ms round trip (bench/lib/relay.ts): its log, lease and shared
 * tier all arrive late. Reads and writes go to either at random.
 */
async function nearAndFar(dir: string): Promise<Deployment> {
  const relay = await relayToRedis(service.url, 20);
  const redis = { url: service.url, prefix: `test:${randomId()}:`, leaseMs: 2000 };
  const options = { cwd: dir, demo: { users: 60, orders: 240 } };
  const nodes: NodeEdgecache[] = [];
  try {
    nodes.push(
      await createNodeEdgecache({ ...options, redis, cacheFile: join(dir, "near.cache.db") }),
      await createNodeEdgecache({
        ...options,
        redis: { ...redis, url: relay.url(service.url) },
        cacheFile: join(dir, "far.cache.db"),
      }),
    );
    await Promise.all(nodes.map((n) => n.cache.writable()));
  } catch (err) {
    for (const n of nodes) await n.close();
    await relay.close();
    throw err;
  }
  return nodesInProcess(nodes, () => relay.close());
}

service.describe("consistency at a distance", () => {
  // Few runs: each write waits for the far node, several round trips of 20 ms.
  consistencyProperty("a near node and a far one (20 ms to Redis)", nearAndFar, 18, 0);

  /**
   * A node whose link to Redis goes dark (the relay holds every byte, connections stay
   * open) stops serving from its memory once its lease lapses, so a write acknowledged by
   * the other node is never hidden by its old copy; after the heal it rejoins and serves
   * hits again, still never an old row.
   */
  it("a partitioned node reads nothing stale, and rejoins after the heal without a stale read", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgecache-partition-"));
    const relay = await relayToRedis(service.url, 10);
    const redis = { url: service.url, prefix: `test:${randomId()}:`, leaseMs: 1000 };
    const options = { cwd: dir, demo: { users: 20, orders: 40 }, cacheFile: false as const };
    const near = await createNodeEdgecache({ ...options, redis });
    const far = await createNodeEdgecache({
      ...options,
      redis: { ...redis, url: relay.url(service.url) },
    });
    const fresh = sqliteSource({ path: near.databasePath, views: demoViews });
    try {
      await Promise.all([near.cache.writable(), far.cache.writable()]);
      const users = (await (await near.app.request("/v1/users?sort=id&limit=3")).json()) as {
        data: { id: string }[];
      };
      const [id, other] = users.data.map((u) => u.id) as [string, string];
      const path = `/v1/users/${id}`;
      const truth = async () => {
        const resource = resolveResource(await fresh.schema(), "users")!;
        return (await fresh.get(resource, id)) ?? null;
      };
      /** Reads `path` on `node`; the body must equal the database's row, whatever served it. */
      let staleReads = 0;
      const read = async (node: NodeEdgecache, p = path) => {
        const res = await node.app.request(p);
        const body = await res.json();
        const want = p === path ? await truth() : body;
        if (JSON.stringify(body) !== JSON.stringify(want)) staleReads++;
        return {
          status: res.status,
          hit: res.headers.get("cache-status")?.includes("hit") ?? false,
        };
      };
      // Cached on both sides before the cut.
      await until(async () => (await read(near)).hit && (await read(far)).hit);

      relay.partition();
      // Acknowledged by the near node once the far one's lease lapsed (it cannot apply it).
      const write = await near.app.request(path, {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ lastName: "Partitioned" }),
      });
      expect(write.status).toBe(200);
      // The far node, cut off, answers from its database: the new row, never its old copy.
      for (let i = 0; i < 10; i++) {
        const got = await read(far);
        expect(got.status).toBe(200);
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(staleReads).toBe(0);

      relay.heal();
      // It hears the log again, catches up, and serves hits again: the new row.
      await until(async () => (await read(far)).hit, 15_000);
      const again = await near.app.request(path, {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ lastName: "Healed" }),
      });
      expect(again.status).toBe(200);
      await read(far);
      await read(far, `/v1/users/${other}`);
      expect(staleReads).toBe(0);
      expect(((await (await far.app.request(path)).json()) as { lastName: string }).lastName).toBe(
        "Healed",
      );
    } finally {
      await fresh.close();
      await near.close();
      await far.close();
      await relay.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
