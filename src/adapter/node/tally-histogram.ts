import type { Metric, MetricValueWithName, Registry } from "prom-client";

/** What prom-client's registry reads of a metric (its `get()` and `getForPromString()`). */
interface Samples {
  name: string;
  help: string;
  type: "histogram";
  aggregator: "sum";
  values: (MetricValueWithName<string> & { sharedLabels?: Record<string, string> })[];
}

/**
 * A Prometheus histogram with one label, observed in plain numbers and turned into
 * prom-client's samples only at a scrape. prom-client's own `observe` validates and hashes
 * the labels and allocates a closure on every call: on the raw-socket hit path, where a
 * memory hit costs a few microseconds in all, that was a visible share of each hit.
 *
 * It registers like any prom-client metric and exposes exactly what a prom-client
 * `Histogram` with the same name, help, buckets and label exposes for the same observations
 * (test/adapter/node/tally-histogram.test.ts feeds both), so registries, default labels and
 * `AggregatorRegistry.aggregate` (which sums histograms) treat it the same.
 */
export class TallyHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram" as const;
  readonly aggregator = "sum" as const;
  readonly #label: string;
  readonly #bounds: readonly number[];
  readonly #tallies = new Map<string, Tally>();

  constructor(options: {
    name: string;
    help: string;
    label: string;
    buckets: readonly number[];
    registers: Registry[];
  }) {
    this.name = options.name;
    this.help = options.help;
    this.#label = options.label;
    this.#bounds = [...options.buckets].sort((a, b) => a - b);
    // The registry reads only name, type, get() and getForPromString(): see prom-client's
    // Registry (getMetricsAsString, getMetricsAsJSON).
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric);
  }

  /** The tally of one label value, to keep and observe into (no lookup per observation). */
  labels(value: string): Tally {
    let tally = this.#tallies.get(value);
    if (!tally) {
      tally = new Tally(this.#bounds);
      this.#tallies.set(value, tally);
    }
    return tally;
  }

  /** Forgets every observation (prom-client's `registry.resetMetrics()` calls it). */
  reset(): void {
    this.#tallies.clear();
  }

  /** prom-client's shape for the text exposition: the label as a shared label. */
  async getForPromString(): Promise<Samples> {
    // Exemplars as prom-client leaves them without exemplars: null on buckets, else unset.
    const values: (MetricValueWithName<string> & {
      sharedLabels: Record<string, string>;
      exemplar: null | undefined;
    })[] = [];
    const bucket = `${this.name}_bucket`;
    for (const [value, tally] of this.#tallies) {
      const sharedLabels = { [this.#label]: value };
      let cumulative = 0;
      this.#bounds.forEach((le, i) => {
        cumulative += tally.counts[i]!;
        values.push({
          labels: { le },
          sharedLabels,
          value: cumulative,
          metricName: bucket,
          exemplar: null,
        });
      });
      const { count, sum } = tally;
      const inf = { le: "+Inf" };
      values.push({ labels: inf, sharedLabels, value: count, metricName: bucket, exemplar: null });
      const [s, c] = [`${this.name}_sum`, `${this.name}_count`];
      values.push({ labels: {}, sharedLabels, value: sum, metricName: s, exemplar: undefined });
      values.push({ labels: {}, sharedLabels, value: count, metricName: c, exemplar: undefined });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: "sum" };
  }

  /** prom-client's JSON shape (`getMetricsAsJSON`): the label among the labels. */
  async get(): Promise<Samples> {
    const metric = await this.getForPromString();
    metric.values = metric.values.map((v) => {
      const { sharedLabels, labels, ...rest } = v;
      return { ...rest, labels: { ...labels, ...sharedLabels } };
    });
    return metric;
  }
}

/** One label value's observations: a count per bucket (not cumulative), their sum and count. */
export class Tally {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  readonly #bounds: readonly number[];

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    // prom-client would throw; on a hit path a bad clock reading is only not counted.
    if (!Number.isFinite(value)) return;
    // Most observations land in the first buckets (a memory hit takes microseconds).
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    if (i < bounds.length) this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}
