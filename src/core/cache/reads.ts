import type { ChangeLog, LogPosition } from "../change-log/contract.ts";
import type { Cost } from "../cost.ts";
import type { DependencyIndex } from "../deps/index.ts";
import {
  type DependencyLookup,
  type InvalidationPolicy,
  type PlanSchema,
  planWrite,
  type WriteEvent,
} from "../deps/planner.ts";
import { type CacheEntry, madeEntry } from "../entries/entry.ts";
import { extend } from "../entries/extend.ts";
import type { WriteFence } from "../fence/fence.ts";
import type { rateLimited } from "../report.ts";
import type { CacheObserver, LatencyRecorder } from "../stats.ts";
import { RecentTimes } from "../time/recent-times.ts";
import type { Background } from "./background.ts";
import type { Counters } from "./counters.ts";
import { counted, type Entries } from "./entries.ts";
import type { HitCheck } from "./hit-check.ts";
import type { StoreLoaded } from "./loads.ts";
import type { ReloadClaims } from "./reload-claims.ts";
import { FAILED, type TierStack } from "./tiers.ts";
import type { EntryInit, Found, WriteHooks } from "./types.ts";

/**
 * How long a node whose shared-tier copy is refused waits for the node that claimed its
 * reload (another reader, or the rehydration after the write) before loading it itself:
 * a load takes milliseconds, so most waits end with the new copy, and one that does not
 * costs a miss, as without waiting. At least RELOAD_WAIT_MS; longer where loads and tier
 * reads take longer lately (a loaded machine), or most waits there would end in a second load.
 * The winner says when its copy is in (ChangeLog.claimOrAwait): the waiter reads the tier
 * once then, not every few ms meanwhile.
 */
const RELOAD_WAIT_MS = 50;
/**
 * A tier whose reads take longer than this lately (and longer than a load) is far: another
 * region's, not this one's. Well above a busy loopback's or a region's round trip.
 */
const FAR_TIER_MS = 20;
/** A far tier is still asked one read in this many, so what its reads take stays known. */
const FAR_TIER_SAMPLE = 16;

/**
 * What tier `i`'s last reads took (ms): the least is its distance (a loaded machine delays
 * some reads by tens of ms, its event loop late, but none below the distance), the mean
 * what a read costs now.
 */
type Trip = Pick<RecentTimes, "least" | "mean">;
const NO_TRIP: Trip = new RecentTimes();

/**
 * Whether a tier whose least read lately took `least` ms is far: longer than FAR_TIER_MS
 * and than a load from the source lately (`load`, unknown before the first).
 */
function isFar(least: number, load: number | undefined): boolean {
  return load !== undefined && least > Math.max(load, FAR_TIER_MS);
}
/** A lookup that finds nothing: planning against it tells only whether a write is exact. */
const NO_DEPENDENCIES: DependencyLookup = { keysForTag: () => [], listsOn: () => [] };

/** What `Reads` is given when the cache is made. */
export interface ReadsDeps {
  /** Whether a key may be read at all, and from which tiers (shared with `Cache.peek`). */
  readonly hits: HitCheck;
  readonly tiers: Pick<
    TierStack,
    "list" | "length" | "shared" | "get" | "getMany" | "stats" | "deleteIn" | "checked"
  >;
  readonly log: Pick<ChangeLog, "freshen" | "claimOrAwait" | "nodes">;
  /** Reloads this node claimed for all: their waiters are told once the copy is in. */
  readonly claims: Pick<ReloadClaims, "won" | "takeReload">;
  readonly fence: Pick<WriteFence, "position" | "changesFor" | "conflicts">;
  readonly index: Pick<DependencyIndex, "hold" | "add">;
  readonly entries: Pick<Entries, "build" | "held" | "admit" | "trimIndex" | "storeIn" | "remove">;
  readonly background: Pick<Background, "run">;
  readonly counters: Pick<Counters, "refused" | "replayed" | "awaited">;
  readonly latency: Pick<LatencyRecorder, "recent">;
  readonly observer: CacheObserver | undefined;
  readonly report: ReturnType<typeof rateLimited>;
  readonly policy: InvalidationPolicy;
  /** Where a read counts when no request's cost is given (see Cost). */
  readonly idle: Cost;
  now(): number;
  /** The write hooks now (a copy from a shared tier is replayed through `patch`). */
  hooks(): WriteHooks;
  /** The schema the planner uses. */
  planSchema(): PlanSchema;
  /** Stores a replayed entry as a load that began at this node's position (`Loads.storeLoaded`). */
  storeLoaded: StoreLoaded;
}

