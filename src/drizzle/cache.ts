import type { Cache as DrizzleCacheContract, MutationOption } from "drizzle-orm/cache/core";
import type { CacheConfig } from "drizzle-orm/cache/core/types";
import { type Cache, createCache } from "../core/cache/index.ts";
import { badOption } from "../core/errors.ts";
import { rateLimited, type Warner } from "../core/report.ts";
import type { Store } from "../core/store.ts";
import type { ChangeLog } from "../log/contract.ts";
import { decode, encode, Uncacheable } from "./codec.ts";
import { PendingReads } from "./reads.ts";
import { listOf, type TableRef, tableName } from "./tables.ts";

export interface DrizzleCacheOptions {
  /** Tiers for a cache of its own, fastest first (`[memoryStore()]`). Or pass `cache`. */
  tiers?: Store[];
  /** An edgecache `Cache` to share (its tiers, change log and stats). Or pass `tiers`. */
  cache?: Cache;
  /**
   * With `tiers`: the change log its cache follows (in-process by default). Processes or
   * Worker isolates that share a tier (Redis, KV) share a log too, to stay exact:
   * `redisChangeLog` on Node, `durableChangeLog` on Workers.
   */
  log?: ChangeLog;
  /**
   * "explicit" (Drizzle's default): only queries marked `.$withCache()` are cached.
   * "all": every select is, unless marked `.$withCache(false)`.
   */
  strategy?: "explicit" | "all";
  /** Time to live of a cached query in ms, unless `$withCache({ config })` says otherwise. */
  ttl?: number;
  /** Prefix of this adapter's keys in the cache ("drizzle:"); `clearAll` removes it. */
  prefix?: string;
  logger?: Warner;
  /** Clock in epoch ms for `exat`, `pxat` and `keepTtl` (fake clocks in tests). Default `Date.now`. */
  now?: () => number;
}

/** What `$withCache({ tables, tags })` and `db.$cache.invalidate` take. */
export interface InvalidateOptions {
  tables?: TableRef | TableRef[];
  tags?: string | string[];
}

export interface DrizzleCacheStats {
  /** Cached queries this node has registered. */
  keys: number;
  /** Per table: cached queries that read it (and go when it changes). */
  tables: Record<string, number>;
  hits: number;
  misses: number;
  /** Results stored. */
  stored: number;
  /** Results not stored since a mutation may have made them stale (the write fence). */
  fenced: number;
  /** Results not stored since their values cannot be restored exactly. */
  uncacheable: number;
  /** Faults of the adapter (a damaged entry, the change log out of reach): each cost a miss or a store, never a query. */
  faults: number;
  /** Faults of the engine's tiers (a tier down): each cost a miss or a store, never a query. */
  tierErrors: number;
}

const DEFAULT_TTL_MS = 60 * 60_000;
const JSON_TYPE = { "content-type": "application/json" };
const TEXT = new TextDecoder();
/** TTLs of recent puts remembered for `keepTtl`. */
const KEPT_TTLS = 10_000;

/**
 * A Drizzle ORM cache (`drizzle(client, { cache })`) on edgecache's engine.
 *
 * @example
 * const db = drizzle(client, { cache: drizzleCache({ tiers: [memoryStore()], strategy: "all" }) });
 */
export class EdgecacheDrizzleCache implements DrizzleCacheContract {
  readonly engine: Cache;
  #strategy: "explicit" | "all";
  #ttl: number;
  #prefix: string;
  #reads = new PendingReads();
  #tables = new Set<string>();
  /** Key -> expiry (epoch ms) of its last put, for `keepTtl`. */
  #expiries = new Map<string, number>();
  #report: ReturnType<typeof rateLimited>;
  #now: () => number;
  #counts = { hits: 0, misses: 0, stored: 0, fenced: 0, uncacheable: 0, faults: 0 };

  constructor(options: DrizzleCacheOptions) {
    const c = "drizzle";
    if ((options?.tiers === undefined) === (options?.cache === undefined)) {
      badOption(c, "tiers | cache", "exactly one of tiers and cache", "both or neither");
    }
    const strategy = options.strategy ?? "explicit";
    if (strategy !== "explicit" && strategy !== "all") {
      badOption(c, "strategy", '"explicit" or "all"', strategy);
    }
    const ttl = options.ttl ?? DEFAULT_TTL_MS;
    if (!(ttl > 0)) badOption(c, "ttl", "a positive number of ms", ttl);
    const prefix = options.prefix ?? "drizzle:";
    if (typeof prefix !== "string" || prefix === "") {
      badOption(c, "prefix", "a non-empty string", prefix);
    }
    if (options.log !== undefined && options.cache !== undefined) {
      badOption(c, "log", "no log with cache (the cache has its own)", "both");
    }
    this.engine =
      options.cache ??
      createCache({
        tiers: options.tiers!,
        ttl,
        ...(options.log && { log: options.log }),
        ...(options.now ? { now: options.now } : {}),
      });
    this.#strategy = strategy;
    this.#ttl = ttl;
    this.#prefix = prefix;
    this.#now = options.now ?? Date.now;
    const logger = options.logger ?? { warn: (m, e) => console.warn(m, e ?? "") };
    this.#report = rateLimited(logger, () => performance.now());
  }

  strategy(): "explicit" | "all" {
    return this.#strategy;
  }

  /** Drizzle asks before running a select; undefined runs it. */
  async get(
    key: string,
    _tables: string[],
    isTag: boolean,
    _autoInvalidate?: boolean,
  ): Promise<unknown[] | undefined> {
    const k = this.#key(key, isTag);
    // Taken before the lookup: the query runs after it, so its result is at least this new.
    const since = this.engine.position;
    try {
      const entry = await this.engine.getEntry(k);
      if (entry) {
        const value = decode(TEXT.decode(entry.body));
        this.#counts.hits++;
        return value as unknown[];
      }
    } catch (err) {
      this.#fault("get", err);
    }
    this.#counts.misses++;
    this.engine.countRead(k, "miss");
    this.#reads.begin(k, since);
    return undefined;
  }

