import type {
  ChangeLog,
  ChangeOp,
  ChangeRecord,
  LogPosition,
  LogStart,
  WriteTurn,
} from "../change-log/contract.ts";
import type { Cost } from "../cost.ts";
import type { DependencyIndex } from "../deps/index.ts";
import type { InvalidationPolicy, PlanSchema, WriteEvent } from "../deps/planner.ts";
import { bodyLength, type CacheEntry } from "../entries/entry.ts";
import { extend } from "../entries/extend.ts";
import type { PendingRemovals } from "../entries/removal.ts";
import type { WriteFence } from "../fence/fence.ts";
import type { RecentChanges } from "../fence/recent-changes.ts";
import type { rateLimited } from "../report.ts";
import type { Background, ReloadQueue } from "./background.ts";
import type { Counters } from "./counters.ts";
import {
  type Entries,
  loadMs,
  markLoadMs,
  markUpkeep,
  readSinceStored,
  type Upkeep,
  upkeep,
} from "./entries.ts";
import type { Loads } from "./loads.ts";
import type { Settings } from "./options.ts";
import { planRecord } from "./record-plan.ts";
import type { ReloadClaims } from "./reload-claims.ts";
import type { TierStack } from "./tiers.ts";
import type { EntryInit, WriteHooks, WriteResult } from "./types.ts";

/** Results of recent records this node applied, kept for the appender to collect. */
const RECENT_RESULTS = 1024;
/**
 * Writes patch an entry at least this many times in a row with no read between them, and
 * after that while those patches took less time than the load that made it, up to
 * MOST_UNREAD_PATCHES; the next one removes it (see `#patches`). A body past
 * COLD_PATCH_BYTES is not patched even once unless it was read since it was stored.
 */
export const UNREAD_PATCHES = 8;
/**
 * The bound on the time rule: a clock that stands still while code runs (a Worker's, which
 * moves only on I/O) times every patch at 0, and would keep an entry nobody reads forever.
 */
export const MOST_UNREAD_PATCHES = 64;
export const COLD_PATCH_BYTES = 16 * 1024;

/** What the `Applier` is given when the cache is made. */
/** How `Applier.append` appends (see there). */
export interface AppendOptions {
  turn?: WriteTurn;
  settled?: boolean;
  placed?: (next?: WriteTurn) => void;
  wantsTurn?: () => boolean;
  cost?: Cost;
}

export interface ApplierDeps {
  readonly log: Pick<ChangeLog, "append" | "claim" | "nodes" | "shared">;
  /** Reloads this node claimed for all: their waiters are told once the copy is in. */
  readonly claims: Pick<ReloadClaims, "won" | "invalidated">;
  readonly fence: Pick<WriteFence, "record" | "reset" | "position">;
  /** This node's registrations, planned against and dropped on a reset. */
  readonly index: DependencyIndex;
  readonly tiers: Pick<
    TierStack,
    "front" | "shared" | "skips" | "delete" | "unindexed" | "clearFront"
  >;
  readonly entries: Pick<Entries, "remove">;
  readonly loads: Pick<Loads, "storePatched" | "shareMany">;
  readonly reloads: Pick<ReloadQueue, "push">;
  readonly recent: Pick<RecentChanges, "push">;
  readonly background: Pick<Background, "run">;
  /** Keys a removal in progress has yet to delete everywhere: not patched. */
  readonly pending: Pick<PendingRemovals, "has">;
  readonly counters: Pick<
    Counters,
    "writes" | "patches" | "patchesShared" | "rehydrations" | "resets" | "invalidations"
  >;
  readonly report: ReturnType<typeof rateLimited>;
  readonly policy: InvalidationPolicy;
  readonly rehydrate: Settings["rehydrate"];
  /** Where the claims and copies made after a record count (see Cost). */
  readonly idle: Cost;
  now(): number;
  /** The write hooks now: patches and the refetch that rehydrates. */
  hooks(): WriteHooks;
  /** The schema the planner uses. */
  planSchema(): PlanSchema;
}