/**
 * Reads through the tiers below the hit path: the first tier that holds a servable entry
 * answers, and what comes from below this node's memory is checked against the change log
 * since the position its load began at (another node, or an earlier process, wrote it),
 * brought up to date by patches where they can tell, or refused; accepted entries are
 * copied into the tiers above.
 */
export class Reads {
  readonly #e: ReadsDeps;
  /** Per tier, what its last reads took (ms). */
  readonly #trips: RecentTimes[] = [];
  /** Per tier, reads that found it far (see #far). */
  readonly #farReads: number[] = [];

  constructor(deps: ReadsDeps) {
    this.#e = deps;
  }

  /**
   * The entry of `key` in the first of tiers [0, end) that holds a servable one. `cost`:
   * where what the read sends counts (undefined: the background's).
   */
  async lookup(
    key: string,
    end = this.#e.tiers.length,
    cost = this.#e.idle,
  ): Promise<Found | undefined> {
    const { hits } = this.#e;
    if (!hits.open(key)) return undefined;
    const now = this.#e.now();
    const started = this.#e.observer ? performance.now() : 0;
    for (let i = 0; i < end; i++) {
      if (!hits.asks(i, key) || this.#far(i)) continue;
      // Only a shared tier's reads are timed (see #awaitReload): not this node's memory hits.
      const timed = this.#e.tiers.list[i]!.shared === true;
      const asked = timed ? performance.now() : 0;
      const entry = await this.#e.tiers.get(i, key, cost);
      if (entry === FAILED) continue;
      const trip = timed ? this.#timed(i, asked) : NO_TRIP;
      const accepted = await this.#accept(i, key, entry, now, started, trip, cost);
      if (accepted) return { entry: madeEntry(accepted), tier: this.#e.tiers.list[i]!.name };
    }
    return undefined;
  }

  /** lookup for several keys: each tier is asked for all the keys still missing at once. */
  async lookupMany(
    keys: readonly string[],
    end: number,
    cost = this.#e.idle,
  ): Promise<(Found | undefined)[]> {
    const found = new Map<string, Found>();
    const { hits } = this.#e;
    let missing = [...new Set(keys)].filter((k) => hits.open(k));
    const now = this.#e.now();
    const started = this.#e.observer ? performance.now() : 0;
    for (let i = 0; i < end && missing.length > 0; i++) {
      const asked = missing.filter((k) => hits.asks(i, k));
      if (asked.length === 0 || this.#far(i)) continue;
      const sent = performance.now();
      const entries = await this.#e.tiers.getMany(i, asked, cost);
      if (entries === FAILED) continue;
      const trip = this.#timed(i, sent);
      const accepted = await Promise.all(
        asked.map((key, j) => this.#accept(i, key, entries[j], now, started, trip, cost)),
      );
      const name = this.#e.tiers.list[i]!.name;
      asked.forEach((key, j) => {
        if (accepted[j]) found.set(key, { entry: accepted[j], tier: name });
      });
      missing = missing.filter((key) => !found.has(key));
    }
    return keys.map((key) => found.get(key));
  }

  /**
   * Whether this read skips tier `i` because it is far: each of its last 16 reads took
   * longer than FAR_TIER_MS and than a load from the source lately (another region's Redis,
   * beside a database in this one), so asking it costs a read more than a miss there
   * saves. One read in FAR_TIER_SAMPLE asks it all the same, so a link that comes close
   * again is noticed. What is loaded still goes into the tier, for the nodes near it.
   */
  #far(i: number): boolean {
    if (this.#e.tiers.list[i]!.shared !== true) return false;
    const trips = this.#trips[i];
    // The least of its recent reads: a node busy enough to answer every read late (its
    // event loop behind) finds a near tier near all the same, and a far one is never faster.
    if (trips === undefined || !trips.full) return false;
    if (!isFar(trips.least(), this.#e.latency.recent)) return false;
    this.#farReads[i] = (this.#farReads[i] ?? 0) + 1;
    if (this.#farReads[i] % FAR_TIER_SAMPLE === 0) return false;
    this.#e.tiers.stats(i).skipped++;
    return true;
  }

  /** Records a read of tier `i` sent at `sent`; what its reads take lately. */
  #timed(i: number, sent: number): Trip {
    const trips = this.#trips[i] ?? new RecentTimes();
    this.#trips[i] = trips;
    trips.add(performance.now() - sent);
    return trips;
  }

  /**
   * What of tier `i`'s answer for `key` may be served, counted in the tier's stats: a live
   * entry and, from below this node's memory, one valid against the log (brought up to date
   * by the write events since its position where they can patch it) and copied into the
   * tiers above. `trip`: what tier `i`'s reads take lately; undefined: do not wait for
   * another node's reload of a refused copy.
   */
  async #accept(
    i: number,
    key: string,
    entry: CacheEntry | undefined,
    now: number,
    started: number,
    trip: Trip | undefined,
    cost: Cost,
  ): Promise<CacheEntry | undefined> {
    const tier = this.#e.tiers.list[i]!;
    const stats = this.#e.tiers.stats(i);
    if (!this.#e.hits.live(entry, now, "stale")) {
      // Gone from a shared tier since a record invalidated it here: one load for all.
      const reload = tier.shared === true && trip !== undefined;
      const reloaded = reload
        ? await this.#awaitReload(i, key, now, started, trip, cost, "absent")
        : undefined;
      if (reloaded) return reloaded;
      stats.misses++;
      return undefined;
    }
    if (this.#e.tiers.checked(i)) {
      // Not this node's memory (a lower tier, or a first one that is shared or kept across
      // starts): another node (or an earlier process) may have written it, so it is
      // checked against the log since the position its load began at; loaded further
      // along the log than this node, after this node has caught up where it may lag the
      // head (ChangeLog.freshen).
      const at = this.#e.fence.position;
      if (entry.position?.log === at.log && entry.position.seq > at.seq) {
        await this.#e.log.freshen?.(cost).catch(() => {});
      }
      const changes =
        entry.position === undefined
          ? "unknown"
          : this.#e.fence.changesFor(entry.position, key, entry);
      if (changes !== "none") {
        const replayed =
          changes === "unknown" ? undefined : await this.#replay(key, entry, changes);
        if (!replayed) {
          const reloaded =
            trip === undefined
              ? undefined
              : await this.#awaitReload(i, key, now, started, trip, cost, entry.position);
          if (reloaded) return reloaded;
          stats.misses++;
          this.#e.counters.refused++;
          // Not when another node loads it: this delete could land after its new copy.
          if (reloaded === undefined) {
            this.#e.background.run(this.#e.tiers.deleteIn(i, [key]));
          }
          return undefined;
        }
        this.#e.counters.replayed++;
        stats.hits++;
        this.#e.observer?.read(tier.name, (performance.now() - started) / 1000);
        return replayed;
      }
      // This tier holds it, and the back-fill below writes the tiers above.
      const held = this.#e.entries.held(i + 1);
      counted(
        entry,
        this.#e.index.hold(key, held) ??
          this.#e.index.add(key, entry.tags, entry.lists ?? [], entry.staleUntil, held),
      );
      this.#e.entries.admit(key, entry);
      this.#e.entries.trimIndex([key]);
      // Back-fill the tiers above; check again after, since a write may land while an
      // asynchronous tier is being written.
      await this.#e.entries.storeIn([{ key, entry }], i, undefined, cost);
      if (!this.valid(key, entry)) {
        await this.#e.entries.remove(new Set([key]));
        stats.misses++;
        return undefined;
      }
    }
    stats.hits++;
    this.#e.observer?.read(tier.name, (performance.now() - started) / 1000);
    return entry;
  }

  /**
   * After shared tier `i`'s copy of `key` was refused (`refused`: its position), or found
   * gone ("absent") since a
   * record invalidated the key here: with other nodes on the log, one load for all (the
   * cluster's request coalescing). This node claims the key's reload by the record that
   * invalidated it here (else at its log position), the name the rehydration after that
   * record claims it by too, and the other nodes that held the key: winning,
   * it loads it itself (undefined: a miss, whose load goes to the shared tier); losing, it
   * waits for the winner's copy there (see RELOAD_WAIT_MS), and serves it if the log accepts
   * it (false when none came: a miss, but the winner's copy is not deleted).
   *
   * Waiting costs two more round trips to the tier (the claim, then reading the copy once
   * told it is in, or once the wait is over): a node far from the tier (`isFar` by its least read lately, `trip.least`) loads
   * the key itself instead, one more database read for a read answered that much sooner.
   * Near it, waiting saves the database a read.
   */
  async #awaitReload(
    i: number,
    key: string,
    now: number,
    started: number,
    trip: Trip,
    cost: Cost,
    refused: LogPosition | undefined | "absent",
  ): Promise<CacheEntry | false | undefined> {
    const { log } = this.#e;
    if (!this.#e.tiers.shared || !log.claimOrAwait || (log.nodes?.() ?? 1) <= 1) return undefined;
    // Named after the record that invalidated it here, if one did and the refused copy is
    // older than it: the rehydration's claim.
    const before = refused === "absent" ? undefined : refused;
    const invalidated = this.#e.claims.takeReload(key, before);
    // A copy that was never there (a key no record invalidated here) is loaded: a claim
    // would cost every cold miss a round trip.
    if (refused === "absent" && invalidated === undefined) return undefined;
    const load = this.#e.latency.recent;
    if (isFar(trip.least(), load)) return undefined;
    // The winner's work is a load and a write to the tier, then this node reads its copy: a
    // loaded machine takes longer for each, so the wait follows what they take lately.
    const work = (load ?? 0) + 3 * trip.mean();
    const name = invalidated ?? `${this.#e.fence.position.seq}:${key}`;
    const heard = await log.claimOrAwait(name, Math.max(RELOAD_WAIT_MS, 2 * work), cost);
    if (heard === "won") {
      this.#e.claims.won(key, name);
      return undefined;
    }
    // Told or not (a message may be lost), one look: what it finds is checked as any copy.
    const entry = await this.#e.tiers.get(i, key, cost);
    if (entry === FAILED || !entry || entry.position === undefined) return false;
    if (this.#e.fence.changesFor(entry.position, key, entry, true) !== "none") return false;
    const accepted = await this.#accept(i, key, entry, now, started, undefined, cost);
    if (!accepted) return false;
    this.#e.counters.awaited++;
    return accepted;
  }

  /**
   * An entry read from a shared tier, brought up to date by patching it with the write
   * events of each record since its position (`records`, in log order), as this node's
   * memory would have been patched had it held the entry all along: the same patch, without
   * `peek`, on records in commit order. The result stays in this node's memory, like every
   * patch. Undefined when a patch cannot tell, or a record applied meanwhile concerns it.
   */
  async #replay(
    key: string,
    entry: CacheEntry,
    records: readonly (readonly WriteEvent[])[],
  ): Promise<CacheEntry | undefined> {
    const { patch } = this.#e.hooks();
    if (!patch || this.#e.policy !== "exact") return undefined;
    const at = this.#e.fence.position;
    const schema = this.#e.planSchema();
    const now = this.#e.now();
    let current = entry;
    let init: EntryInit | undefined;
    for (const events of records) {
      // A write without the rows to plan it exactly is applied by table: no patch either.
      if (events.some((e) => planWrite(e, schema, NO_DEPENDENCIES, this.#e.policy).fallback)) {
        return undefined;
      }
      try {
        init = patch(key, current, events, undefined);
      } catch (err) {
        this.#e.report("patch", "[edgecache] [cache] patch failed; the entry is invalidated", err);
        return undefined;
      }
      if (!init) return undefined;
      // The patched entry keeps the expiry of the one it came from, as a patch in memory does.
      init = extend(init, {
        ttl: entry.freshUntil - now,
        staleWhileRevalidate: entry.staleUntil - entry.freshUntil,
      });
      current = await this.#e.entries.build(init, at);
    }
    // The records were picked by the original's tags and lists; a patch may have widened
    // them (a view's new row brings its joined rows, `orders@userId=…`): a record that
    // concerns the result only, and was left out, would be missing from it.
    const again = this.#e.fence.changesFor(entry.position!, key, current);
    if (again === "unknown") return undefined;
    if (again !== "none") {
      const replayed = new Set(records.map((events) => events[0]));
      if (again.some((events) => !replayed.has(events[0]))) return undefined;
    }
    const { entry: patched, stored } = await this.#e.storeLoaded(key, init!, at, {
      memoryOnly: true,
      exact: false,
    });
    return stored ? patched : undefined;
  }

  valid(key: string, entry: CacheEntry): boolean {
    return entry.position !== undefined && !this.#e.fence.conflicts(entry.position, key, entry);
  }
}
