import { describe, expect, it } from "vitest";
import { rateLimited } from "../../src/core/report.ts";

describe("rate-limited failure reports", () => {
  it("reports the first failure at once, holds back the rest, and reports a later outage too", () => {
    let t = 0;
    const lines: string[] = [];
    const report = rateLimited({ warn: (m) => lines.push(m) }, () => t, 10_000);
    report("redis:get", "[edgecache] [redis] get failed");
    for (let i = 0; i < 5; i++) report("redis:get", "[edgecache] [redis] get failed");
    report("redis:set", "[edgecache] [redis] set failed"); // another kind: its own line
    expect(lines).toEqual(["[edgecache] [redis] get failed", "[edgecache] [redis] set failed"]);
    t = 60_000; // a second outage, long after the first
    report("redis:get", "[edgecache] [redis] get failed");
    expect(lines[2]).toBe("[edgecache] [redis] get failed (and 5 more since the last report)");
  });
});
