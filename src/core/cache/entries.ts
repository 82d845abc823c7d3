import type { LogPosition } from "../change-log/contract.ts";
import type { Cost } from "../cost.ts";
import type { DependencyIndex, HitCount } from "../deps/index.ts";
import { sha256Hex } from "../digest.ts";
import { type CacheEntry, deferredEntry, isDeferredBody, madeEntry } from "../entries/entry.ts";
import { isNegative, type NegativeQuota } from "../entries/negative.ts";
import { inChunks, type PendingRemovals } from "../entries/removal.ts";
import type { Background } from "./background.ts";
import type { Counters } from "./counters.ts";
import type { ReloadClaims } from "./reload-claims.ts";
import type { TierStack } from "./tiers.ts";
import type { EntryInit } from "./types.ts";

const SWEEP_EVERY = 4096;
/** Tiers past this many are not tracked for the index (a bit each in a 32-bit mask). */
export const MAX_TRACKED_TIERS = 30;

/** What `Entries` is given when the cache is made. */
export interface EntriesDeps {
  /** Reloads this node claimed for all: told when their keys are in the shared tiers. */
  readonly claims: Pick<ReloadClaims, "stored">;
  readonly tiers: Pick<TierStack, "set" | "delete" | "mask">;
  /** This node's registrations: tag to keys, lists per table. */
  readonly index: Pick<
    DependencyIndex,
    "add" | "remove" | "recount" | "get" | "sweep" | "oldest" | "bytes"
  >;
  /** The index's budget of heap, and the keys it dropped to keep within it. */
  readonly indexBytes: { max: number; evictions: number };
  readonly negative: Pick<NegativeQuota, "admit" | "forget">;
  readonly background: Pick<Background, "run">;
  /** Keys a removal in progress has yet to delete everywhere; reads skip them. */
  readonly pending: Pick<PendingRemovals, "add" | "delete">;
  readonly counters: Pick<Counters, "invalidations">;
  /** false: caching is off, so nothing is stored. */
  readonly enabled: boolean;
  /** Default TTL and stale-while-revalidate window, ms. */
  readonly ttl: number;
  readonly swr: number;
  /** Tiers whose holding keeps a registration (a bit per tier): the first, and evicting ones. */
  readonly tracked: number;
  now(): number;
  /** The strong ETag of a body: synchronous where the runtime gave a SHA-256 (CacheOptions.sha256). */
  etag(body: Uint8Array): string | Promise<string>;
  /**
   * The same ETag, made synchronously, where the runtime gave a SHA-256 and the first tier
   * holds entries as given (Store.byReference): only then is an entry's body made when
   * first read (a DeferredBody), with its ETag. Else it is made now.
   */
  readonly etagNow?: (body: Uint8Array) => string;
}

/**
 * Entries in and out: building an entry from what a load returned, registering it in the
 * dependency index and writing it into the tiers, and removing keys from the index and
 * every tier (reads skip them from the call on).
 */
export class Entries {
  readonly #e: EntriesDeps;
  #encoder = new TextEncoder();
  #stores = 0;

  /** Local tiers past memory whose holding the index tracks (a bit each): see #removeNow. */
  readonly #filed: number;

  constructor(deps: EntriesDeps) {
    this.#e = deps;
    this.#filed = deps.tracked & deps.tiers.mask("local") & ~1;
  }

  async build(init: EntryInit, position: LogPosition): Promise<CacheEntry> {
    const now = this.#e.now();
    const ttl = init.ttl ?? this.#e.ttl;
    const swr = init.staleWhileRevalidate ?? this.#e.swr;
    const fields = {
      headers: init.headers ?? {},
      status: init.status ?? 200,
      createdAt: now - (init.age ?? 0),
      freshUntil: now + ttl,
      staleUntil: now + ttl + swr,
      tags: init.tags ?? [],
      position,
    };
    const given = init.body;
    // Deferred only where it may be (see EntriesDeps.etagNow), with the ETag given if any.
    const etagNow =
      this.#e.etagNow && (init.etag !== undefined ? () => init.etag! : this.#e.etagNow);
    let entry: CacheEntry;
    if (isDeferredBody(given) && etagNow) {
      entry = deferredEntry(fields, given, etagNow);
    } else {
      const body =
        typeof given === "string"
          ? this.#encoder.encode(given)
          : isDeferredBody(given)
            ? given.encode()
            : given;
      const etag = init.etag ?? this.#e.etag(body);
      entry = { body, ...fields, etag: typeof etag === "string" ? etag : await etag };
    }
    if (init.lists?.length) entry.lists = init.lists;
    if (init.meta !== undefined) entry.meta = init.meta;
    if (init.browserBound !== undefined) entry.browserBound = init.browserBound;
    return entry;
  }