/**
 * Applying the change log on this node: each record, in log order, is planned (`planRecord`)
 * and carried out: patches of cached responses where the record allows them, removal of
 * the rest from every tier, rehydration of hot keys, refills of the shared tiers; a reset
 * when the node missed records. The node that appended a record collects what applying it
 * did here.
 */
export class Applier {
  readonly #e: ApplierDeps;
  /**
   * What applying each recent record did, for the node that appended it to collect: once
   * this node's own tiers are done (`ready`), and once the shared tiers are too (`settled`).
   */
  readonly #results = new Map<
    number,
    { ready: Promise<WriteResult>; settled: Promise<WriteResult> }
  >();

  /**
   * Captured writes applied here from the log (ops marked `captured`), whichever node read
   * them from the change table: what this node's capture stats count as applied.
   */
  captured = 0;

  constructor(deps: ApplierDeps) {
    this.#e = deps;
  }

  /**
   * Appends ops and collects what applying them did here: once this node's tiers are done,
   * or with `settled`, once the shared tiers are too (for a caller that stores into them
   * next, or counts what they held). `turn`, `placed`, `wantsTurn`: see `ChangeLog.append`.
   * `cost`: where the append and its wait count.
   */
  async append(
    ops: readonly ChangeOp[],
    options: AppendOptions = {},
  ): Promise<WriteResult & { seq: number }> {
    const { turn, settled = false, placed, wantsTurn, cost } = options;
    const seq = await this.#e.log.append(ops, turn, placed, wantsTurn, cost);
    const results = this.#results.get(seq);
    this.#results.delete(seq);
    const result = await (settled ? results?.settled : results?.ready);
    return { keys: [], fallback: false, patched: 0, removed: 0, ...result, seq };
  }

  /**
   * Applies one record, in log order. Everything up to the removal from the first tier
   * happens before this returns (the memory tier deletes synchronously), so a read on this
   * node after it never sees what the record invalidated. Resolves once this node's tiers
   * are done; the shared tiers' deletes go on in the background.
   */
  apply(record: ChangeRecord): Promise<unknown> {
    // Logged before anything awaits, so a load that read the pre-write row sees it.
    this.#e.fence.record(record);
    for (const op of record.ops) if ("event" in op && op.captured) this.captured++;
    const applied = this.#applyOps(record);
    const ready = applied.then(({ clearing: _, ...result }) => result);
    const settled = applied.then(async ({ clearing, ...result }) => ({
      ...result,
      removed: Math.max(result.removed, await clearing),
    }));
    ready.catch(() => {}); // a failure is reported through `settled`, or to the appender
    this.#results.set(record.seq, { ready, settled });
    if (this.#results.size > RECENT_RESULTS) {
      const oldest = this.#results.keys().next().value!;
      this.#results.delete(oldest);
    }
    this.#e.background.run(settled);
    return ready;
  }

