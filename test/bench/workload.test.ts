import { describe, expect, it } from "vitest";
import { stopAll } from "../../bench/lib/processes.ts";
import { runWorkload } from "../../bench/workload/workload.ts";

/**
 * The workload benchmark end to end, small: real servers and HTTP, one write ratio. The
 * oracle must find the stale reads a TTL-only cache serves, and none from the others.
 */
describe("workload benchmark (smoke)", () => {
  it("finds stale reads under TTL-only caching and none under edgecache, table-level or no cache", async () => {
    try {
      const { records } = await runWorkload({
        users: 300,
        orders: 1500,
        requests: 1500,
        writeRatios: [0.1],
        strategies: ["no-cache", "ttl-60s", "table", "edgecache-rehydrate"],
        connections: 4,
        seed: 3,
      });
      const by = Object.fromEntries(records.map((r) => [r.strategy, r]));
      expect(by["ttl-60s"]!.staleReads).toBeGreaterThan(0);
      for (const s of ["no-cache", "table", "edgecache-rehydrate"]) {
        expect(by[s]!.staleReads, s).toBe(0);
        expect(by[s]!.errors, s).toBe(0);
      }
      expect(by["edgecache-rehydrate"]!.hitRate).toBeGreaterThan(by.table!.hitRate);
      expect(by["no-cache"]!.hitRate).toBe(0);
      for (const r of records) expect(r.requests).toBe(1500);
    } finally {
      await stopAll();
    }
  }, 120_000);
});
