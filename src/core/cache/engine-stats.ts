import { COST_KINDS } from "../cost.ts";
import { type CacheStats, readHitRate } from "../stats.ts";
import type { Parts } from "./parts.ts";

/** The cache's `stats()`: its counters, index, negative quota, log, tiers and costs. */
export function engineStats(e: Parts): CacheStats {
  const now = e.now();
  e.index.sweep(now);
  return {
    ...e.counters,
    hitRate: readHitRate(e.counters),
    capturedApplied: e.applier.captured,
    enabled: e.enabled,
    indexedKeys: e.index.size,
    index: {
      keys: e.index.size,
      bytes: e.index.bytes,
      maxBytes: e.indexBytes.max,
      evictions: e.indexBytes.evictions,
    },
    notFound: {
      entries: e.negative.size,
      maxEntries: e.negative.max,
      evictions: e.negative.evictions,
    },
    log: {
      name: e.log.name,
      ...(e.log.node !== undefined && { node: e.log.node }),
      seq: e.fence.position.seq,
      lease: e.log.trusted(),
      failures: e.log.failures,
    },
    sourceLatencyMs: e.latency.summary(),
    tiers: e.tiers.summary(),
    redis: costStats(e),
  };
}

/** What requests cost the shared server, by kind, and how many requests of each there were. */
function costStats(e: Parts): CacheStats["redis"] {
  const { costs, counters } = e;
  const commands = {} as CacheStats["redis"]["commands"];
  const trips = {} as CacheStats["redis"]["trips"];
  for (const kind of COST_KINDS) {
    commands[kind] = costs[kind].commands;
    trips[kind] = costs[kind].trips;
  }
  const requests = {
    hit: counters.hits + counters.staleHits,
    miss: counters.misses,
    write: e.written.count,
  };
  return { commands, trips, requests };
}
