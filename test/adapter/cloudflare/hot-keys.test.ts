import { describe, expect, it } from "vitest";
import {
  HALF_LIFE_MS,
  HotKeyCounter,
  HotKeyTotals,
  MAX_COUNTED_KEYS,
} from "../../../src/adapter/cloudflare/hot-keys.ts";

describe("hot keys for warming", () => {
  it("ranks keys by reads summed over isolates' reports", () => {
    const totals = new HotKeyTotals(() => 0);
    totals.report([
      ["a", 3],
      ["b", 5],
    ]);
    totals.report([
      ["a", 4],
      ["c", 1],
    ]);
    expect(totals.top(2)).toEqual(["a", "b"]);
  });

  it("halves counts every half-life, so keys no longer read give way to new ones", () => {
    let now = 0;
    const totals = new HotKeyTotals(() => now);
    totals.report([["old", 100]]);
    now = 3 * HALF_LIFE_MS;
    totals.report([["new", 20]]);
    expect(totals.top(2)).toEqual(["new", "old"]);
  });

  it("holds a bounded number of keys, keeping the most read", () => {
    const counter = new HotKeyCounter();
    counter.add("hot", 1000);
    for (let i = 0; i < MAX_COUNTED_KEYS * 2; i++) counter.add(`k${i}`);
    expect(counter.size).toBeLessThanOrEqual(MAX_COUNTED_KEYS);
    expect(counter.top(1)).toEqual(["hot"]);
  });
});
