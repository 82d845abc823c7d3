import { badOption, checkOptionNames, type OptionNames } from "../core/errors.ts";
import type { ListableStore } from "../core/store.ts";
import {
  digestedStart,
  guarded,
  isLivePacked,
  MAX_TTL_MS,
  packedHeader,
  packFor,
  storageName,
  unavailable,
  unpackFor,
} from "./edge-entry.ts";

/**
 * The part of a Workers KV binding (`KVNamespace`) this store uses, declared here so no
 * Cloudflare type is needed to build or use it.
 */
export interface KvNamespaceLike {
  get(key: string, type: "arrayBuffer"): Promise<ArrayBuffer | null>;
  put(
    key: string,
    value: ArrayBuffer | ArrayBufferView,
    options?: { expirationTtl?: number; metadata?: unknown },
  ): Promise<void>;
  delete(key: string): Promise<void>;
  list(options?: { prefix?: string; cursor?: string; limit?: number }): Promise<{
    keys: { name: string; expiration?: number; metadata?: unknown }[];
    list_complete: boolean;
    cursor?: string;
  }>;
}

export interface KvStoreOptions {
  /** The KV namespace binding (`env.CACHE` in a Worker). */
  namespace: KvNamespaceLike;
  /** Put before every key, so apps sharing one namespace keep apart. Default `"edgecache:"`. */
  prefix?: string;
  /** Tier name in stats and logs. Default `"kv"`. */
  name?: string;
  /** Clock in epoch milliseconds, for fake clocks in tests. Default `Date.now`. */
  now?: () => number;
}

/** KV keeps an entry at least this long: a shorter `expirationTtl` is refused. */
export const KV_MIN_TTL_SECONDS = 60;
/** KV key names are at most this many UTF-8 bytes; longer keys are stored under a digest. */
export const KV_MAX_KEY_BYTES = 512;
/** KV values are at most 25 MiB; a larger entry is not stored. */
export const KV_MAX_VALUE_BYTES = 25 * 1024 * 1024;
/**
 * KV takes about this many writes per second to one key; beyond it a put may fail (429).
 * A failed put is E_STORE_UNAVAILABLE like any other, which the engine counts and gets
 * past: the entry is then served from another tier or loaded again, never stale, since
 * what KV returns is checked against the change log.
 */
export const KV_WRITES_PER_SECOND_PER_KEY = 1;
/** Keys per page of `list`, KV's maximum. */
const KV_LIST_LIMIT = 1000;
/**
 * KV operations in flight at once for one call. A Worker invocation may make about 1000
 * KV operations in all, and a delete costs two per key (a read to count, then the delete).
 */
const KV_PARALLEL = 50;

const COMPONENT = "kv";

/** The options KvStoreOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<KvStoreOptions> = {
  name: true,
  namespace: true,
  now: true,
  prefix: true,
};
const DEFAULT_PREFIX = "edgecache:";
const utf8 = new TextEncoder();

/** KV refuses these names outright; they are stored under a digest. */
function refusedByKv(name: string): boolean {
  return name === "" || name === "." || name === "..";
}

/** List metadata: when the entry expires (`x`, null: never), and whether the name is a digest (`d`). */
interface ListMetadata {
  x: number | null;
  d?: 1;
}

/**
 * A global tier in Workers KV. Expiry is exact on this store's clock: each value records
 * when it expires, and KV's own `expirationTtl` (at least `KV_MIN_TTL_SECONDS`) only
 * collects it later. Keys longer than `KV_MAX_KEY_BYTES` are stored under their start and
 * a SHA-256 digest; entries larger than `KV_MAX_VALUE_BYTES` are not stored (`set`
 * removes the old one and fails with E_STORE_UNAVAILABLE, so the engine counts it).
 *
 * KV is eventually consistent: another location may see a set or a delete up to about
 * 60 s late, and KV takes about one write per second per key. Correctness therefore does
 * not rest on this tier's deletes; see the README.
 *
 * @example
 * ```ts
 * export default {
 *   async fetch(request, env) {
 *     const cache = createCache({ tiers: [memoryStore(), kvStore({ namespace: env.CACHE })] });
 *   },
 * };
 * ```
 */
