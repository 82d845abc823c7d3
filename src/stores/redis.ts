import type { Cluster, Redis } from "ioredis";
import type { Cost } from "../core/cost.ts";
import { type CacheEntry, decodeEntry, encodeEntry } from "../core/entries/entry.ts";
import { badOption, checkOptionNames, EdgecacheError, type OptionNames } from "../core/errors.ts";
import type { BatchStore, ClosableStore, ListableStore } from "../core/store.ts";
import type { RedisClient, RedisConnectOptions } from "../redis/connect.ts";
import { connectRedis, sentAtOnce } from "../redis/connect.ts";

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

/** The options RedisStoreOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<RedisStoreOptions> = {
  client: true,
  cluster: true,
  commandTimeout: true,
  name: true,
  prefix: true,
  url: true,
};
const DEFAULT_PREFIX = "edgecache:";
/** Keys SCAN looks at per call: a hint to Redis, not a bound on the reply. */
const SCAN_COUNT = 500;
/**
 * Keys per UNLINK (on a Cluster, UNLINKs in flight at once), so a large invalidation does
 * not queue unbounded work; as many keys per MGET and per pipeline of SETs.
 */
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
 * dependency `ioredis`. `entry.meta` must be JSON-serialisable. On a client with
 * auto-pipelining (the ones edgecache makes), `GET` and `MGET` are sent at once rather than
 * batched (see `sentAtOnce`), also for the app's own calls on a client it passes in. Each
 * call adds the commands it sends, and the round trips it waits, to the `cost` it is given.
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
): Promise<ListableStore & ClosableStore & BatchStore> {
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  checkOptionNames(COMPONENT, options, OPTIONS);
  const { prefix = DEFAULT_PREFIX, name = COMPONENT } = options;
  if (typeof prefix !== "string") badOption(COMPONENT, "prefix", "a string", prefix);
  if (typeof name !== "string" || name === "") badOption(COMPONENT, "name", "a tier name", name);

  const { client, owned, commandTimeout } = await connectRedis(COMPONENT, options);
  // A read is what a request waits on: not queued behind a batch of sets and deletes in
  // flight (the background's), which across a far link would cost it a second round trip.
  sentAtOnce(client, ["get", "mget"]);

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

  async function set(key: string, entry: CacheEntry, ttlMs: number, cost?: Cost): Promise<void> {
    cost?.add(1);
    // A write replaces whatever was there, so an already expired one (ttl 0, negative,
    // NaN) just removes the old entry.
    if (!(ttlMs > 0)) {
      await guard("set failed", () => client.unlink(prefix + key));
      return;
    }
    const value = encoded(entry);
    await guard("set failed", () =>
      ttlMs > MAX_TTL_MS
        ? client.set(prefix + key, value)
        : client.set(prefix + key, value, "PX", Math.ceil(ttlMs)),
    );
  }

  return {
    name,
    shared: true,

    async get(key, cost) {
      cost?.add(1);
      const value = await guard("get failed", () => client.getBuffer(prefix + key));
      return value === null ? undefined : decoded(key, value);
    },

    async getMany(keys, cost) {
      const found: (CacheEntry | undefined)[] = [];
      for (let i = 0; i < keys.length; i += DELETE_BATCH) {
        const batch = keys.slice(i, i + DELETE_BATCH).map((key) => prefix + key);
        cost?.add(client.isCluster ? batch.length : 1);
        // One MGET; a cluster's keys live in different slots, which one MGET cannot span,
        // so there each key gets a GET, sent together (auto-pipelined, per node).
        const values = await guard("get failed", () =>
          client.isCluster
            ? Promise.all(batch.map((key) => client.getBuffer(key)))
            : client.mgetBuffer(batch),
        );
        values.forEach((value, j) => {
          found.push(value === null ? undefined : decoded(keys[i + j]!, value));
        });
      }
      return found;
    },

    set,

    async setMany(writes, cost) {
      for (let i = 0; i < writes.length; i += DELETE_BATCH) {
        const batch = writes.slice(i, i + DELETE_BATCH);
        const values = batch.map((w) => (w.ttlMs > 0 ? encoded(w.entry) : undefined));
        cost?.add(batch.length);
        if (client.isCluster) {
          // Per key, auto-pipelined per node (a pipeline cannot span a cluster's slots).
          await Promise.all(batch.map((w) => set(w.key, w.entry, w.ttlMs)));
          continue;
        }
        // One pipeline: every SET (or UNLINK, for an expired one) in one round trip.
        const pipeline = (client as Redis).pipeline();
        batch.forEach((w, j) => {
          const value = values[j];
          if (value === undefined) pipeline.unlink(prefix + w.key);
          else if (w.ttlMs > MAX_TTL_MS) pipeline.set(prefix + w.key, value);
          else pipeline.set(prefix + w.key, value, "PX", Math.ceil(w.ttlMs));
        });
        const replies = await guard("set failed", () => pipeline.exec());
        const failed = replies?.find(([error]) => error);
        if (failed) throw unavailable("set failed", failed[0]);
      }
    },

    async delete(keys, cost) {
      let count = 0;
      for (let i = 0; i < keys.length; i += DELETE_BATCH) {
        const batch = keys.slice(i, i + DELETE_BATCH).map((key) => prefix + key);
        cost?.add(client.isCluster ? batch.length : 1);
        // One UNLINK for the batch; on a Redis Cluster one per key, sent together
        // (auto-pipelined per node): its keys live in slots one command cannot span.
        const counts = await guard("delete failed", () =>
          client.isCluster
            ? Promise.all(batch.map((key) => client.unlink(key)))
            : client.unlink(...batch).then((n) => [n]),
        );
        for (const n of counts) count += n;
      }
      return count;
    },

    async *keys(keyPrefix, cost) {
      const match = `${escapeGlob(prefix + keyPrefix)}*`;
      // SCAN may return a key twice (while Redis resizes its table); listing stays exact.
      const seen = new Set<string>();
      for (const node of masters(client)) {
        let cursor = "0";
        do {
          cost?.add(1);
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

/** An entry as stored (encodeEntry), as a Buffer view over the same bytes. */
function encoded(entry: CacheEntry): Buffer {
  let bytes: Uint8Array;
  try {
    bytes = encodeEntry(entry);
  } catch (error) {
    throw unavailable("cannot serialise entry (meta must be JSON)", error);
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function decoded(key: string, value: Buffer): CacheEntry {
  try {
    // A copy: the reply may be a view into the socket's read buffer, which a body kept in
    // the memory tier must not pin.
    return decodeEntry(new Uint8Array(value));
  } catch (error) {
    throw unavailable(`corrupt entry under ${JSON.stringify(key)}`, error);
  }
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
