import { badOption, checkOptionNames, type OptionNames } from "../core/errors.ts";
import type { Store } from "../core/store.ts";
import {
  guarded,
  isLivePacked,
  MAX_TTL_MS,
  packFor,
  storageName,
  unpackFor,
} from "./edge-entry.ts";

/** The part of a Workers `Cache` this store uses, declared here (no Cloudflare type). */
export interface CacheLike {
  match(request: Request): Promise<Response | undefined>;
  put(request: Request, response: Response): Promise<void>;
  delete(request: Request): Promise<boolean>;
}

/** The part of the global `caches` (Workers' `CacheStorage`) this store uses. */
export interface CacheStorageLike {
  open(name: string): Promise<CacheLike>;
}

export interface CacheApiStoreOptions {
  /** A cache already opened (`caches.default`). Default: `caches.open(cacheName)`. */
  cache?: CacheLike | Promise<CacheLike>;
  /** The named cache opened when `cache` is not given. Default `"edgecache"`. */
  cacheName?: string;
  /** Tier name in stats and logs. Default `"cache-api"`. */
  name?: string;
  /** Clock in epoch milliseconds, for fake clocks in tests. Default `Date.now`. */
  now?: () => number;
}

/**
 * Keys longer than this (UTF-8 bytes) are stored under a digest, so a request URL stays
 * far below the ~16 KB Cloudflare accepts.
 */
export const CACHE_API_MAX_KEY_BYTES = 1024;
/**
 * The Cache API keeps a response for its `max-age`; an entry without expiry asks for a
 * year (the platform may drop it earlier, as any store may).
 */
export const CACHE_API_FOREVER_SECONDS = 365 * 24 * 60 * 60;
/** Entries are requests to this origin, which nothing serves: only a cache key. */
const KEY_ORIGIN = "https://edgecache.invalid/";
/** Cache API calls in flight at once for one delete. */
const PARALLEL = 50;

const COMPONENT = "cache-api";

/** The options CacheApiStoreOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<CacheApiStoreOptions> = {
  cache: true,
  cacheName: true,
  name: true,
  now: true,
};

declare const caches: CacheStorageLike | undefined;

/**
 * A tier in the Workers Cache API: per data centre, not shared across locations, and not
 * listable (so prefix invalidation reaches it only by key, through the dependency index).
 * Expiry is exact on this store's clock; the response's `max-age` only lets the platform
 * collect it. The Cache API does nothing on `*.workers.dev` routes; it needs a zone.
 *
 * @example
 * ```ts
 * const cache = createCache({ tiers: [memoryStore(), cacheApiStore({ cache: caches.default })] });
 * ```
 */
export function cacheApiStore(options: CacheApiStoreOptions = {}): Store {
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  checkOptionNames(COMPONENT, options, OPTIONS);
  const { cacheName = "edgecache", name = COMPONENT, now = Date.now } = options;
  if (typeof cacheName !== "string" || cacheName === "") {
    badOption(COMPONENT, "cacheName", "a cache name", cacheName);
  }
  if (typeof name !== "string" || name === "") badOption(COMPONENT, "name", "a tier name", name);
  if (typeof now !== "function") badOption(COMPONENT, "now", "a function", now);
  if (options.cache === undefined && typeof caches === "undefined") {
    badOption(COMPONENT, "cache", "a Cache (no global caches here)", options.cache);
  }
  let opened: Promise<CacheLike> | undefined;
  const cache = () => {
    opened ??= Promise.resolve(options.cache ?? caches!.open(cacheName));
    return opened;
  };

  async function requestOf(key: string) {
    const stored = await storageName(key, CACHE_API_MAX_KEY_BYTES);
    return { stored, request: new Request(KEY_ORIGIN + encodeURIComponent(stored.name)) };
  }

  const guard = <T>(what: string, call: () => Promise<T>) => guarded(COMPONENT, what, call);

  async function readLive(key: string) {
    const { stored, request } = await requestOf(key);
    const bytes = await guard("get failed", async () => {
      const response = await (await cache()).match(request);
      return response === undefined ? undefined : new Uint8Array(await response.arrayBuffer());
    });
    if (bytes === undefined) return { request, bytes: undefined };
    const live = isLivePacked(COMPONENT, bytes, key, stored.name, now());
    return { request, bytes: live ? bytes : undefined };
  }

  return {
    name,

    async get(key) {
      const { bytes } = await readLive(key);
      return bytes === undefined ? undefined : unpackFor(COMPONENT, key, bytes);
    },

    async set(key, entry, ttlMs) {
      const { stored, request } = await requestOf(key);
      if (!(ttlMs > 0)) {
        await guard("set failed", async () => (await cache()).delete(request));
        return;
      }
      const forever = ttlMs > MAX_TTL_MS;
      const { bytes } = packFor(COMPONENT, key, stored, entry, ttlMs, now());
      const seconds = forever
        ? CACHE_API_FOREVER_SECONDS
        : Math.min(CACHE_API_FOREVER_SECONDS, Math.ceil(ttlMs / 1000));
      const response = new Response(bytes, {
        headers: {
          "content-type": "application/octet-stream",
          "cache-control": `max-age=${seconds}`,
        },
      });
      await guard("set failed", async () => (await cache()).put(request, response));
    },

    async delete(keys) {
      let count = 0;
      for (let i = 0; i < keys.length; i += PARALLEL) {
        const batch = keys.slice(i, i + PARALLEL);
        // `delete` says whether a response was there, also an expired one: read to count.
        const existed = await Promise.all(
          batch.map(async (key) => {
            const { request, bytes } = await readLive(key);
            await guard("delete failed", async () => (await cache()).delete(request));
            return bytes !== undefined;
          }),
        );
        for (const yes of existed) if (yes) count++;
      }
      return count;
    },
  };
}
