import {
  AggregatorRegistry,
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from "prom-client";
import type { MetricsExposition } from "../../app/admin.ts";
import { LEARN_COUNTERS } from "../../app/proxy/learn/admin-report.ts";
import type { LearnStats } from "../../app/proxy/learn/env.ts";
import { MANIFEST_METRIC, type ManifestSummary } from "../../app/proxy/manifest/keeper.ts";
import type { Cache } from "../../core/cache/index.ts";
import {
  type CacheObserver,
  type CacheStats,
  type StatsFamily,
  statsFamilies,
} from "../../core/stats.ts";
import { type Tally, TallyHistogram } from "./tally-histogram.ts";

/** A node's Prometheus metrics (prom-client): latency histograms and the cache's counters. */
export interface NodeMetrics extends MetricsExposition {
  /** Passed to the Cache: it feeds the histograms. */
  observer: CacheObserver;
  /** Exposes `cache.stats()` at each scrape, under the names `toPrometheus` uses. */
  watch(cache: Cache): void;
  /** Exposes learned invalidation's counts (proxy mode with `learn`) at each scrape. */
  watchLearning(stats: () => LearnStats): void;
  /** Exposes the manifest's URLs by state (proxy mode with a manifest) at each scrape. */
  watchManifest(summary: () => ManifestSummary | Promise<ManifestSummary>): void;
  /** The samples as prom-client's JSON, for `mergedMetrics`. */
  json(): Promise<MetricObjectWithValues<MetricValue<string>>[]>;
}

/**
 * Several nodes' metrics (tenants' nodes, whose samples carry a `tenant` label) as one
 * exposition: prom-client's aggregation, which sums equal label sets (none here).
 */
export async function mergedMetrics(all: NodeMetrics[]): Promise<string> {
  return AggregatorRegistry.aggregate(await Promise.all(all.map((m) => m.json()))).metrics();
}

/**
 * Seconds. A memory hit takes microseconds, a SQLite hit tens of them, a database or origin
 * load milliseconds to seconds: the buckets span all three so one histogram per tier can
 * be compared (and summed across nodes, which a summary's quantiles cannot).
 */
const LATENCY_BUCKETS = [
  0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
  0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/**
 * The metrics of one node: `edgecache_read_duration_seconds{tier}` (reads answered by a
 * tier, the raw-socket memory hits included), `edgecache_source_load_duration_seconds
 * {outcome}` (database queries or origin fetches), the counters and gauges of
 * `Cache.stats()`, and Node's process metrics (`edgecache_process_*`, `edgecache_nodejs_*`).
 */
export function nodeMetrics(options: { tenant?: string } = {}): NodeMetrics {
  const registry = new Registry();
  if (options.tenant === undefined) {
    collectDefaultMetrics({ register: registry, prefix: "edgecache_" });
  } else {
    // A tenant's node: its samples carry its name, and the process is the tenants' node's.
    registry.setDefaultLabels({ tenant: options.tenant });
  }
  // Observed on every hit, the raw-socket ones included: tallied in plain numbers.
  const reads = new TallyHistogram({
    name: "edgecache_read_duration_seconds",
    help: "Time to answer a read from a cache tier, by the tier that held the entry.",
    label: "tier",
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const loads = new Histogram({
    name: "edgecache_source_load_duration_seconds",
    help: "Time of a load from the source (a database query, an origin fetch).",
    labelNames: ["outcome"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  // The tier's tally, kept: a Map lookup per read is the one cost left.
  const byTier = new Map<string, Tally>();
  const loaded = { ok: loads.labels("ok"), failed: loads.labels("failed") };
  const observer: CacheObserver = {
    read(tier, seconds) {
      let child = byTier.get(tier);
      if (!child) {
        child = reads.labels(tier);
        byTier.set(tier, child);
      }
      child.observe(seconds);
    },
    load(seconds, failed) {
      (failed ? loaded.failed : loaded.ok).observe(seconds);
    },
  };

  let snapshot: Map<string, StatsFamily["samples"]> | undefined;
  let watched: Cache | undefined;
  // One snapshot per scrape, shared by every family's collect.
  const scrape = async <T>(read: () => Promise<T>): Promise<T> => {
    snapshot = watched && samplesOf(watched.stats());
    try {
      return await read();
    } finally {
      snapshot = undefined;
    }
  };
  return {
    observer,
    contentType: registry.contentType,
    watch(cache) {
      watched = cache;
      // The summary is the JSON stats' view of latency; here the histograms replace it.
      for (const family of statsFamilies(cache.stats())) {
        if (family.type === "summary") continue;
        const current = () => (snapshot ?? samplesOf(cache.stats())).get(family.name) ?? [];
        // The labels its samples carry, known before there are any (tenants come later).
        const labelNames = family.name.startsWith("tier_")
          ? ["tier"]
          : family.name.startsWith("redis_")
            ? ["kind"]
            : [...new Set(family.samples.flatMap((s) => Object.keys(s.labels ?? {})))];
        const common = {
          name: `edgecache_${family.name}`,
          help: family.help,
          labelNames,
          registers: [registry],
        };
        if (family.type === "counter") {
          new Counter({
            ...common,
            collect() {
              this.reset();
              for (const s of current()) this.inc(s.labels ?? {}, s.value);
            },
          });
        } else {
          new Gauge({
            ...common,
            collect() {
              this.reset();
              for (const s of current()) this.set(s.labels ?? {}, s.value);
            },
          });
        }
      }
    },
    watchLearning(stats) {
      for (const [key, name, help] of LEARN_COUNTERS) {
        new Counter({
          name: `edgecache_${name}`,
          help,
          registers: [registry],
          collect() {
            this.reset();
            this.inc(stats()[key]);
          },
        });
      }
    },
    watchManifest(summary) {
      new Gauge({
        name: `edgecache_${MANIFEST_METRIC.name}`,
        help: MANIFEST_METRIC.help,
        labelNames: ["state"] as const,
        registers: [registry],
        async collect() {
          const now = await summary();
          for (const state of MANIFEST_METRIC.states) this.set({ state }, now[state]);
        },
      });
    },
    text: () => scrape(() => registry.metrics()),
    json: () => scrape(() => registry.getMetricsAsJSON()),
  };
}

function samplesOf(stats: CacheStats): Map<string, StatsFamily["samples"]> {
  return new Map(statsFamilies(stats).map((f) => [f.name, f.samples]));
}
