import fc from "fast-check";
import { AggregatorRegistry, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { TallyHistogram } from "../../../src/adapter/node/tally-histogram.ts";

// The read histogram is tallied in plain numbers (TallyHistogram): a scrape must show
// exactly what prom-client's own Histogram shows for the same observations.

const BUCKETS = [0.000_01, 0.000_1, 0.001, 0.01, 0.1, 1, 10];

function pair(defaultLabels?: Record<string, string>) {
  const ours = new Registry();
  const theirs = new Registry();
  if (defaultLabels) {
    ours.setDefaultLabels(defaultLabels);
    theirs.setDefaultLabels(defaultLabels);
  }
  const common = { name: "t_seconds", help: "Time.", buckets: BUCKETS };
  const tally = new TallyHistogram({ ...common, label: "tier", registers: [ours] });
  const histogram = new Histogram({ ...common, labelNames: ["tier"], registers: [theirs] });
  const observe = (tier: string, value: number) => {
    tally.labels(tier).observe(value);
    histogram.labels(tier).observe(value);
  };
  return { ours, theirs, observe };
}

const observations = fc.array(
  fc.tuple(
    fc.constantFrom("memory", "sqlite", "redis"),
    fc.oneof(
      fc.constantFrom(...BUCKETS, 0, 11),
      fc.double({ min: 0, max: 20, noNaN: true, noDefaultInfinity: true }),
    ),
  ),
  { maxLength: 60 },
);

describe("TallyHistogram", () => {
  it("exposes what prom-client's Histogram exposes for the same observations (text and JSON)", async () => {
    await fc.assert(
      fc.asyncProperty(observations, fc.boolean(), async (seen, tenant) => {
        const { ours, theirs, observe } = pair(tenant ? { tenant: "a" } : undefined);
        for (const [tier, value] of seen) observe(tier, value);
        expect(await ours.metrics()).toBe(await theirs.metrics());
        expect(await ours.getMetricsAsJSON()).toEqual(await theirs.getMetricsAsJSON());
      }),
      { numRuns: 100 },
    );
  });

  it("sums across nodes as prom-client's aggregation sums histograms", async () => {
    const a = pair();
    const b = pair();
    a.observe("memory", 0.000_005);
    a.observe("memory", 0.5);
    b.observe("memory", 0.000_05);
    b.observe("sqlite", 0.002);
    const merged = async (which: "ours" | "theirs") =>
      AggregatorRegistry.aggregate([
        await a[which].getMetricsAsJSON(),
        await b[which].getMetricsAsJSON(),
      ]).metrics();
    const text = await merged("ours");
    expect(text).toBe(await merged("theirs"));
    expect(text).toContain('t_seconds_count{tier="memory"} 3');
  });

  it("is emptied by the registry's resetMetrics, as prom-client's histograms are", async () => {
    const { ours, theirs, observe } = pair();
    observe("memory", 0.5);
    ours.resetMetrics();
    theirs.resetMetrics();
    expect(await ours.metrics()).toBe(await theirs.metrics());
    observe("sqlite", 0.002);
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it("leaves out a reading that is not a finite number, where prom-client would throw", async () => {
    const registry = new Registry();
    const tally = new TallyHistogram({
      name: "t_seconds",
      help: "Time.",
      label: "tier",
      buckets: BUCKETS,
      registers: [registry],
    });
    tally.labels("memory").observe(Number.NaN);
    tally.labels("memory").observe(0.5);
    expect(await registry.metrics()).toContain('t_seconds_count{tier="memory"} 1');
  });
});