  async #applyOps(record: ChangeRecord): Promise<WriteResult & { clearing: Promise<number> }> {
    const { keys, events, prefixes, fallback, rules, named } = planRecord(
      record,
      this.#e.planSchema(),
      this.#e.index,
      this.#e.policy,
    );
    this.#e.counters.writes += events.length;
    // Patches are computed now, from what the first tier holds before the removal below;
    // they are stored like a load that began after the record, so the fence refuses one
    // that a later record overtakes. They stay in this node's memory: only it knows the
    // entry it patched was current.
    const at = this.#e.fence.position;
    const { patch, refetch, maintain } = this.#e.hooks();
    // Tiers other nodes read are the writer's to clean and refill: another node's delete
    // could come after a reload stored there, and reads check them against the log anyway.
    const foreign = record.own === false && this.#e.tiers.shared;
    // With other nodes on the log and a shared tier, the writer copies what it patched into
    // the shared tiers, and one node for all (a claim on the log) reloads hot keys there, so
    // that nodes whose memory did not hold them find the new version. Not for a node alone.
    const { log, idle, claims } = this.#e;
    const claim = log.claim
      ? async (key: string) => {
          const name = `${record.seq}:${key}`;
          const won = await log.claim!(name, idle);
          if (won) claims.won(key, name);
          return won;
        }
      : undefined;
    const sharing =
      claim && this.#e.tiers.shared && this.#e.log.nodes?.() !== 1 ? claim : undefined;
    const refill = refetch !== undefined ? sharing : undefined;
    // Only with records in commit order: out of order, a patch could bring back a value a
    // later write had already replaced (a row changed and changed back).
    const inOrder = record.ordered && events.length > 0 && !fallback && this.#e.policy === "exact";
    const patches =
      patch && inOrder
        ? this.#patches(keys, events, patch, record.seq)
        : new Map<string, Patched>();
    // What patches could not keep, the owner may keep with work of its own after the removal
    // below: only for this node's own records (another node's writer refills the shared tiers).
    const jobs =
      maintain && inOrder && !foreign
        ? this.#maintained(keys, patches, events, maintain, at)
        : new Map<string, () => Promise<void>>();
    // Hot keys the record invalidated are loaded again. With other nodes on the log and a
    // shared tier, every node that held one hot may reload it (the writer's index does not
    // know what only other nodes read) and one claims it for all: its load goes to the
    // shared tier, where the others find it. Otherwise only the writer reloads. A node sees
    // its share of a key's reads: with n nodes, 1/n of the hits that make a key hot.
    const hot: string[] = [];
    if (refetch && this.#e.rehydrate && (!foreign || refill)) {
      const nodes = refill ? Math.max(1, this.#e.log.nodes?.() ?? 1) : 1;
      const minHits = Math.max(1, Math.ceil(this.#e.rehydrate.minHits / nodes));
      for (const k of keys) {
        if (patches.has(k) || jobs.has(k)) continue;
        const dep = this.#e.index.get(k);
        // A list page another node reads is one it could not patch up from the shared
        // tier (the rows that slide in are on pages it may not hold): all are reloaded.
        const list = this.#e.rehydrate.lists && refill && (dep?.lists.length ?? 0) > 0;
        if (list || (dep?.hits ?? 0) >= minHits) hot.push(k);
      }
    }
    if (sharing) claims.invalidated(unpatched(keys, patches), record.seq);
    // The patched keys leave memory with the rest but stay registered: they are stored again
    // below (a cache file keeps its older copy, see Entries.remove). Counted as
    // invalidations below, less those stored again: a patched entry was changed, not
    // invalidated.
    const removing = this.#e.entries.remove(keys, {
      local: true,
      registered: patches,
      invalidation: false,
    });
    // The shared tiers are cleared too (by the writer, see `foreign`), but nothing waits for
    // it unless asked to (`settled`): a read from them is checked against the log, so these
    // deletes only spare the next reader a refusal, and a node far from Redis would hold its
    // write a round trip longer for them. A patched key is not deleted there either: its
    // copy is checked all the same (replayed or refused), and replaced where the writer
    // copies its patch over it; deleting it sent a command and took a reply for every key a write
    // patched. Asked even with no key: it tries again the keys an earlier delete failed.
    const clearing =
      foreign || !this.#e.tiers.shared
        ? Promise.resolve(0)
        : this.#e.tiers.delete([...unpatched(keys, patches)], "shared");
    // Tiers may hold keys the index never saw (another process wrote them): list them too.
    const unindexed = new Set<string>();
    for (const { prefix, test } of prefixes)
      for (const k of await this.#e.tiers.unindexed(prefix, keys, foreign))
        if (test(k)) unindexed.add(k);
    const removedPlanned = await removing;
    let removed = removedPlanned;
    removed += await this.#e.entries.remove(unindexed, { local: foreign });
    // Stored in one batch: each one's upkeep counts its share of the batch's time.
    const started = performance.now();
    const stored = await this.#e.loads.storePatched(
      [...patches].map(([key, { init, exact }]) => ({ key, init, exact })),
      at,
    );
    const share = (performance.now() - started) / Math.max(1, patches.size);
    for (const { key, entry } of stored) {
      const { spent, loaded } = patches.get(key)!;
      markUpkeep(entry, { patches: spent.patches, ms: spent.ms + share });
      markLoadMs(entry, loaded);
    }
    const patched = stored.length;
    this.#e.counters.patches += patched;
    this.#e.counters.invalidations += Math.max(0, removedPlanned - patched);
    // A patch is this node's memory as of this record, which it kept current record by
    // record: as good as a load that began here, and checked by readers like one. The
    // record's writer copies what it patched, in one batch, as it cleans the shared tiers
    // (see `foreign`); the other nodes copy nothing. Each node that patched used to claim
    // each key for the copy: a command and a reply per node and record, and each reply that
    // wakes a node idle between requests costs it about as much CPU as serving a hit
    // (bench:cluster, 3 nodes: 0.29 background commands a request against 0.11). A key only
    // other nodes patched keeps its older copy there, which a reader patches up from the
    // log or refuses and loads.
    if (sharing && record.own !== false && stored.length > 0) {
      this.#e.reloads.push(async () => {
        this.#e.counters.patchesShared += await this.#e.loads.shareMany(stored, at);
      });
    }
    for (const job of jobs.values()) {
      this.#e.reloads.push(job);
    }
    if (refill && hot.length > 0) {
      // One node reloads each for all: the record's claims go out together, in one command.
      this.#e.reloads.push(async () => {
        const won = await Promise.all(hot.map((k) => refill(k)));
        for (const [i, k] of hot.entries()) if (won[i]) this.#scheduleRehydrate(k, refetch!);
      });
    } else {
      for (const k of hot) this.#scheduleRehydrate(k, refetch!);
    }
    this.#e.recent.push({
      at: this.#e.now(),
      seq: record.seq,
      cause: events.length > 0 ? "write" : "invalidate",
      ...(events.length > 0 && {
        writes: events.slice(0, 10).map((e) => ({ table: e.table, op: e.op })),
      }),
      ...(events.length === 0 && { named }),
      removed,
      patched,
      rules,
      fallback,
    });
    return { keys: [...keys, ...unindexed], fallback, patched, removed, clearing };
  }

  /**
   * The node missed records (a new log, or more than the log retains): whatever its memory
   * holds may be stale and is dropped; entries in other tiers are checked on read against
   * each table's last change.
   */
  reset(start: LogStart): void {
    this.#e.counters.resets++;
    this.#e.fence.reset(start);
    this.#results.clear();
    const keys = new Set(this.#e.index.keys());
    for (const k of keys) this.#e.index.remove(k);
    this.#e.tiers.clearFront(keys);
  }

  /** What `patch` makes of the planned keys the first tier holds fresh; synchronous. */
  #patches(
    keys: ReadonlySet<string>,
    events: readonly WriteEvent[],
    patch: NonNullable<WriteHooks["patch"]>,
    seq: number,
  ): Map<string, Patched> {
    const out = new Map<string, Patched>();
    const peek = this.#asFound(seq);
    if (!peek) return out;
    const now = this.#e.now();
    // On a shared log a response may be ahead of the records applied here, unless its load
    // saw the source exactly (see CacheEntry.exact): only then, and only among such
    // responses, may a patch look at other entries.
    const shared = this.#e.log.shared;
    const exactPeek = (key: string) => {
      const entry = peek(key);
      return entry?.exact ? entry : undefined;
    };
    for (const key of keys) {
      const current = peek(key);
      if (!current) continue;
      // A response nobody reads goes instead of being patched write after write: a patch
      // re-parses, re-encodes and re-hashes all of it, for nobody; a read, if one comes,
      // loads it. A large one goes at the first write since it was stored without a read
      // (a client's start-up scan, cached and never asked again). Any other is patched
      // UNREAD_PATCHES times with no read between, and then as long as those patches took
      // less time than its load did (at most MOST_UNREAD_PATCHES): an update protocol that
      // turns to invalidation when updates go unread, once they have cost what the miss
      // would (a rent-or-buy rule, as competitive snooping caches use). A page whose query
      // scans a table is kept through many writes; an item read by its key, through few.
      const read = readSinceStored(current);
      const spent = upkeep(current);
      const unread = read ? 0 : spent.patches + 1;
      const loaded = loadMs(current);
      const cold = bodyLength(current) > COLD_PATCH_BYTES;
      const owed = !cold && unread <= MOST_UNREAD_PATCHES && spent.ms < (loaded ?? 0);
      if (unread > (cold ? 0 : UNREAD_PATCHES) && !owed) continue;
      const exact = !shared || current.exact === true;
      let init: EntryInit | undefined;
      const started = performance.now();
      try {
        init = patch(key, current, events, exact ? (shared ? exactPeek : peek) : undefined);
      } catch (err) {
        this.#e.report("patch", "[edgecache] [cache] patch failed; the entry is invalidated", err);
      }
      if (!init) continue;
      // A patched entry keeps the expiry of the one it came from: the TTL still bounds how
      // long a change that bypassed edgecache can go unseen.
      out.set(key, {
        init: extend(init, {
          ttl: current.freshUntil - now,
          staleWhileRevalidate: current.staleUntil - current.freshUntil,
        }),
        exact: shared && exact,
        spent: { patches: unread, ms: spent.ms + (performance.now() - started) },
        loaded,
      });
    }
    return out;
  }

  /**
   * The first tier's fresh entries as the write of record `seq` found them, or undefined
   * without a first tier: not one loaded at or after this record (another node's copy, from
   * a shared tier, further along the log than this node), which shows the record already.
   * Patching it, or taking a neighbour's rows from it, would apply the record twice (shift
   * a page twice); such an entry is removed instead.
   */
  #asFound(seq: number): ((key: string) => CacheEntry | undefined) | undefined {
    const front = this.#e.tiers.front;
    if (!front) return undefined;
    const now = this.#e.now();
    const log = this.#e.fence.position.log;
    return (key) => {
      if (this.#e.pending.has(key) || this.#e.tiers.skips(0, key)) return undefined;
      const entry = front.peek(key);
      if (!entry || entry.freshUntil <= now) return undefined;
      if (entry.position?.log === log && entry.position.seq >= seq) return undefined;
      return entry;
    };
  }

  /**
   * The owner's jobs that keep the planned keys patches did not (see WriteHooks.maintain),
   * each told whether its entry was read since it was stored.
   */
  #maintained(
    keys: ReadonlySet<string>,
    patches: ReadonlyMap<string, Patched>,
    events: readonly WriteEvent[],
    maintain: NonNullable<WriteHooks["maintain"]>,
    at: LogPosition,
  ): Map<string, () => Promise<void>> {
    const out = new Map<string, () => Promise<void>>();
    const peek = this.#asFound(at.seq);
    if (!peek) return out;
    for (const key of keys) {
      if (patches.has(key)) continue;
      const current = peek(key);
      if (!current) continue;
      try {
        const job = maintain(key, current, events, readSinceStored(current), at);
        if (job) out.set(key, job);
      } catch (err) {
        this.#e.report(
          "patch",
          "[edgecache] [cache] maintain failed; the entry is invalidated",
          err,
        );
      }
    }
    return out;
  }

  /** Queues a reload of `key`. */
  #scheduleRehydrate(key: string, refetch: (key: string) => Promise<unknown>): void {
    this.#e.reloads.push(async () => {
      this.#e.counters.rehydrations++;
      await refetch(key);
    });
  }
}

/** A planned key's entry as a write patched it, before it is stored. */
interface Patched {
  init: EntryInit;
  exact: boolean;
  /** Its upkeep with this patch's time: the store's is added once it is stored. */
  spent: Upkeep;
  /** The load time of the entry it came from, which it keeps (see loadMs). */
  loaded: number | undefined;
}

/** The keys of `keys` that `patches` does not hold. */
function* unpatched(keys: Iterable<string>, patches: ReadonlyMap<string, unknown>) {
  for (const key of keys) if (!patches.has(key)) yield key;
}
