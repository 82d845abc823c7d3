import type { ChangeLog, LogPosition } from "../change-log/contract.ts";
import type {
  InvalidationPolicy,
  ListDependency,
  PlanSchema,
  WriteEvent,
} from "../deps/planner.ts";
import type { CacheEntry, DeferredBody } from "../entries/entry.ts";
import type { CacheObserver } from "../stats.ts";
import type { Store } from "../store.ts";

// The engine's public shapes: what callers pass in and get back.

export interface CacheOptions {
  /**
   * Tiers, fastest first. Reads fall through and back-fill the tiers above. A first tier
   * in memory is this node's own: its entries are trusted, and dropped when the node
   * misses log records. Entries read from any other tier (a later one, or a first one that
   * is shared or kept across starts: Redis, a file, KV) are checked against the log.
   */
  tiers: Store[];
  /** Default time to live in ms (24 hours). */
  ttl?: number;
  /** Default stale-while-revalidate window after the TTL, in ms (0). */
  staleWhileRevalidate?: number;
  /** How writes invalidate: "exact" (default), "table" or "none" (TTL only). */
  policy?: InvalidationPolicy;
  /** What the planner knows of the data API's schema; without it writes fall back to tables. */
  schema?: PlanSchema;
  /**
   * What a write that reaches this node does to cached entries, whichever node made it:
   * `patch` cached responses in place, `refetch` hot invalidated ones. Given here when the
   * caller knows them as it makes the cache; `addWriteHooks` adds more later, each set for
   * the keys of its `prefix` (a data API that learns its schema once connected, over a cache
   * it was given; a query cache over an engine it shares).
   *
   * @example
   * writeHooks: { refetch: (key) => cache.get(key), patch: (key, entry, events) => undefined }
   */
  writeHooks?: WriteHooks;
  /**
   * Cached negative results (404 and 410) kept at once, 10 000 by default: past it the least
   * recently used goes from every tier, so made-up URLs cannot crowd out real entries.
   */
  notFound?: { maxEntries?: number };
  /**
   * The dependency index's heap at most, estimated per key from its tags and lists (64 MiB
   * by default). A key stays registered while a local tier holds its entry, so the tiers'
   * entry bounds bound it too; a flood of distinct lists would still take some 2 KB a key.
   * Past this budget the least recently registered keys leave the index and the local
   * tiers (counted in stats as `index.evictions`).
   */
  index?: { maxBytes?: number };
  /**
   * Background refetch of invalidated hot entries; false turns it off. `lists`: with other
   * nodes on the log and a shared tier, every invalidated list page any node held is
   * reloaded there (by one node), hot or not, so that a node which never held it finds it
   * new: hit rate for database queries (README, "Many nodes").
   */
  rehydrate?: { concurrency?: number; minHits?: number; lists?: boolean } | false;
  /**
   * Operations the write fence remembers (8192): an entry read from a shared tier whose
   * load began before the oldest is judged by its tables' last changes, which refuses more.
   */
  fenceLogSize?: number;
  /**
   * The change log every write and invalidation goes through (in-process by default). A
   * shared log (Redis) keeps several nodes exact; see `ChangeLog`. The default log is
   * kept in a tier that keeps one (`sqliteStore`) at `close()` and resumed by the next
   * process over the same file, so its entries are served when nothing since concerns
   * them; a process that does not close cleanly leaves none, and its entries are refused.
   */
  log?: ChangeLog;
  /**
   * Runs background work (rehydration, stale-while-revalidate refreshes, deletes of
   * refused entries): a Worker passes `ctx.waitUntil`. By default the cache tracks it, and
   * `drain()` waits for it.
   */
  schedule?: (work: Promise<unknown>) => void;
  now?: () => number;
  /**
   * SHA-256 of bytes as lowercase hex, synchronous, where the runtime has one (Node passes
   * `node:crypto`'s). ETags are made with it; without it, with `crypto.subtle.digest`, whose
   * asynchronous job costs more CPU than the rest of making an entry (bench:writes).
   *
   * @example
   * sha256: (data) => createHash("sha256").update(data).digest("hex")
   */
  sha256?: (data: Uint8Array) => string;
  logger?: { warn(message: string, error?: unknown): void };
  /**
   * false turns caching off: every read goes to the source and nothing is stored or served
   * from a tier, each such read counted in `bypasses`. Writes and invalidations still go
   * through the change log, so nodes with caching on stay exact (default true).
   */
  enabled?: boolean;
  /** Told each read's tier and duration and each load's duration (latency histograms). */
  observer?: CacheObserver;
  /**
   * What each application event invalidates, named once: `emit(name, ...args)` runs the
   * rule and invalidates what it returns.
   *
   * @example
   * invalidateOn: { "content.update": (id) => ({ tags: [`content#${id}`], patterns: [`page:*:${id}`] }) }
   */
  // biome-ignore lint/suspicious/noExplicitAny: an event's arguments are the application's own
  invalidateOn?: Record<string, (...args: any[]) => InvalidateRequest>;
}

/** What a loader returns: the body and what it depends on. */
export interface EntryInit {
  /** The bytes, text (as UTF-8), or a body made when first read: see DeferredBody. */
  body: Uint8Array | string | DeferredBody;
  headers?: Record<string, string>;
  status?: number;
  tags?: string[];
  lists?: ListDependency[];
  meta?: unknown;
  /** ms; overrides the cache's default. */
  ttl?: number;
  staleWhileRevalidate?: number;
  /** False keeps the response out of the cache (it is still returned). */
  cacheable?: boolean;
  /**
   * ms the response had already aged when it arrived (an HTTP origin's `Age`): `createdAt`
   * is set that far back, so a later `Age` header counts it (RFC 9111 4.2.3). Default 0.
   */
  age?: number;
  /** The entry's ETag as given ("" for none) instead of a hash of the body. */
  etag?: string;
  /** How many of the cache's tiers keep it, from the first (all by default). */
  tiers?: number;
  /** Seconds browsers and CDNs may reuse it: see CacheEntry.browserBound. */
  browserBound?: number;
}

