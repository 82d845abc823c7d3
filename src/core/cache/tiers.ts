import type { Cost } from "../cost.ts";
import { type CacheEntry, madeEntry } from "../entries/entry.ts";
import { REMOVE_CHUNK, yieldToLoop } from "../entries/removal.ts";
import type { rateLimited } from "../report.ts";
import { hitRate, type TierStats } from "../stats.ts";
import {
  isBatch,
  isClosable,
  isListable,
  isMeasured,
  isSync,
  type Store,
  type SyncStore,
} from "../store.ts";

/** The code a failure carries (SQLITE_FULL, ENOSPC; the cause's, under ours), else its name. */
function faultCode(err: unknown): string {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && !code.startsWith("E_")) return code;
  }
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "error";
}

/** A tier call that failed: counted and logged already (see TierStack.fault). */
export const FAILED = Symbol("tier failed");
/** The key a health probe reads (whether an entry is there does not matter: only an error does). */
const PROBE_KEY = "edgecache:health-probe";

/** A tier's live copy of a key, as `inspect` finds it (none: no entry, or a failing tier). */
export interface InspectedTier {
  tier: string;
  entry?: CacheEntry;
}

/**
 * The cache's tiers, fastest first, and every call made to them. One policy for a failing
 * tier, here only: the failure is counted in the tier's stats, logged at most once a while,
 * and the call degrades (a read to the next tier, a write to nothing); a cache fault never
 * becomes a caller's error. A delete that fails leaves its keys marked on that tier, and
 * reads skip the tier for them until a later delete succeeds: a fault costs hits, never a
 * stale read. Each call adds what it sent to a shared server to the `cost` it is given, or,
 * outside a request, to the node's background cost.
 */
export class TierStack {
  readonly list: readonly Store[];
  /**
   * The first tier when it is this node's memory (answers synchronously, not shared): the
   * hit path's, and the one tier whose entries are served without a check against the log
   * (see `checked`).
   */
  readonly front: SyncStore | undefined;
  /** Whether a tier is shared with other nodes (see `Store.shared`). */
  readonly shared: boolean;
  /** Each tier's counters (its hit rate is computed from them in `summary`). */
  readonly #stats: Omit<TierStats, "hitRate">[];
  /** Per tier: keys whose delete failed there; reads skip that tier for them. */
  readonly #undeleted = new Map<number, Set<string>>();
  readonly #report: ReturnType<typeof rateLimited>;
  /** The tiers, the local ones and the shared ones, a bit each (see `mask`). */
  readonly #masks = { all: 0, local: 0, shared: 0 };
  /** Where calls made outside a request count (see Cost). */
  readonly #idle: Cost | undefined;

  constructor(tiers: readonly Store[], report: ReturnType<typeof rateLimited>, idle?: Cost) {
    this.list = tiers;
    this.#report = report;
    this.#idle = idle;
    this.#stats = tiers.map((t) => ({ name: t.name, hits: 0, misses: 0, errors: 0, skipped: 0 }));
    const first = tiers[0];
    this.front = first && isSync(first) && first.shared !== true ? first : undefined;
    this.shared = tiers.some((t) => t.shared === true);
    tiers.forEach((tier, i) => {
      if (i >= 31) return;
      this.#masks.all |= 1 << i;
      this.#masks[tier.shared === true ? "shared" : "local"] |= 1 << i;
    });
  }

  get length(): number {
    return this.list.length;
  }

  /** Tier `i`'s counters, for the read path to count hits and misses in. */
  stats(i: number): Omit<TierStats, "hitRate"> {
    return this.#stats[i]!;
  }

  /**
   * Whether what tier `i` answers is checked against the log before it is served: every
   * tier but this node's memory. Another node, or an earlier process, may have written it
   * (a shared tier, a file, the Cache API), so a start does not clear it: what it holds
   * is judged by the log position its load began at.
   */
  checked(i: number): boolean {
    return i > 0 || this.front === undefined;
  }

  /** The tiers `only` selects (every one by default), a bit each, as the index holds them. */
  mask(only?: "local" | "shared"): number {
    return this.#masks[only ?? "all"];
  }

  /** Whether reads must skip tier `i` for `key` (a delete of it failed there). */
  skips(i: number, key: string): boolean {
    return this.#undeleted.size > 0 && this.#undeleted.get(i)?.has(key) === true;
  }

