import type { Cluster, Redis } from "ioredis";
import { decodeEntry, encodeEntry } from "../core/entry.ts";
import { badOption, EdgecacheError } from "../core/errors.ts";
import type { ClosableStore, ListableStore } from "../core/store.ts";
import type { RedisClient, RedisConnectOptions } from "./redis-connect.ts";
import { connectRedis } from "./redis-connect.ts";

export interface RedisStoreOptions extends RedisConnectOptions {
  /**
   * Put before every key, so deployments (or apps) sharing one Redis keep apart.
   * Default `"edgecache:"`.
   */
  prefix?: string;
  /** Tier name in stats and logs. Default `"redis"`. */
  name?: string;
}

const COMPONENT = "redis";
const DEFAULT_PREFIX = "edgecache:";
/** Keys SCAN looks at per call: a hint to Redis, not a bound on the reply. */
const SCAN_COUNT = 500;
/** UNLINKs in flight at once, so a large invalidation does not queue unbounded commands. */
const DELETE_BATCH = 1000;
/**
 * Redis takes PX as a 64-bit integer of ms; a ttl beyond 2^53 ms (285,000 years, or
 * Infinity) is stored without expiry.
 */
const MAX_TTL_MS = Number.MAX_SAFE_INTEGER;

/**
 * A shared tier in Redis (or a Redis Cluster): entries outlive the process and are seen by
 * every node. Expiry is Redis's own (`SET ... PX`), on its clock. Every operation fails
 * with E_STORE_UNAVAILABLE within `commandTimeout`, also on a client passed in, so a Redis
 * that is down or stalled costs hit rate, never a hung request. Needs the optional peer
 * dependency `ioredis`. `entry.meta` must be JSON-serialisable.
 *
 * @example
 * ```ts
 * const redis = await redisStore({ url: "redis://127.0.0.1:6379", prefix: "shop:" });
 * const cache = createCache({ tiers: [memoryStore(), redis] });
 * // or share the app's client (a Cluster works too); close() then leaves it open:
 * const shared = await redisStore({ client: new Redis(process.env.REDIS_URL) });
 * ```
 */
export async function redisStore(
  options: RedisStoreOptions,
): Promise<ListableStore & ClosableStore> {
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  const { prefix = DEFAULT_PREFIX, name = COMPONENT } = options;
  if (typeof prefix !== "string") badOption(COMPONENT, "prefix", "a string", prefix);
  if (typeof name !== "string" || name === "") badOption(COMPONENT, "name", "a tier name", name);

  const { client, owned, commandTimeout } = await connectRedis(COMPONENT, options);

  /** Runs client calls within the command timeout, turning failures into E_STORE_UNAVAILABLE. */
  async function guard<T>(what: string, call: () => Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no reply within ${commandTimeout} ms`)),
        commandTimeout,
      );
    });
    try {
      return await Promise.race([call(), timeout]);
    } catch (error) {
      throw unavailable(what, error);
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    name,

    async get(key) {
      const value = await guard("get failed", () => client.getBuffer(prefix + key));
      if (value === null) return undefined;
      try {
        // A copy: the reply may be a view into the socket's read buffer, which a body
        // kept in the memory tier must not pin.
        return decodeEntry(new Uint8Array(value));
      } catch (error) {
        throw unavailable(`corrupt entry under ${JSON.stringify(key)}`, error);
      }
    },

    async set(key, entry, ttlMs) {
      // A write replaces whatever was there, so an already expired one (ttl 0, negative,
      // NaN) just removes the old entry.
      if (!(ttlMs > 0)) {
        await guard("set failed", () => client.unlink(prefix + key));
        return;
      }
      let bytes: Uint8Array;
      try {
        bytes = encodeEntry(entry);
      } catch (error) {
        throw unavailable("cannot serialise entry (meta must be JSON)", error);
      }
      const value = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      await guard("set failed", () =>
        ttlMs > MAX_TTL_MS
          ? client.set(prefix + key, value)
          : client.set(prefix + key, value, "PX", Math.ceil(ttlMs)),
      );
    },

    async delete(keys) {
      let count = 0;
      for (let i = 0; i < keys.length; i += DELETE_BATCH) {
        const batch = keys.slice(i, i + DELETE_BATCH);
        // One UNLINK per key, sent together (auto-pipelined): the keys of a Redis Cluster
        // live in different slots, which one multi-key command cannot span.
        const counts = await guard("delete failed", () =>
          Promise.all(batch.map((key) => client.unlink(prefix + key))),
        );
        for (const n of counts) count += n;
      }
      return count;
    },

    async *keys(keyPrefix) {
      const match = `${escapeGlob(prefix + keyPrefix)}*`;
      // SCAN may return a key twice (while Redis resizes its table); listing stays exact.
      const seen = new Set<string>();
      for (const node of masters(client)) {
        let cursor = "0";
        do {
          const [next, found] = await guard("keys failed", () =>
            node.scan(cursor, "MATCH", match, "COUNT", SCAN_COUNT),
          );
          cursor = next;
          for (const key of found) {
            if (seen.has(key)) continue;
            seen.add(key);
            yield key.slice(prefix.length);
          }
        } while (cursor !== "0");
      }
    },

    async close() {
      if (!owned) return;
      // QUIT lets replies in flight arrive; disconnect() then stops the reconnect loop,
      // also when Redis is away and QUIT failed: either way the connection is released.
      await guard("close failed", () => client.quit()).catch(() => {});
      client.disconnect();
    },
  };
}

/** The nodes whose keys together are the whole keyspace: each master of a cluster. */
function masters(client: RedisClient): Redis[] {
  if (!client.isCluster) return [client as Redis];
  const nodes = (client as Cluster).nodes("master");
  if (nodes.length === 0) throw unavailable("keys failed: no cluster master known yet");
  return nodes;
}

/** Escapes the characters SCAN MATCH treats as a pattern, so a prefix matches only itself. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}

function unavailable(what: string, cause?: unknown): EdgecacheError {
  return new EdgecacheError("E_STORE_UNAVAILABLE", COMPONENT, what, { cause });
}
