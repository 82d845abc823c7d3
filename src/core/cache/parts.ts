import type { ChangeLog } from "../change-log/contract.ts";
import { type Costs, newCosts } from "../cost.ts";
import { DependencyIndex } from "../deps/index.ts";
import { type PlanSchema, planWrite } from "../deps/planner.ts";
import { NegativeQuota } from "../entries/negative.ts";
import { PendingRemovals } from "../entries/removal.ts";
import { WriteFence } from "../fence/fence.ts";
import { RecentChanges } from "../fence/recent-changes.ts";
import { rateLimited } from "../report.ts";
import { type CacheObserver, LatencyRecorder } from "../stats.ts";
import { isEvicting } from "../store.ts";
import { Applier } from "./apply.ts";
import { Background, ReloadQueue } from "./background.ts";
import { type Counters, newCounters } from "./counters.ts";
import { Entries, MAX_TRACKED_TIERS, strongEtag, syncEtag } from "./entries.ts";
import { HitCheck } from "./hit-check.ts";
import { Loads } from "./loads.ts";
import type { Settings } from "./options.ts";
import { Reads } from "./reads.ts";
import { ReloadClaims } from "./reload-claims.ts";
import { TierStack } from "./tiers.ts";
import type { CacheOptions, WriteHooks } from "./types.ts";

/**
 * The default size of a summary a shared log keeps (each array folded to at most this
 * many buckets): what a log stores and sends to every starting node stays under about
 * 0.5 MB however much this node keeps for itself.
 */
const SHARED_HISTORY_BUCKETS = 1 << 14;

/**
 * What the facade holds: the cache's state and its modules. Only the facade and its rooms
 * (values.ts, writes.ts, engine-stats.ts) see it; each module is given what it uses when
 * the cache is made (see its `...Deps`).
 */
export interface Parts {
  readonly tiers: TierStack;
  readonly index: DependencyIndex;
  readonly indexBytes: { readonly max: number; evictions: number };
  readonly negative: NegativeQuota;
  readonly fence: WriteFence;
  readonly log: ChangeLog;
  readonly counters: Counters;
  /** What requests cost the shared server, by kind, and the writes this node made. */
  readonly costs: Costs;
  readonly written: { count: number };
  readonly latency: LatencyRecorder;
  readonly observer: CacheObserver | undefined;
  readonly recent: RecentChanges;
  readonly background: Background;
  readonly reloads: ReloadQueue;
  readonly report: ReturnType<typeof rateLimited>;
  readonly enabled: boolean;
  now(): number;
  /** Tiers [0, end) of a value's `tiers` count (validated already); all by default. */
  end(tiers: number | undefined): number;
  /** The one hit check, shared with the reads through the tiers. */
  readonly hits: HitCheck;
  readonly entries: Entries;
  readonly loads: Loads;
  readonly reads: Reads;
  readonly applier: Applier;
}

/**
 * Makes the cache's modules and wires them: each is given what it uses; loads and reads
 * call each other through the one function each needs of the other (made below, called
 * only once both exist). The cache then follows `log`, and forgets what evicting tiers
 * evict.
 */
export function assembledParts(
  options: CacheOptions,
  set: Settings,
  log: ChangeLog,
  engine: { hooks: () => WriteHooks; planSchema: () => PlanSchema },
): Parts {
  const { hooks, planSchema } = engine;
  const now = options.now ?? Date.now;
  const logger = options.logger ?? { warn: (m, e) => console.warn(m, e ?? "") };
  const report = rateLimited(logger, () => performance.now());
  const background = new Background(options.schedule);
  // A registration stays while a tier may hold its entry. The first tier always counts:
  // what it holds is served unchecked. A lower tier counts when it reports its evictions;
  // one that does not (Redis) needs none, since what is read from it is checked against
  // the log. So the index is bounded by the bounds of the tiers that keep one.
  let tracked = 1;
  options.tiers.forEach((tier, i) => {
    if (isEvicting(tier) && i < MAX_TRACKED_TIERS) tracked |= 1 << i;
  });
  const costs = newCosts();
  const idle = costs.background;
  const tiers = new TierStack(options.tiers, report, idle);
  const index = new DependencyIndex();
  const negative = new NegativeQuota(set.maxNegative);
  const { enabled, policy } = set;
  const fence = new WriteFence(
    set.fenceOps,
    (event, lookup) => planWrite(event, planSchema(), lookup, policy),
    () => policy,
  );
  const counters = newCounters();
  const latency = new LatencyRecorder();
  const { observer } = options;
  const pending = new PendingRemovals();
  const reloads = new ReloadQueue(background, set.rehydrate?.concurrency ?? 1, report);
  const recent = new RecentChanges();
  const indexBytes = { max: set.indexMaxBytes, evictions: 0 };
  const end = (n: number | undefined) =>
    n === undefined ? tiers.length : Math.min(n, tiers.length);
  const hits = new HitCheck({ enabled, log, pending, tiers });
  const claims = new ReloadClaims(log);
  const etagNow = options.sha256 && tiers.front?.byReference ? syncEtag(options.sha256) : undefined;
  const entries = new Entries({
    claims,
    tiers,
    index,
    indexBytes,
    negative,
    background,
    pending,
    counters,
    enabled,
    ttl: set.ttl,
    swr: set.swr,
    tracked,
    now,
    etag: etagNow ?? strongEtag,
    ...(etagNow && { etagNow }),
  });
  const loads: Loads = new Loads({
    entries,
    tiers,
    log,
    fence,
    background,
    counters,
    latency,
    observer,
    enabled,
    hooks,
    end,
    idle,
    lookup: (key) => reads.lookup(key),
  });
  const reads: Reads = new Reads({
    hits,
    claims,
    tiers,
    log,
    fence,
    index,
    entries,
    background,
    counters,
    latency,
    observer,
    report,
    policy,
    idle,
    now,
    hooks,
    planSchema,
    storeLoaded: (key, init, since, options) => loads.storeLoaded(key, init, since, options),
  });
  const applier = new Applier({
    log,
    claims,
    fence,
    index,
    tiers,
    entries,
    loads,
    reloads,
    recent,
    background,
    pending,
    counters,
    report,
    policy,
    rehydrate: set.rehydrate,
    idle,
    now,
    hooks,
    planSchema,
  });
  const e: Parts = {
    tiers,
    index,
    indexBytes,
    negative,
    fence,
    log,
    counters,
    costs,
    written: { count: 0 },
    latency,
    observer,
    recent,
    background,
    reloads,
    report,
    enabled,
    now,
    end,
    hits,
    entries,
    loads,
    reads,
    applier,
  };
  options.tiers.forEach((tier, i) => {
    if (!isEvicting(tier) || i >= MAX_TRACKED_TIERS) return;
    tier.onEvict((key) => {
      if (e.index.release(key, 1 << i)) e.negative.forget(key);
    });
  });
  e.log.follow(
    {
      apply: (record) => e.applier.apply(record),
      reset: (start) => e.applier.reset(start),
      history: (maxBuckets = SHARED_HISTORY_BUCKETS) => e.fence.history(true, maxBuckets),
    },
    costs.following,
  );
  return e;
}