  /** Drizzle hands over what a select returned after a miss. */
  async put(
    key: string,
    response: unknown,
    tables: string[],
    isTag: boolean,
    config?: CacheConfig,
  ): Promise<void> {
    const k = this.#key(key, isTag);
    const since = this.#reads.end(k);
    let body: string;
    try {
      // Before anything awaits: the caller gets `response` back and may change it.
      body = encode(response);
    } catch (err) {
      if (!(err instanceof Uncacheable)) throw err;
      this.#counts.uncacheable++;
      this.#report("uncacheable", `[edgecache] [drizzle] a result was not cached: ${err.message}`);
      return;
    }
    if (since === undefined) {
      this.#counts.fenced++;
      return;
    }
    const now = this.#now();
    const ttl = ttlOf(config, now, this.#expiries.get(k)) ?? this.#ttl;
    if (ttl <= 0) return;
    try {
      const names = tables.map(tableName);
      const tags = names.map((t) => this.#tableTag(t));
      if (isTag) tags.push(this.#userTag(key));
      const { stored } = await this.engine.storeLoaded(
        k,
        { body, headers: JSON_TYPE, tags, ttl, staleWhileRevalidate: 0 },
        since,
      );
      if (!stored) {
        this.#counts.fenced++;
        return;
      }
      this.#counts.stored++;
      for (const t of names) this.#tables.add(t);
      this.#expiries.delete(k);
      this.#expiries.set(k, now + ttl);
      if (this.#expiries.size > KEPT_TTLS)
        this.#expiries.delete(this.#expiries.keys().next().value!);
    } catch (err) {
      this.#fault("put", err);
    }
  }

  /**
   * Drizzle calls this for each insert, update and delete, and `db.$cache.invalidate` is
   * this method: every cached query that read one of `tables`, or was cached with one of
   * `tags`, goes from every tier. Tables may be Drizzle tables or names (see `tableName`).
   */
  onMutate = async (params: MutationOption | InvalidateOptions): Promise<void> => {
    const tags = [
      ...listOf<TableRef>(params?.tables as TableRef | TableRef[] | undefined).map((t) =>
        this.#tableTag(tableName(t)),
      ),
      ...listOf(params?.tags).map((t) => this.#userTag(t)),
    ];
    if (tags.length === 0) return;
    try {
      await this.engine.invalidate({ tags });
    } catch (err) {
      this.#fault("invalidate", err);
    }
  };

  /** The same as `onMutate`, by the name Drizzle users call it (`db.$cache.invalidate`). */
  invalidate(params: InvalidateOptions): Promise<void> {
    return this.onMutate(params);
  }

  /** Removes every cached query of this adapter from every tier. */
  async clearAll(): Promise<void> {
    try {
      await this.engine.invalidate({ prefix: this.#prefix });
    } catch (err) {
      this.#fault("clear", err);
    }
  }

  getStats(): DrizzleCacheStats {
    const tables: Record<string, number> = {};
    for (const t of this.#tables) {
      const n = this.engine.registered({ tag: this.#tableTag(t) });
      if (n > 0) tables[t] = n;
      else this.#tables.delete(t);
    }
    const tierErrors = this.engine.stats().tiers.reduce((n, t) => n + t.errors, 0);
    return {
      keys: this.engine.registered({ prefix: this.#prefix }),
      tables,
      ...this.#counts,
      tierErrors,
    };
  }

  #key(key: string, isTag: boolean): string {
    return `${this.#prefix}${isTag ? "tag:" : "q:"}${key}`;
  }

  #tableTag(table: string): string {
    return `${this.#prefix}table:${table}`;
  }

  #userTag(tag: string): string {
    return `${this.#prefix}tag:${tag}`;
  }

  #fault(op: string, err: unknown): void {
    this.#counts.faults++;
    this.#report(`drizzle:${op}`, `[edgecache] [drizzle] ${op} failed; the query went on`, err);
  }
}

/**
 * The TTL in ms that `$withCache({ config })` asks for, or undefined for the default.
 * `ex`/`px` are relative (seconds, ms), `exat`/`pxat` absolute (Unix seconds, ms), as in
 * Redis SET; `keepTtl` keeps the expiry of the key's previous put, if it is still ahead.
 */
export function ttlOf(
  config: CacheConfig | undefined,
  now: number,
  previousExpiry: number | undefined,
): number | undefined {
  if (!config) return undefined;
  if (config.px !== undefined) return config.px;
  if (config.ex !== undefined) return config.ex * 1000;
  if (config.pxat !== undefined) return config.pxat - now;
  if (config.exat !== undefined) return config.exat * 1000 - now;
  if (config.keepTtl && previousExpiry !== undefined && previousExpiry > now) {
    return previousExpiry - now;
  }
  return undefined;
}

/**
 * A Drizzle ORM cache on edgecache: pass it as `drizzle(client, { cache })`.
 *
 * @example
 * import { drizzle } from "drizzle-orm/libsql";
 * import { drizzleCache, withTransactions } from "edgecache/drizzle";
 * import { memoryStore } from "edgecache/stores/memory";
 * const db = withTransactions(
 *   drizzle(client, { cache: drizzleCache({ tiers: [memoryStore()], strategy: "all" }) }),
 * );
 */
export function drizzleCache(options: DrizzleCacheOptions): EdgecacheDrizzleCache {
  return new EdgecacheDrizzleCache(options);
}