  /** Counts and logs a failed call of tier `i`: the one home of the fault policy. */
  fault(i: number, op: string, err: unknown): void {
    const stats = this.#stats[i];
    if (stats) {
      stats.errors++;
      // A write that fails (a full disk) is shown as failing until one succeeds again.
      if (op === "set" || op === "delete") {
        stats.failing = { ...stats.failing, [op]: faultCode(err) };
      }
    }
    const name = this.list[i]?.name ?? "tier";
    this.#report(`${name}:${op}`, `[edgecache] [${name}] ${op} failed; counted in stats`, err);
  }

  /** A write of tier `i` succeeded: it is no longer failing, if it was. */
  #wrote(i: number, op: "set" | "delete"): void {
    const stats = this.#stats[i];
    if (stats?.failing?.[op] === undefined) return;
    const { [op]: _, ...rest } = stats.failing;
    stats.failing = Object.keys(rest).length > 0 ? rest : undefined;
    if (stats.failing === undefined) delete stats.failing;
  }

  /** Tier `i`'s entry for `key`, or FAILED. */
  async get(
    i: number,
    key: string,
    cost = this.#idle,
  ): Promise<CacheEntry | undefined | typeof FAILED> {
    try {
      return await this.list[i]!.get(key, cost);
    } catch (err) {
      this.fault(i, "get", err);
      return FAILED;
    }
  }

  /** Tier `i`'s entries for `keys`, in one batch where it has batches, or FAILED. */
  async getMany(
    i: number,
    keys: readonly string[],
    cost = this.#idle,
  ): Promise<(CacheEntry | undefined)[] | typeof FAILED> {
    const tier = this.list[i]!;
    try {
      return keys.length > 1 && isBatch(tier)
        ? await tier.getMany(keys, cost)
        : await Promise.all(keys.map((key) => tier.get(key, cost)));
    } catch (err) {
      this.fault(i, "get", err);
      return FAILED;
    }
  }

  /** Writes entries into tiers [0, end), one batch per tier that has batches. */
  async set(
    writes: readonly { key: string; entry: CacheEntry; ttlMs: number }[],
    end: number,
    only?: "local" | "shared",
    cost = this.#idle,
  ): Promise<void> {
    if (writes.length === 0) return;
    await Promise.all(
      this.list.slice(0, end).map(async (tier, i) => {
        if (only !== undefined && (only === "shared") !== (tier.shared === true)) return;
        try {
          if (writes.length > 1 && isBatch(tier)) await tier.setMany(writes, cost);
          else await Promise.all(writes.map((w) => tier.set(w.key, w.entry, w.ttlMs, cost)));
          this.#wrote(i, "set");
        } catch (err) {
          this.fault(i, "set", err);
        }
      }),
    );
  }

  /** Deletes keys from tier `i` alone (a copy it held that the log refused). */
  async deleteIn(i: number, keys: readonly string[], cost = this.#idle): Promise<void> {
    await this.list[i]!.delete(keys, cost).then(
      () => this.#wrote(i, "delete"),
      (err) => this.fault(i, "delete", err),
    );
  }

  /** Deletes keys from the shared tiers only. */
  async deleteShared(keys: readonly string[], cost = this.#idle): Promise<void> {
    await Promise.all(this.list.map((tier, i) => (tier.shared ? this.deleteIn(i, keys, cost) : 0)));
  }

  /**
   * Deletes keys from every tier (or `only` the local or the shared ones), again with the
   * keys a tier failed to delete before; resolves with how many existed. `absent`: the keys
   * a tier is known not to hold, which it is not asked to delete.
   */
  async delete(
    list: readonly string[],
    only?: "local" | "shared",
    cost = this.#idle,
    absent?: (i: number, key: string) => boolean,
  ): Promise<number> {
    const counts = await Promise.all(
      this.list.map(async (tier, i) => {
        if (only !== undefined && (only === "shared") !== (tier.shared === true)) return 0;
        const asked = absent ? list.filter((k) => !absent(i, k)) : list;
        const pending = this.#undeleted.get(i);
        const batch = pending ? [...new Set([...asked, ...pending])] : asked;
        if (batch.length === 0) return 0;
        try {
          const n = await tier.delete(batch, cost);
          this.#wrote(i, "delete");
          // Only the keys this batch deleted are cleared: others may have failed meanwhile.
          const skip = this.#undeleted.get(i);
          if (skip) {
            for (const k of batch) skip.delete(k);
            if (skip.size === 0) this.#undeleted.delete(i);
          }
          return n;
        } catch (err) {
          // The tier may still hold what was invalidated: reads skip it for these keys
          // until a later delete succeeds, so a fault costs hits, never a stale read.
          this.fault(i, "delete", err);
          const skip = this.#undeleted.get(i) ?? new Set<string>();
          for (const k of asked) skip.add(k);
          this.#undeleted.set(i, skip);
          return 0;
        }
      }),
    );
    return Math.max(...counts);
  }

  /**
   * Empties this node's memory of `keys` (a reset's: what it registered), at the call: a
   * read after it finds none of them, and what is stored after it stays. The other tiers
   * are not cleared: what they hold is `checked`.
   */
  clearFront(keys: ReadonlySet<string>): void {
    if (!this.front || keys.size === 0) return;
    // A synchronous store takes a delete at the call; the promise only reports the result.
    this.front.delete([...keys], this.#idle).catch((err) => this.fault(0, "delete", err));
  }

  /**
   * Keys under `prefix` that the listable tiers below the first hold (`local`: but the
   * shared ones), tier by tier; a key two tiers hold comes twice. The first tier is not
   * listed: whatever it holds was registered in this process first, and listing 100,000
   * keys of it would hold up every request. A tier that fails to list is a fault, and the
   * listing goes on with the next.
   */
  async *below(prefix: string, local = false): AsyncIterable<string> {
    let seen = 0;
    for (let i = 1; i < this.list.length; i++) {
      const tier = this.list[i]!;
      if (!isListable(tier) || (local && tier.shared)) continue;
      try {
        for await (const k of tier.keys(prefix, this.#idle)) {
          yield k;
          // A tier's pages follow one another without a turn of the event loop otherwise.
          if (++seen % REMOVE_CHUNK === 0) await yieldToLoop();
        }
      } catch (err) {
        this.fault(i, "keys", err);
      }
    }
  }

  /** Keys under `prefix` that tiers below the first hold and `known` lacks (see below). */
  async unindexed(prefix: string, known: ReadonlySet<string>, local = false): Promise<string[]> {
    const keys: string[] = [];
    for await (const k of this.below(prefix, local)) if (!known.has(k)) keys.push(k);
    return keys;
  }

  /**
   * Each tier's live entry for `key`, read straight: looking is not a read, so no hit or
   * miss is counted (a failing tier is, as a fault, and shows as holding nothing).
   */
  async inspect(
    key: string,
    now: number,
    /** A key a scan found: one that does not read as an entry is none, not a fault. */
    scanned = false,
  ): Promise<InspectedTier[]> {
    return Promise.all(
      this.list.map(async (tier, i) => {
        const entry: CacheEntry | undefined | typeof FAILED = scanned
          ? await tier.get(key, this.#idle).catch(() => FAILED)
          : await this.get(i, key);
        return entry !== FAILED && entry && entry.staleUntil > now
          ? { tier: tier.name, entry: madeEntry(entry) }
          : { tier: tier.name };
      }),
    );
  }

  /**
   * Whether each tier answers now, fastest first: each is asked for a key no entry has (a
   * health check; a failing tier is counted as a fault, like any failed call).
   */
  probe(): Promise<{ tier: string; ok: boolean }[]> {
    return Promise.all(
      this.list.map(async (tier, i) => ({
        tier: tier.name,
        ok: (await this.get(i, PROBE_KEY)) !== FAILED,
      })),
    );
  }

  /** Each tier's counters, with its size where it measures one. */
  summary(): TierStats[] {
    return this.list.map((tier, i) => {
      const counted = this.#stats[i]!;
      const s = { ...counted, hitRate: hitRate(counted.hits, counted.misses) };
      if (!isMeasured(tier)) return s;
      try {
        return { ...s, ...tier.size() };
      } catch (err) {
        this.fault(i, "size", err);
        return s;
      }
    });
  }

  /** Closes every tier that holds resources. */
  async close(): Promise<void> {
    await Promise.all(
      this.list.map((tier, i) =>
        isClosable(tier) ? tier.close().catch((err) => this.fault(i, "close", err)) : undefined,
      ),
    );
  }
}