  /** The tracked tiers among [0, end), as `index.add` takes them. */
  held(end: number): number {
    return this.#e.tracked & (2 ** Math.min(end, MAX_TRACKED_TIERS) - 1);
  }

  /** Registers the entry and writes it into tiers [0, end). */
  async store(
    key: string,
    entry: CacheEntry,
    end: number,
    only?: "local",
    cost?: Cost,
  ): Promise<void> {
    await this.storeMany([{ key, entry }], end, only, cost);
  }

  /** Registers the entries and writes them into tiers [0, end) (or `only` the local ones), a batch per tier. */
  async storeMany(
    list: readonly { key: string; entry: CacheEntry }[],
    end: number,
    only?: "local",
    cost?: Cost,
  ): Promise<void> {
    if (!this.#e.enabled) return;
    for (const { key, entry } of list) {
      counted(
        entry,
        this.#e.index.add(key, entry.tags, entry.lists ?? [], entry.staleUntil, this.held(end)),
      );
      this.admit(key, entry);
      // Registrations of entries that expired everywhere go now and then, not per request.
      if (++this.#stores % SWEEP_EVERY === 0) this.#e.index.sweep(this.#e.now());
    }
    this.trimIndex(list.map((w) => w.key));
    await this.storeIn(list, end, only, cost);
  }

  /**
   * Keeps the index within its budget of heap: past it, the least recently registered keys
   * leave the index and the local tiers at once (reads skip them from now on). A local tier
   * must not keep an entry without its registration, or a write could not find it; a shared
   * tier may, since what is read from one is checked against the log. `keep`: keys being
   * stored now, which stay.
   */
  trimIndex(keep: readonly string[]): void {
    const { index } = this.#e;
    if (index.bytes <= this.#e.indexBytes.max) return;
    const out = new Set<string>();
    for (const key of index.oldest()) {
      if (index.bytes <= this.#e.indexBytes.max) break;
      if (keep.includes(key)) continue;
      index.remove(key);
      this.#e.negative.forget(key);
      out.add(key);
    }
    this.#e.indexBytes.evictions += out.size;
    if (out.size > 0) {
      this.#e.background.run(this.remove(out, { invalidation: false, local: true }));
    }
  }

  /** Counts a negative result against its quota; the least recently used past it goes. */
  admit(key: string, entry: CacheEntry): void {
    if (!isNegative(entry.status)) {
      this.#e.negative.forget(key);
      return;
    }
    const out = this.#e.negative.admit(key);
    if (out !== undefined)
      this.#e.background.run(this.remove(new Set([out]), { invalidation: false }));
  }

  /** Writes the entries into tiers [0, end): one batch per tier that has batches. */
  async storeIn(
    list: readonly { key: string; entry: CacheEntry }[],
    end: number,
    only?: "local" | "shared",
    cost?: Cost,
  ): Promise<void> {
    const now = this.#e.now();
    // A tier past the first gets what it may copy, encode or clone: the entry made.
    const writes = list
      .map(({ key, entry }) => ({
        key,
        entry: end > 1 ? madeEntry(entry) : entry,
        ttlMs: entry.staleUntil - now,
      }))
      .filter((w) => w.ttlMs > 0);
    await this.#e.tiers.set(writes, end, only, cost);
    if (only !== "local")
      this.#e.claims.stored(
        list.map((w) => w.key),
        cost,
      );
  }

  /**
   * Removes keys from the index and every tier; resolves with how many existed (counted as
   * invalidations unless told otherwise). Reads skip the keys from the call on, and many
   * keys go a chunk at a time, so other requests run meanwhile. `keys` must not change
   * until it resolves.
   */
  async remove(
    keys: ReadonlySet<string>,
    options?: {
      invalidation?: boolean;
      local?: boolean;
      /**
       * Keys that keep their registration, as they are registered anew right after (a
       * patch): filed all along, so a write planned meanwhile finds them, and registered
       * again only where their tags and lists changed (refiling each entry a write patches
       * was most of what the index cost a write).
       */
      registered?: Pick<ReadonlySet<string>, "has">;
    },
  ): Promise<number> {
    if (keys.size === 0) return 0;
    this.#e.pending.add(keys);
    let removed = 0;
    try {
      await inChunks([...keys], async (chunk) => {
        removed += await this.#removeNow(chunk, options?.local, options?.registered);
      });
    } finally {
      this.#e.pending.delete(keys);
    }
    if (options?.invalidation !== false) this.#e.counters.invalidations += removed;
    return removed;
  }

  /**
   * Removes keys from the index (but `registered`) and every tier (`local`: but the shared
   * ones); resolves with how many existed.
   */
  async #removeNow(
    list: readonly string[],
    local = false,
    registered?: Pick<ReadonlySet<string>, "has">,
  ): Promise<number> {
    const only = local ? "local" : undefined;
    // Where each registered key's entry is, before this removal: a local tier past memory
    // that the index tracks (a cache file) is asked only for the keys it holds, and never for
    // a key registered anew (a patch): its older copy there is checked on read like any
    // (replayed up to the log, or refused) and deleted by the next write that does not patch
    // the key, which finds the tier's bit still held. Unregistered keys, and tiers the index
    // does not track (the Cache API, KV), are asked of every tier.
    const held = new Map<string, number>();
    const gone = this.#e.tiers.mask(only);
    for (const k of list) {
      const reg = this.#e.index.get(k);
      if (reg) held.set(k, reg.held);
      // A replaced entry's reads count from 0, as a new registration's would, and it is
      // held nowhere it was deleted from until it is stored again (a tracked tier keeps it).
      if (registered?.has(k)) this.#e.index.recount(k, gone & ~this.#filed);
      else this.#e.index.remove(k);
      this.#e.negative.forget(k);
    }
    const absent = (i: number, key: string) => {
      if (i >= 31 || (this.#filed & (1 << i)) === 0) return false;
      if (registered?.has(key)) return true;
      const bits = held.get(key);
      return bits !== undefined && (bits & (1 << i)) === 0;
    };
    return this.#e.tiers.delete(list, only, undefined, absent);
  }
}

/**
 * What this node keeps of an entry it stored, in one record under a symbol (one property
 * defined per entry, where four were): never serialized with the entry, nor copied by a
 * spread.
 * - `count`: its registration's hit count, so a memory hit counts itself without looking
 *   the key up in the index again (that lookup was a fifth of a hit's time). Should the key
 *   be registered anew while memory still holds this entry, its hits go to the old count:
 *   they only decide which invalidated keys are hot enough to reload.
 * - `hitsAtStore`: the count's hits when the entry was stored (see readSinceStored).
 * - `upkeep`, `loadMs`: see `upkeep` and `loadMs`.
 */
const KEPT = Symbol("kept");
interface Kept {
  count?: HitCount;
  hitsAtStore: number;
  upkeep?: Upkeep;
  loadMs?: number;
}
type WithKept = CacheEntry & { [KEPT]?: Kept };

/** The entry's record (see KEPT), made on first use. */
function kept(entry: CacheEntry): Kept {
  let record = (entry as WithKept)[KEPT];
  if (record === undefined) {
    record = { hitsAtStore: 0 };
    Object.defineProperty(entry, KEPT, { value: record, configurable: true, writable: true });
  }
  return record;
}

export function counted(entry: CacheEntry, count: HitCount): void {
  const record = kept(entry);
  record.count = count;
  record.hitsAtStore = count.hits;
}

/** The hit count a stored entry carries (see counted), if any. */
export function hitCount(entry: CacheEntry): HitCount | undefined {
  return (entry as WithKept)[KEPT]?.count;
}

/**
 * Whether the entry was read (a hit) since this node stored it, a load or a patch. An
 * entry this node did not store (read from a shared tier) counts as read.
 */
export function readSinceStored(entry: CacheEntry): boolean {
  const record = (entry as WithKept)[KEPT];
  return record?.count === undefined || record.count.hits > record.hitsAtStore;
}

/**
 * What writes spent keeping an entry current with no read since the first of them: how
 * many patched it (this one, or the ones it came from) and their time, ms (the patch and
 * its store in memory). Nothing once it is read.
 */
export interface Upkeep {
  patches: number;
  ms: number;
}

export function upkeep(entry: CacheEntry): Upkeep {
  if (readSinceStored(entry)) return { patches: 0, ms: 0 };
  return (entry as WithKept)[KEPT]?.upkeep ?? { patches: 0, ms: 0 };
}

export function markUpkeep(entry: CacheEntry, spent: Upkeep): void {
  kept(entry).upkeep = spent;
}

/**
 * How long the load that made the entry (or the one a patch came from) took on this node,
 * ms: the source's answer, the response made of it and its store, what a read pays if the
 * entry goes.
 * Unknown for an entry this node did not load (from a shared tier, or stored by `setEntry`).
 */
export function loadMs(entry: CacheEntry): number | undefined {
  return (entry as WithKept)[KEPT]?.loadMs;
}

export function markLoadMs(entry: CacheEntry, ms: number | undefined): void {
  if (ms === undefined) return;
  kept(entry).loadMs = ms;
}

/** A strong ETag from the body's SHA-256 (RFC 9110 8.8.3: same bytes, same tag). */
export async function strongEtag(body: Uint8Array): Promise<string> {
  return `"${(await sha256Hex(body)).slice(0, 24)}"`;
}

/** strongEtag made with a synchronous SHA-256 the runtime offers: the same tags. */
export function syncEtag(sha256: (data: Uint8Array) => string): (body: Uint8Array) => string {
  return (body) => `"${sha256(body).slice(0, 24)}"`;
}