/** Lookup options: `count: false` leaves the hit and miss counters to the caller (`countRead`). */
export interface LookupOptions {
  count?: boolean;
  /** Only the first `tiers` tiers are asked (all by default). */
  tiers?: number;
}

/** What the owner of the entries (the data API) does when a write reaches this node. */
export interface WriteHooks {
  /**
   * The keys these hooks are for: those that start with it (every key when absent). Of
   * the hooks a cache has, a key's are those of its longest prefix, the last added first.
   */
  prefix?: string;
  /** Re-runs the read behind a key (rehydration of hot invalidated entries). */
  refetch?: (key: string) => Promise<unknown>;
  /**
   * The entry's value after `events`, computed from its cached value without the source,
   * or undefined when that cannot be told exactly (the entry is then invalidated).
   * Synchronous: it sees the entry as the write found it. Asked only for records in the
   * source's commit order (`ChangeRecord.ordered`).
   *
   * `peek` shows any other fresh entry of the first tier as the write found it (a
   * neighbouring page, say). It is left out when the response may be ahead of the records
   * applied here: on a shared log, another node may have committed writes just before
   * this node loaded it, unless its load saw the source exactly (`CacheEntry.exact`).
   * Without `peek`, the patch must infer nothing from a row's absence.
   *
   * Both give entries as the first tier holds them: one a write patched may not have its
   * body made yet (see DeferredBody). Reading `body` or `etag` makes it; `deferredBody`
   * gives the value without making it; a copy (a spread, JSON) lacks the two.
   */
  patch?: (
    key: string,
    entry: CacheEntry,
    events: readonly WriteEvent[],
    peek: ((key: string) => CacheEntry | undefined) | undefined,
  ) => EntryInit | undefined;
  /**
   * Work that keeps an entry a record removes, where `patch` could not: asked, with the
   * same entries as `patch`, for each planned key it did not patch, and told whether the
   * entry was `read` since it was stored (work for one nobody reads may be wasted), and
   * the record's position `at` (the same for every key of the record: work shared among
   * them may be named by it). Synchronous, from the entry as the write found it; the job
   * it returns runs after the entry is removed (with the reloads) and stores the entry
   * again as a load that began at `at`, so that a later record that concerns it fences it
   * out (the query caches' group patches: a statement for the changed rows alone).
   */
  maintain?: (
    key: string,
    entry: CacheEntry,
    events: readonly WriteEvent[],
    read: boolean,
    at: LogPosition,
  ) => (() => Promise<void>) | undefined;
}

/** What applying one record did on this node. */
export interface WriteResult {
  keys: string[];
  fallback: boolean;
  patched: number;
  /** Entries that existed and were removed. */
  removed: number;
}

export type ResolveStatus = "hit" | "stale" | "miss";

/**
 * Why a load was not stored: caching is off, this node's lease on the log lapsed, the entry
 * says it may not be cached, or a write since the load began concerned it (the fence).
 */
export type Unstored = "cache-off" | "lease-expired" | "uncacheable" | "invalidated";

/**
 * The first later record a store asked to follow (StoreLoadedOptions.follow) was refused
 * for: its events and position. An owner that brings the entry through it (a group patch)
 * stores it again as a load at `at`, checked against the records after it.
 */
export interface Followed {
  events: readonly WriteEvent[];
  at: LogPosition;
}

/** What `storeLoaded` did: the entry either way, whether it was stored, and why not. */
export interface StoredLoad {
  entry: CacheEntry;
  stored: boolean;
  unstored?: Unstored;
  /** Refused for later records that can be followed (see StoreLoadedOptions.follow). */
  followed?: Followed;
}

export interface Resolved {
  entry: CacheEntry;
  status: ResolveStatus;
  /** The tier that answered a hit. */
  tier?: string;
  /** For a miss: whether the entry was stored (false when the write fence refused it). */
  stored?: boolean;
  /** For a miss not stored: why (see `Unstored`). */
  unstored?: Unstored;
  /** For a miss: the cache was bypassed, since this node's lease on the log lapsed. */
  bypass?: boolean;
}

/** What a write's record did on the node that made it. */
export interface AppliedWrite {
  keys: string[];
  fallback: boolean;
  patched: number;
}

export interface InvalidateRequest {
  keys?: string[];
  prefix?: string;
  tags?: string[];
  /** Key globs: `*` any run of characters, `?` one (`content:*:123:*`). */
  patterns?: string[];
}

/** Options of the value helpers (get, set, getOrSet). */
export interface JsonOptions {
  /** ms; the cache's default otherwise. */
  ttl?: number;
  staleWhileRevalidate?: number;
  tags?: string[];
  /**
   * The tiers that keep the value, by name: the first ones of the cache, in order
   * (`["memory"]`: this node's memory only; `["memory", "kv"]` of memory, KV, D1). All by
   * default. Reads with the same `tiers` ask only those.
   */
  tiers?: readonly string[];
}

/** Options of a read: the tiers asked (see `JsonOptions.tiers`). */
export type ReadOptions = Pick<JsonOptions, "tiers">;

/** An entry a lookup found, and the tier that held it. */
export interface Found {
  entry: CacheEntry;
  tier: string;
}