export function kvStore(options: KvStoreOptions): ListableStore {
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  checkOptionNames(COMPONENT, options, OPTIONS);
  const { namespace, prefix = DEFAULT_PREFIX, name = COMPONENT, now = Date.now } = options;
  if (typeof namespace !== "object" || namespace === null || typeof namespace.get !== "function") {
    badOption(COMPONENT, "namespace", "a KV namespace binding", namespace);
  }
  if (typeof prefix !== "string") badOption(COMPONENT, "prefix", "a string", prefix);
  const prefixBytes = utf8.encode(prefix).byteLength;
  // A digested name still needs room for some of the key after the prefix.
  if (prefixBytes > KV_MAX_KEY_BYTES / 2) {
    badOption(COMPONENT, "prefix", `at most ${KV_MAX_KEY_BYTES / 2} bytes`, prefix);
  }
  if (typeof name !== "string" || name === "") badOption(COMPONENT, "name", "a tier name", name);
  if (typeof now !== "function") badOption(COMPONENT, "now", "a function", now);
  const maxNameBytes = KV_MAX_KEY_BYTES - prefixBytes;

  function nameOf(key: string) {
    return storageName(key, maxNameBytes, refusedByKv);
  }

  const guard = <T>(what: string, call: () => Promise<T>) => guarded(COMPONENT, what, call);

  /** The packed value under `key`'s name, when it is `key`'s live entry. */
  async function readLive(key: string) {
    const stored = await nameOf(key);
    const value = await guard("get failed", () =>
      namespace.get(prefix + stored.name, "arrayBuffer"),
    );
    if (value === null) return undefined;
    const bytes = new Uint8Array(value);
    return isLivePacked(COMPONENT, bytes, key, stored.name, now()) ? { bytes, stored } : undefined;
  }

  return {
    name,

    async get(key) {
      const live = await readLive(key);
      return live === undefined ? undefined : unpackFor(COMPONENT, key, live.bytes);
    },

    async set(key, entry, ttlMs) {
      const stored = await nameOf(key);
      const full = prefix + stored.name;
      // A write replaces whatever was there, so an already expired one removes it.
      if (!(ttlMs > 0)) {
        await guard("set failed", () => namespace.delete(full));
        return;
      }
      const forever = ttlMs > MAX_TTL_MS;
      const { bytes, expiresAt } = packFor(COMPONENT, key, stored, entry, ttlMs, now());
      if (bytes.byteLength > KV_MAX_VALUE_BYTES) {
        await guard("set failed", () => namespace.delete(full));
        throw unavailable(
          COMPONENT,
          `entry of ${bytes.byteLength} bytes exceeds KV's ${KV_MAX_VALUE_BYTES}-byte value limit; not stored`,
        );
      }
      const metadata: ListMetadata = stored.digested ? { x: expiresAt, d: 1 } : { x: expiresAt };
      await guard("set failed", () =>
        namespace.put(full, bytes, {
          metadata,
          ...(forever
            ? {}
            : { expirationTtl: Math.max(KV_MIN_TTL_SECONDS, Math.ceil(ttlMs / 1000)) }),
        }),
      );
    },

    async delete(keys) {
      let count = 0;
      for (let i = 0; i < keys.length; i += KV_PARALLEL) {
        const batch = keys.slice(i, i + KV_PARALLEL);
        // KV's delete does not say whether the key existed: a read first counts live ones.
        const existed = await Promise.all(
          batch.map(async (key) => {
            const live = await readLive(key);
            const stored = live?.stored ?? (await nameOf(key));
            await guard("delete failed", () => namespace.delete(prefix + stored.name));
            return live !== undefined;
          }),
        );
        for (const yes of existed) if (yes) count++;
      }
      return count;
    },

    async *keys(keyPrefix) {
      // A digested name starts with its key cut to the same length, so listing by the
      // prefix cut that way finds every candidate; each is then checked in full.
      const listPrefix = prefix + digestedStart(keyPrefix, maxNameBytes);
      let cursor: string | undefined;
      do {
        const page = await guard("keys failed", () =>
          namespace.list({
            prefix: listPrefix,
            limit: KV_LIST_LIMIT,
            ...(cursor === undefined ? {} : { cursor }),
          }),
        );
        const at = now();
        for (const listed of page.keys) {
          const metadata = listed.metadata as Partial<ListMetadata> | undefined;
          if (typeof metadata?.x === "number" && at >= metadata.x) continue;
          const relative = listed.name.slice(prefix.length);
          if (metadata?.d !== 1) {
            if (relative.startsWith(keyPrefix)) yield relative;
            continue;
          }
          const value = await guard("keys failed", () => namespace.get(listed.name, "arrayBuffer"));
          if (value === null) continue;
          const key = packedHeader(new Uint8Array(value)).key;
          if (key?.startsWith(keyPrefix)) yield key;
        }
        cursor = page.list_complete ? undefined : page.cursor;
      } while (cursor !== undefined);
    },
  };
}
