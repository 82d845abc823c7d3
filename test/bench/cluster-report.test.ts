import { describe, expect, it } from "vitest";
import type { ClusterRecord } from "../../bench/cluster/cluster.ts";
import { targetLines } from "../../bench/cluster/report.ts";

/** A record of the fields the CPU lines read: `cpuUs` over 1,000 requests. */
function record(setup: ClusterRecord["setup"], run: number, cpuUs: number): ClusterRecord {
  return {
    setup,
    run,
    nodes: setup.startsWith("n-") ? 3 : 1,
    writeRatio: 0.05,
    requests: 1000,
    rps: 200,
    hitRate: 0.97,
    dbQueriesPerRequest: 0.05,
    staleReads: 0,
    cpu: { nodes: cpuUs * 1000, driver: 0, redis: 0 },
  } as unknown as ClusterRecord;
}

describe("bench:cluster --repeat", () => {
  it("compares setups within a run and reports the median of the runs' ratios", () => {
    // One node's own figure varies from run to run; each ratio is against its own run's.
    const records = [
      record("1-redis", 1, 600),
      record("n-redis", 1, 900), // 1.50
      record("1-redis", 2, 900),
      record("n-redis", 2, 1080), // 1.20
      record("1-redis", 3, 700),
      record("n-redis", 3, 1260), // 1.80
    ];
    const lines = targetLines(records, []).join("\n");
    expect(lines).toContain(
      "5.0%, run 1: – one node with the in-process log, 1.50× (met) one node on Redis",
    );
    expect(lines).toContain(
      "5.0%, run 2: – one node with the in-process log, 1.20× (met) one node on Redis",
    );
    expect(lines).toContain(
      "5.0%, run 3: – one node with the in-process log, 1.80× (MISSED) one node on Redis",
    );
    expect(lines).toContain(
      "median over the runs** (target ≤ 1.5×): 5.0%: 1.50× (met; the runs 1.50, 1.20, 1.80)",
    );
  });

  it("says nothing of a median with one run", () => {
    const one = [record("1-redis", 1, 600), record("n-redis", 1, 900)].map(
      ({ run: _, ...r }) => r as ClusterRecord,
    );
    expect(targetLines(one, []).join("\n")).not.toContain("median");
  });
});
