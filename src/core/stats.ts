/** Counters the engine keeps; `Cache.stats()` returns a snapshot. */
export interface TierStats {
  name: string;
  hits: number;
  misses: number;
  errors: number;
  entries?: number;
  bytes?: number;
  evictions?: number;
}

export interface CacheStats {
  /** Reads answered from some tier while fresh. */
  hits: number;
  /** Reads answered stale (stale-while-revalidate or stale-if-error). */
  staleHits: number;
  misses: number;
  /** Reads sent to the source without the cache, since this node's lease had lapsed. */
  bypasses: number;
  /** Source loads (misses and refreshes), failed loads, and loads not stored by the write fence. */
  loads: number;
  loadErrors: number;
  fenced: number;
  /** Entries read from a shared tier and refused: a change since their load concerns them. */
  refused: number;
  writes: number;
  /** Keys removed by invalidation (writes and manual). */
  invalidations: number;
  rehydrations: number;
  /** Entries a write changed in place instead of invalidating them. */
  patches: number;
  /** Times this node missed log records it could not apply, and dropped its memory tier. */
  resets: number;
  indexedKeys: number;
  /** Cached negative results (404, 410) held, their quota, and how many the quota dropped. */
  notFound: { entries: number; maxEntries: number; evictions: number };
  /**
   * The change log: its kind, this node's position, whether it may serve from cache, and
   * failed requests to the log's server.
   */
  log: { name: string; seq: number; lease: boolean; failures: number };
  sourceLatencyMs: { count: number; mean: number; p50: number; p95: number; p99: number };
  tiers: TierStats[];
}

/** Keeps the last `capacity` samples for quantiles; cheap enough for every load. */
export class LatencyRecorder {
  #samples: number[] = [];
  #next = 0;
  #count = 0;
  #sum = 0;

  constructor(private readonly capacity = 1024) {}

  record(ms: number): void {
    this.#count++;
    this.#sum += ms;
    if (this.#samples.length < this.capacity) this.#samples.push(ms);
    else this.#samples[this.#next] = ms;
    this.#next = (this.#next + 1) % this.capacity;
  }

  summary(): CacheStats["sourceLatencyMs"] {
    const sorted = [...this.#samples].sort((a, b) => a - b);
    const q = (p: number) =>
      sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
    return {
      count: this.#count,
      mean: this.#count ? this.#sum / this.#count : 0,
      p50: q(0.5),
      p95: q(0.95),
      p99: q(0.99),
    };
  }
}

/** Prometheus text exposition (version 0.0.4) of a stats snapshot. */
export function toPrometheus(stats: CacheStats): string {
  const lines: string[] = [];
  const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
    lines.push(`# HELP edgecache_${name} ${help}`, `# TYPE edgecache_${name} ${type}`);
    for (const [labels, v] of samples) lines.push(`edgecache_${name}${labels} ${v}`);
  };
  metric("hits_total", "counter", "Reads served fresh from a tier.", [["", stats.hits]]);
  metric("stale_hits_total", "counter", "Reads served stale.", [["", stats.staleHits]]);
  metric("misses_total", "counter", "Reads that went to the source.", [["", stats.misses]]);
  metric("loads_total", "counter", "Source loads.", [["", stats.loads]]);
  metric("load_errors_total", "counter", "Failed source loads.", [["", stats.loadErrors]]);
  metric("fenced_total", "counter", "Loads not stored because a write overlapped.", [
    ["", stats.fenced],
  ]);
  metric("writes_total", "counter", "Writes applied to the cache.", [["", stats.writes]]);
  metric("invalidations_total", "counter", "Keys invalidated.", [["", stats.invalidations]]);
  metric("rehydrations_total", "counter", "Background refetches.", [["", stats.rehydrations]]);
  metric("patches_total", "counter", "Entries patched in place by writes.", [["", stats.patches]]);
  metric("indexed_keys", "gauge", "Keys in the dependency index.", [["", stats.indexedKeys]]);
  metric("not_found_entries", "gauge", "Cached 404 and 410 responses held.", [
    ["", stats.notFound.entries],
  ]);
  metric("not_found_evictions_total", "counter", "Cached 404s and 410s dropped by their quota.", [
    ["", stats.notFound.evictions],
  ]);
  metric("bypasses_total", "counter", "Reads sent to the source: no lease on the log.", [
    ["", stats.bypasses],
  ]);
  metric("refused_total", "counter", "Shared-tier entries refused by the log check.", [
    ["", stats.refused],
  ]);
  metric("log_resets_total", "counter", "Times the node missed log records.", [["", stats.resets]]);
  metric("log_position", "gauge", "The last change-log record this node applied.", [
    ["", stats.log.seq],
  ]);
  metric("lease", "gauge", "1 while the node may serve from cache (it hears the log).", [
    ["", stats.log.lease ? 1 : 0],
  ]);
  metric("log_failures_total", "counter", "Failed requests to the change log's server.", [
    ["", stats.log.failures],
  ]);
  const tier = (pick: (t: TierStats) => number | undefined): [string, number][] =>
    stats.tiers.flatMap((t) => {
      const v = pick(t);
      return v === undefined ? [] : [[`{tier="${t.name}"}`, v] as [string, number]];
    });
  metric(
    "tier_hits_total",
    "counter",
    "Hits per tier.",
    tier((t) => t.hits),
  );
  metric(
    "tier_misses_total",
    "counter",
    "Misses per tier.",
    tier((t) => t.misses),
  );
  metric(
    "tier_errors_total",
    "counter",
    "Failed operations per tier.",
    tier((t) => t.errors),
  );
  metric(
    "tier_entries",
    "gauge",
    "Entries per tier.",
    tier((t) => t.entries),
  );
  metric(
    "tier_bytes",
    "gauge",
    "Bytes per tier.",
    tier((t) => t.bytes),
  );
  metric(
    "tier_evictions_total",
    "counter",
    "Evictions per tier.",
    tier((t) => t.evictions),
  );
  const l = stats.sourceLatencyMs;
  metric("source_latency_ms", "summary", "Source load latency in milliseconds.", [
    ['{quantile="0.5"}', l.p50],
    ['{quantile="0.95"}', l.p95],
    ['{quantile="0.99"}', l.p99],
    ["_count", l.count],
    ["_sum", l.mean * l.count],
  ]);
  return `${lines.join("\n")}\n`;
}
