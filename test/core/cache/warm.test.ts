import { describe, expect, it } from "vitest";
import { scheduleWarm } from "../../../src/adapter/node/warm-schedule.ts";
import { createCache } from "../../../src/core/cache/index.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { until } from "../../helpers/cluster.ts";

describe("warming", () => {
  it("loads missing keys with bounded concurrency, reports progress, counts failures", async () => {
    const cache = createCache({ tiers: [memoryStore()], logger: { warn: () => {} } });
    await cache.set("k0", "cached");
    let running = 0;
    let peak = 0;
    const progress: number[] = [];
    const keys = Array.from({ length: 10 }, (_, i) => `k${i}`);
    const result = await cache.warm(
      keys,
      async (key) => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 5));
        running--;
        if (key === "k9") throw new Error("row gone");
        return `v-${key}`;
      },
      { concurrency: 3, onProgress: ({ done }) => progress.push(done) },
    );
    expect(peak).toBe(3);
    expect(progress).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(result.loaded).toBe(9);
    expect(result.failed.map((f) => f.key)).toEqual(["k9"]);
    // Already cached keys are left as they are; the rest now hit.
    expect(await cache.getMany(["k0", "k1", "k9"])).toEqual(["cached", "v-k1", undefined]);
  });

  it("reports a failed key's error as a message and code that survive JSON (a log line, an HTTP answer)", async () => {
    const cache = createCache({ tiers: [memoryStore()], logger: { warn: () => {} } });
    const result = await cache.warm(["plain", "coded"], (key) => {
      if (key === "plain") throw new Error("row gone");
      throw Object.assign(new Error("connection refused"), { code: "ECONNREFUSED" });
    });
    expect(JSON.parse(JSON.stringify(result.failed))).toEqual([
      { key: "plain", message: "row gone" },
      { key: "coded", message: "connection refused", code: "ECONNREFUSED" },
    ]);
  });

  it("refresh replaces what is cached", async () => {
    const cache = createCache({ tiers: [memoryStore()] });
    await cache.set("a", 1);
    await cache.warm(["a"], () => 2, { refresh: true });
    expect(await cache.get("a")).toBe(2);
  });

  it("rejects a bad concurrency in expected-X-got-Y form", async () => {
    const cache = createCache({ tiers: [memoryStore()] });
    await expect(cache.warm(["a"], () => 1, { concurrency: 0 })).rejects.toThrow(
      'option "concurrency": expected a positive integer, got 0',
    );
  });

  it("scheduleWarm runs on its cron expression until stopped", async () => {
    const cache = createCache({ tiers: [memoryStore()] });
    let runs = 0;
    let finished = 0;
    const schedule = scheduleWarm(
      cache,
      "* * * * * *",
      () => ["page"],
      () => ++runs,
      {
        refresh: true,
        onRun: () => {
          finished++;
        },
      },
    );
    expect(schedule.next()).toBeInstanceOf(Date);
    // Waits for the work, not the clock: a loaded machine may take longer than a second
    // between a run's load and its store.
    await until(() => finished >= 2, 30_000);
    schedule.stop();
    await until(() => finished === runs, 30_000); // the run in progress, if any, finishes
    expect(await cache.get("page")).toBe(runs);
    expect(() =>
      scheduleWarm(
        cache,
        "not cron",
        () => [],
        () => 1,
      ),
    ).toThrow(/option "cron"/);
  }, 70_000);
});
