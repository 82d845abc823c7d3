import type { CostKind } from "./cost.ts";

/**
 * The share of reads the cache answered: `hits / (hits + misses)`, between 0 and 1, or null
 * before any read (no reads is no rate; 0 would say every read missed). The one definition
 * every stats report uses (the engine's, each tier's, the query caches', the CLI's, the
 * dashboard's charts). Self-contained: the dashboard's page runs its source as it is.
 */
export function hitRate(hits: number, misses: number): number | null {
  const reads = hits + misses;
  return reads > 0 ? hits / reads : null;
}

/**
 * The engine's hit rate: reads answered from a tier (fresh or stale) over every read, a
 * bypass (caching off, no lease) counted with the misses since the source answered it.
 */
export function readHitRate(s: {
  hits: number;
  staleHits: number;
  misses: number;
  bypasses: number;
}): number | null {
  return hitRate(s.hits + s.staleHits, s.misses + s.bypasses);
}

/** Counters the engine keeps; `Cache.stats()` returns a snapshot. */
export interface TierStats {
  name: string;
  hits: number;
  misses: number;
  /** This tier's `hits / (hits + misses)`, null before it was asked (see `hitRate`). */
  hitRate: number | null;
  errors: number;
  /**
   * Reads that did not ask this tier because it is far: a shared tier whose reads lately
   * took longer than a load from the source (see `Reads`).
   */
  skipped: number;
  /**
   * Writes that fail on this tier now (`{ set: "SQLITE_FULL" }`): the failure's code by
   * operation, until one of them succeeds again. Reads may still answer.
   */
  failing?: Record<string, string>;
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
  /** Reads sent to the source without the cache: caching is off, or this node's lease had lapsed. */
  bypasses: number;
  /**
   * Reads answered from the cache over all reads: `(hits + staleHits) / (hits + staleHits +
   * misses + bypasses)`, between 0 and 1; null before the first read (see `hitRate`).
   */
  hitRate: number | null;
  /** false when caching is off (CacheOptions.enabled, EDGECACHE_CACHE=off on Workers). */
  enabled: boolean;
  /** Source loads (misses and refreshes), failed loads, and loads not stored by the write fence. */
  loads: number;
  loadErrors: number;
  fenced: number;
  /** Entries read from a shared tier and refused: a change since their load concerns them. */
  refused: number;
  /** Entries read from a shared tier and brought up to date by patching them with the changes since their load. */
  replayed: number;
  /**
   * Shared-tier copies refused, then served from the reload another node made for all
   * (it claimed the key's load; this node waited for its copy instead of loading too).
   */
  awaited: number;
  writes: number;
  /** Keys removed by invalidation (writes and manual). */
  invalidations: number;
  rehydrations: number;
  /** Entries a write changed in place instead of invalidating them. */
  patches: number;
  /**
   * Patched entries this node copied into the shared tiers for the other nodes (the
   * writer's patches, by the writer), so they find the new version there without a load.
   */
  patchesShared: number;
  /** Times this node missed log records it could not apply, and dropped its memory tier. */
  resets: number;
  /**
   * Changes change capture read (from this node's drain or another's) that this node has
   * applied from the log: 0 where nothing follows capture.
   */
  capturedApplied: number;
  indexedKeys: number;
  /** The dependency index: its keys, its heap as estimated, its budget, and keys it dropped to keep within it. */
  index: { keys: number; bytes: number; maxBytes: number; evictions: number };
  /** Cached negative results (404, 410) held, their quota, and how many the quota dropped. */
  notFound: { entries: number; maxEntries: number; evictions: number };
  /**
   * The change log: its kind, this node's position, whether it may serve from cache, and
   * failed requests to the log's server; `node`: this node's name in a shared log (what a
   * manifest's `keeper` names).
   */
  log: { name: string; node?: string; seq: number; lease: boolean; failures: number };
  sourceLatencyMs: { count: number; mean: number; p50: number; p95: number; p99: number };
  tiers: TierStats[];
  /**
   * What this node sent to the server the nodes share (Redis: its shared tier and its log),
   * counted by the node as it sends (see Cost): commands and round trips waited, by kind
   * of work, and the requests of each kind it served (hits fresh or stale, misses, writes
   * and invalidations it made: each write of a group that shares one record counts). Following (the log's reads and lease) and background work
   * (shared-tier deletes, rehydration, refreshes) serve no request of their own: divide
   * them by all requests. Zero where no store or log talks to such a server.
   */
  redis: {
    commands: Record<CostKind, number>;
    trips: Record<CostKind, number>;
    requests: Record<"hit" | "miss" | "write", number>;
  };
}

