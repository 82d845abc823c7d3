import type { Cost } from "./cost.ts";
import type { CacheEntry } from "./entries/entry.ts";

/**
 * A cache tier. Three required methods; anything more is a separate capability.
 * `ttlMs` is how long the store must keep the entry at least: until `entry.staleUntil`.
 * A store may drop entries earlier (eviction); it must never return an entry after
 * `delete` resolved for its key. `cost`: what the call sends to a server other nodes share
 * is added there (see Cost); a store with no such server ignores it.
 */
export interface Store {
  readonly name: string;
  /**
   * Whether other nodes read this tier too (Redis, KV). Such a tier is checked against the
   * change log on every read, so its deletes are an optimisation: only the node that wrote
   * a change makes them, and refills it.
   */
  readonly shared?: boolean;
  /**
   * Whether it keeps the entry objects it is given as they are, and hands the same back
   * (the memory tier). Only in such a first tier may an entry whose body is made when first
   * read (a patched response, see DeferredBody) wait unmade: another store may copy or
   * serialize it, and a copy sees only an object's own fields.
   */
  readonly byReference?: boolean;
  /** The entry of `key`, or undefined where there is none (never null: see BatchStore). */
  get(key: string, cost?: Cost): Promise<CacheEntry | undefined>;
  set(key: string, entry: CacheEntry, ttlMs: number, cost?: Cost): Promise<void>;
  /** Deletes the keys; resolves with how many existed. */
  delete(keys: readonly string[], cost?: Cost): Promise<number>;
}

/** A store that can enumerate its keys (admin listing, prefix invalidation, index rebuild). */
export interface ListableStore extends Store {
  /** Keys that start with `prefix` ("" for all), live entries only. */
  keys(prefix: string, cost?: Cost): AsyncIterable<string>;
}

/**
 * A store that can answer synchronously (the memory tier): used on the hit fast path. Its
 * `set` and `delete` take effect at the call (their promises only report), so a reset's
 * clearing cannot meet a write made after it.
 */
export interface SyncStore extends Store {
  /**
   * `now`, when given, is the caller's clock reading (epoch ms), used for expiry instead of
   * a read of the store's own clock: a clock read costs as much as the lookup on some
   * machines, and the hit path has already made one.
   */
  peek(key: string, now?: number): CacheEntry | undefined;
}

/** A store that reports its own size. */
export interface MeasuredStore extends Store {
  size(): StoreSize;
}

/** A store holding resources (connections, handles) to release. */
export interface ClosableStore extends Store {
  close(): Promise<void>;
}

/** A store that drops entries under capacity pressure and says which. */
export interface EvictingStore extends Store {
  /** Calls `listener` with each key evicted for room (not deleted, not expired). */
  onEvict(listener: (key: string) => void): void;
}

/**
 * A persistent store that also keeps, across a clean restart, the state of the in-process
 * log its entries were loaded under (see createCache): opaque text, taken once.
 */
export interface LogKeepingStore extends Store {
  /** What the last clean close left, removed as it is read: a crash leaves nothing. */
  takeLogState(): string | undefined;
  leaveLogState(state: string): void;
}

/** One write of a batch: what `set(key, entry, ttlMs)` takes. */
export interface StoreWrite {
  key: string;
  entry: CacheEntry;
  ttlMs: number;
}

/**
 * A store that reads or writes several keys in one round trip or one transaction (Redis
 * MGET and a pipeline, SQLite one transaction), with the same meaning as the single calls.
 */
export interface BatchStore extends Store {
  /**
   * The entries of `keys`, in order: undefined where there is none, as `get` answers (never
   * null), so the engine's getMany answers a missing key as its get does.
   */
  getMany(keys: readonly string[], cost?: Cost): Promise<(CacheEntry | undefined)[]>;
  setMany(writes: readonly StoreWrite[], cost?: Cost): Promise<void>;
}

export interface StoreSize {
  entries: number;
  bytes: number;
  evictions: number;
}

export function isListable(store: Store): store is ListableStore {
  return typeof (store as Partial<ListableStore>).keys === "function";
}
export function isSync(store: Store): store is SyncStore {
  return typeof (store as Partial<SyncStore>).peek === "function";
}
export function isMeasured(store: Store): store is MeasuredStore {
  return typeof (store as Partial<MeasuredStore>).size === "function";
}
export function isClosable(store: Store): store is ClosableStore {
  return typeof (store as Partial<ClosableStore>).close === "function";
}
export function isEvicting(store: Store): store is EvictingStore {
  return typeof (store as Partial<EvictingStore>).onEvict === "function";
}
export function isBatch(store: Store): store is BatchStore {
  return (
    typeof (store as Partial<BatchStore>).getMany === "function" &&
    typeof (store as Partial<BatchStore>).setMany === "function"
  );
}
export function isLogKeeping(store: Store): store is LogKeepingStore {
  return typeof (store as Partial<LogKeepingStore>).takeLogState === "function";
}
