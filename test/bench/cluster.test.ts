import { afterAll, expect, it } from "vitest";
import { runCluster } from "../../bench/cluster/cluster.ts";
import { stopAll } from "../../bench/lib/processes.ts";
import { BenchRedis } from "../../bench/lib/redis.ts";
import { requireRedis } from "../helpers/services.ts";

const service = await requireRedis(process.env.REDIS_URL);

/**
 * The cluster benchmark end to end, small: real node processes sharing the Redis on this
 * machine, one write ratio, a short probe. No setup may read anything stale, and every node
 * of the cluster must have served reads (else the cluster was not measured at all).
 */
service.describe("cluster benchmark (smoke)", () => {
  const redis = new BenchRedis(service.url);
  afterAll(async () => {
    await stopAll();
    redis.close();
  });

  it("reads nothing stale on one node or three, and the three nodes all serve reads", async () => {
    await redis.check();
    const { records, probes } = await runCluster({
      users: 300,
      orders: 1500,
      requests: 500,
      writeRatios: [0.1],
      connections: 4,
      nodes: 3,
      strategy: "edgecache-rehydrate",
      redis,
      probeWrites: 10,
      seed: 3,
    });
    expect(records.map((r) => r.setup)).toEqual([
      "1-local",
      "n-alone",
      "1-redis",
      "n-redis",
      "n-redis-lists",
    ]);
    for (const r of records) {
      // The floor's nodes do not see each other's writes: it is measured, not judged.
      if (r.setup !== "n-alone") expect(r.staleReads, r.setup).toBe(0);
      expect(r.requests, r.setup).toBe(500);
      expect(r.hitRate, r.setup).toBeGreaterThan(0.5);
    }
    for (const setup of ["n-alone", "n-redis", "n-redis-lists"]) {
      const cluster = records.find((r) => r.setup === setup)!;
      expect(cluster.readsByNode).toHaveLength(3);
      for (const reads of cluster.readsByNode) expect(reads).toBeGreaterThan(100);
      if (setup !== "n-alone") expect(cluster.tierHits.redis).toBeGreaterThan(0);
    }
    // Redis commands per request, as the nodes counted them: a write's turn and append.
    for (const r of records.filter((x) => x.changeLog === "redis")) {
      const { commands, requests } = r.redis!;
      expect(requests.write, r.setup).toBeGreaterThan(0);
      expect(commands.write / requests.write, r.setup).toBeGreaterThanOrEqual(1);
    }
    expect(probes.map((p) => p.setup)).toEqual(["1-local", "1-redis", "n-redis", "n-redis-lists"]);
    for (const p of probes) {
      expect(p.staleReads, p.setup).toBe(0);
      expect(p.writes, p.setup).toBe(10);
      expect(p.errors, p.setup).toBe(0);
    }
  }, 180_000);
});