/**
 * Told how long each read and each source load took, for latency histograms (the Node
 * adapter's prom-client metrics). `read` runs on the hit path: it must be cheap.
 */
export interface CacheObserver {
  /** A read answered by `tier` (fresh or stale) after `seconds`. */
  read(tier: string, seconds: number): void;
  /** A source load that took `seconds`; `failed` when it threw. */
  load(seconds: number, failed: boolean): void;
}

/** Keeps the last `capacity` samples for quantiles; cheap enough for every load. */
export class LatencyRecorder {
  #samples: number[] = [];
  #next = 0;
  #count = 0;
  #sum = 0;
  #recent: number | undefined;

  constructor(private readonly capacity = 1024) {}

  record(ms: number): void {
    this.#count++;
    this.#sum += ms;
    // An exponential mean over about the last 20 samples: what a load costs now, in O(1).
    this.#recent = this.#recent === undefined ? ms : this.#recent + (ms - this.#recent) / 20;
    if (this.#samples.length < this.capacity) this.#samples.push(ms);
    else this.#samples[this.#next] = ms;
    this.#next = (this.#next + 1) % this.capacity;
  }

  /** What a sample has cost lately (ms), undefined before the first. */
  get recent(): number | undefined {
    return this.#recent;
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

/** One metric of a stats snapshot, as Prometheus names it. */
export interface StatsFamily {
  /** Without the `edgecache_` prefix. */
  name: string;
  type: "counter" | "gauge" | "summary";
  help: string;
  /** Label sets and values; a summary's samples carry `quantile`, `_count` and `_sum`. */
  samples: { labels?: Record<string, string>; suffix?: string; value: number }[];
}

/**
 * The snapshot as metric families: one table that `toPrometheus` renders as text and a
 * runtime's metrics client (prom-client on Node) exposes beside its histograms.
 */
export function statsFamilies(stats: CacheStats): StatsFamily[] {
  const one = (
    name: string,
    type: StatsFamily["type"],
    help: string,
    value: number,
  ): StatsFamily => ({ name, type, help, samples: [{ value }] });
  const tier = (
    name: string,
    type: StatsFamily["type"],
    help: string,
    pick: (t: TierStats) => number | undefined,
  ): StatsFamily => ({
    name,
    type,
    help,
    samples: stats.tiers.flatMap((t) => {
      const value = pick(t);
      return value === undefined ? [] : [{ labels: { tier: t.name }, value }];
    }),
  });
  const byKind = (name: string, help: string, values: Record<string, number>): StatsFamily => ({
    name,
    type: "counter",
    help,
    samples: Object.entries(values).map(([kind, value]) => ({ labels: { kind }, value })),
  });
  const l = stats.sourceLatencyMs;
  return [
    one("hits_total", "counter", "Reads served fresh from a tier.", stats.hits),
    one("stale_hits_total", "counter", "Reads served stale.", stats.staleHits),
    one("misses_total", "counter", "Reads that went to the source.", stats.misses),
    {
      name: "hit_rate",
      type: "gauge",
      help: "Reads answered from the cache over all reads since start (none before the first read).",
      samples: stats.hitRate === null ? [] : [{ value: stats.hitRate }],
    },
    one("loads_total", "counter", "Source loads.", stats.loads),
    one("load_errors_total", "counter", "Failed source loads.", stats.loadErrors),
    one("fenced_total", "counter", "Loads not stored because a write overlapped.", stats.fenced),
    one("writes_total", "counter", "Writes applied to the cache.", stats.writes),
    one("invalidations_total", "counter", "Keys invalidated.", stats.invalidations),
    one("rehydrations_total", "counter", "Background refetches.", stats.rehydrations),
    one("patches_total", "counter", "Entries patched in place by writes.", stats.patches),
    one(
      "captured_applied_total",
      "counter",
      "Changes change capture read (by any node) that this node applied.",
      stats.capturedApplied,
    ),
    one(
      "patches_shared_total",
      "counter",
      "Patched entries copied into the shared tiers for the other nodes.",
      stats.patchesShared,
    ),
    one("indexed_keys", "gauge", "Keys in the dependency index.", stats.indexedKeys),
    one("not_found_entries", "gauge", "Cached 404 and 410 responses held.", stats.notFound.entries),
    one(
      "not_found_evictions_total",
      "counter",
      "Cached 404s and 410s dropped by their quota.",
      stats.notFound.evictions,
    ),
    one(
      "bypasses_total",
      "counter",
      "Reads sent to the source: caching off, or no lease on the log.",
      stats.bypasses,
    ),
    one(
      "enabled",
      "gauge",
      "0 while caching is off: every read goes to the source.",
      stats.enabled ? 1 : 0,
    ),
    one("refused_total", "counter", "Shared-tier entries refused by the log check.", stats.refused),
    one(
      "replayed_total",
      "counter",
      "Shared-tier entries patched up to date with the changes since their load.",
      stats.replayed,
    ),
    one(
      "awaited_total",
      "counter",
      "Shared-tier entries refused, then served from the reload another node claimed.",
      stats.awaited,
    ),
    one("log_resets_total", "counter", "Times the node missed log records.", stats.resets),
    one("log_position", "gauge", "The last change-log record this node applied.", stats.log.seq),
    one(
      "lease",
      "gauge",
      "1 while the node may serve from cache (it hears the log).",
      stats.log.lease ? 1 : 0,
    ),
    one(
      "log_failures_total",
      "counter",
      "Failed requests to the change log's server.",
      stats.log.failures,
    ),
    byKind(
      "redis_commands_total",
      "Commands this node sent to Redis (shared tier and log), by kind of work.",
      stats.redis.commands,
    ),
    byKind(
      "redis_trips_total",
      "Round trips to Redis this node waited for, by kind of work.",
      stats.redis.trips,
    ),
    byKind(
      "redis_requests_total",
      "Requests this node served, by kind: divide redis_commands_total by it.",
      stats.redis.requests,
    ),
    tier("tier_hits_total", "counter", "Hits per tier.", (t) => t.hits),
    tier(
      "tier_skipped_total",
      "counter",
      "Reads that skipped a far tier (slower lately than a load from the source).",
      (t) => t.skipped,
    ),
    tier("tier_misses_total", "counter", "Misses per tier.", (t) => t.misses),
    tier(
      "tier_hit_rate",
      "gauge",
      "Hits over hits and misses per tier since start (none before it was asked).",
      (t) => t.hitRate ?? undefined,
    ),
    tier("tier_errors_total", "counter", "Failed operations per tier.", (t) => t.errors),
    tier("tier_entries", "gauge", "Entries per tier.", (t) => t.entries),
    tier("tier_bytes", "gauge", "Bytes per tier.", (t) => t.bytes),
    tier("tier_evictions_total", "counter", "Evictions per tier.", (t) => t.evictions),
    {
      name: "source_latency_ms",
      type: "summary",
      help: "Source load latency in milliseconds (the last 1024 loads).",
      samples: [
        { labels: { quantile: "0.5" }, value: l.p50 },
        { labels: { quantile: "0.95" }, value: l.p95 },
        { labels: { quantile: "0.99" }, value: l.p99 },
        { suffix: "_count", value: l.count },
        { suffix: "_sum", value: l.mean * l.count },
      ],
    },
  ];
}

/** Prometheus text exposition (version 0.0.4) of a stats snapshot, and `extra` families. */
export function toPrometheus(stats: CacheStats, extra: readonly StatsFamily[] = []): string {
  const lines: string[] = [];
  for (const f of [...statsFamilies(stats), ...extra]) {
    lines.push(`# HELP edgecache_${f.name} ${f.help}`, `# TYPE edgecache_${f.name} ${f.type}`);
    for (const { labels, suffix = "", value } of f.samples) {
      const set = labels
        ? `{${Object.entries(labels)
            .map(([k, v]) => `${k}="${v}"`)
            .join(",")}}`
        : "";
      lines.push(`edgecache_${f.name}${suffix}${set} ${value}`);
    }
  }
  return `${lines.join("\n")}\n`;
}
