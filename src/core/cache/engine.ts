import type { ChangeLog } from "../../log/contract.ts";
import type { DependencyIndex } from "../deps/index.ts";
import type { InvalidationPolicy, PlanSchema } from "../deps/planner.ts";
import type { WriteFence } from "../fence.ts";
import type { NegativeQuota } from "../negative.ts";
import type { RecentChanges } from "../recent-changes.ts";
import type { PendingRemovals } from "../removal.ts";
import type { rateLimited } from "../report.ts";
import type { CacheObserver, LatencyRecorder } from "../stats.ts";
import type { Applier } from "./apply.ts";
import type { Background, ReloadQueue } from "./background.ts";
import type { Entries } from "./entries.ts";
import type { Loads } from "./loads.ts";
import type { Settings } from "./options.ts";
import type { Reads } from "./reads.ts";
import type { TierStack } from "./tiers.ts";
import type { WriteHooks } from "./types.ts";

/** What the cache counts, reported by `stats()`. */
export function newCounters() {
  return {
    hits: 0,
    staleHits: 0,
    misses: 0,
    bypasses: 0,
    loads: 0,
    loadErrors: 0,
    fenced: 0,
    refused: 0,
    replayed: 0,
    awaited: 0,
    writes: 0,
    invalidations: 0,
    rehydrations: 0,
    patches: 0,
    patchesShared: 0,
    resets: 0,
  };
}

export type Counters = ReturnType<typeof newCounters>;

/**
 * The state one cache's modules share, and the modules themselves: the `Cache` facade
 * makes one and hands it to each. Every module owns one concern (entries in and out of the
 * tiers, loads, reads through the tiers, applying log records) and reaches the others only
 * through their methods here.
 */
export interface Engine {
  readonly tiers: TierStack;
  /** This node's registrations: tag to keys, lists per table. */
  readonly index: DependencyIndex;
  /** The index's budget of heap, and the keys it dropped to keep within it. */
  readonly indexBytes: { max: number; evictions: number };
  readonly negative: NegativeQuota;
  readonly fence: WriteFence;
  readonly log: ChangeLog;
  readonly counters: Counters;
  readonly latency: LatencyRecorder;
  readonly observer: CacheObserver | undefined;
  readonly recent: RecentChanges;
  readonly background: Background;
  readonly reloads: ReloadQueue;
  /** Keys a removal in progress has yet to delete everywhere; reads skip them. */
  readonly pending: PendingRemovals;
  readonly report: ReturnType<typeof rateLimited>;
  readonly policy: InvalidationPolicy;
  /** false: caching is off (CacheOptions.enabled), so nothing is stored or read from a tier. */
  readonly enabled: boolean;
  /** Default TTL and stale-while-revalidate window, ms. */
  readonly ttl: number;
  readonly swr: number;
  readonly rehydrate: Settings["rehydrate"];
  /** Tiers whose holding keeps a registration (a bit per tier): the first, and evicting ones. */
  readonly tracked: number;
  now(): number;
  /** The strong ETag of a body: synchronous where the runtime gave a SHA-256 (CacheOptions.sha256). */
  etag(body: Uint8Array): string | Promise<string>;
  hooks: WriteHooks;
  /** The schema the planner uses (a table fallback for every write until set). */
  planSchema(): PlanSchema;
  /** Tiers [0, end) of a value's `tiers` count (validated already); all by default. */
  end(tiers: number | undefined): number;
  readonly entries: Entries;
  readonly loads: Loads;
  readonly reads: Reads;
  readonly applier: Applier;
}
