import { afterAll, expect, it } from "vitest";
import { stopAll } from "../../bench/lib/processes.ts";
import { BenchRedis } from "../../bench/lib/redis.ts";
import { runRegions } from "../../bench/regions/regions.ts";
import { requireRedis } from "../helpers/services.ts";

const service = await requireRedis(process.env.REDIS_URL);

/**
 * The regions benchmark end to end, small: two node processes sharing the Redis on this
 * machine, the second's link through a relay at 20 ms, then a short partition of it. No run
 * may read anything stale, every region must have served, and the distance must show.
 */
service.describe("regions benchmark (smoke)", () => {
  const redis = new BenchRedis(service.url);
  afterAll(async () => {
    await stopAll();
    redis.close();
  });

  it("reads nothing stale near, far, or cut off, and the far link is as long as asked", async () => {
    await redis.check();
    const { records, partitions } = await runRegions({
      users: 300,
      orders: 1500,
      requests: 400,
      writeRatios: [0.1],
      connections: 2,
      rtts: [0, 20],
      source: "sqlite",
      strategy: "edgecache-rehydrate",
      redis,
      partition: { region: 1, beforeMs: 1000, cutMs: 3000, afterMs: 1000 },
      seed: 3,
    });
    expect(records.map((r) => `${r.setup} ${r.region}`)).toEqual([
      "baseline 1",
      "baseline 2",
      "regions 1",
      "regions 2",
    ]);
    for (const r of records) {
      expect(r.staleReads, `${r.setup} ${r.region}`).toBe(0);
      expect(r.requests, `${r.setup} ${r.region}`).toBe(200);
      expect(r.hitRate, `${r.setup} ${r.region}`).toBeGreaterThan(0.5);
    }
    // A write through the far node reaches Redis at least once: a round trip at least.
    const far = records.find((r) => r.setup === "regions" && r.region === 2)!;
    expect(far.writeP50Ms).toBeGreaterThanOrEqual(20);

    const [cut] = partitions;
    expect(cut!.staleReads).toBe(0);
    const probes = cut!.probes.find((p) => p.region === 2 && p.phase === "cut")!;
    expect(probes.reads).toBeGreaterThan(10);
    expect(probes.staleReads).toBe(0);
    // The near region kept answering while the far one was cut off.
    const near = cut!.phases.find((p) => p.region === 1 && p.phase === "cut")!;
    expect(near.requests).toBeGreaterThan(0);
  }, 180_000);
});
