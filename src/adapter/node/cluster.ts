import { createHash } from "node:crypto";
import { badOption } from "../../core/errors.ts";
import type { Warner } from "../../core/report.ts";
import type { Store } from "../../core/store.ts";
import { DEFAULT_LEASE_MS, type RedisChangeLog, redisChangeLog } from "../../log/redis/index.ts";
import { connectRedis, type RedisClient } from "../../redis/connect.ts";
import { redisStore } from "../../stores/redis.ts";

/**
 * The `redis` setting: a URL, or the URL with the deployment's key prefix, the lease, and
 * whether the URL names a node of a Redis Cluster.
 */
export type RedisSetting =
  | string
  | {
      url: string;
      prefix?: string;
      leaseMs?: number;
      cluster?: boolean;
      /**
       * Reload every list page a write invalidated into Redis (by one node), not only hot
       * ones: other nodes then find it new instead of refusing an old copy. Costs database
       * queries (README, "Many nodes").
       */
      reloadLists?: boolean;
    };

/** Whether a `redis` setting asks for list pages to be reloaded (see `reloadLists`). */
export function reloadsLists(setting: RedisSetting | undefined): boolean {
  return typeof setting === "object" && setting.reloadLists === true;
}

/** What nodes share: the change log, and the tiers every node reads (after its own). */
export interface Cluster {
  log: RedisChangeLog;
  shared: Store[];
  /** The client the log and tier use, and the deployment's key prefix, for more state. */
  client: RedisClient;
  prefix: string;
  /** The log's lease, ms: work one node does for all is held as long (the manifest's keeper). */
  leaseMs: number;
  close(): Promise<void>;
}

/**
 * Joins the nodes that share one Redis: one client for the change log (and the shared
 * tier). Resolves even while Redis is down: the node then serves from the source until the
 * log is reachable (its lease never starts).
 */
export async function joinCluster(
  setting: RedisSetting,
  deployment: string,
  sourceStamp?: { start: string; current(): string },
  logger: Warner = console,
): Promise<Cluster> {
  const {
    url,
    leaseMs,
    cluster,
    prefix: own,
  } = typeof setting === "string" ? { url: setting, prefix: undefined } : setting;
  // Without a prefix of its own, each database (or set of origins) gets one: two apps on
  // one Redis must never read each other's entries or log.
  const prefix = own ?? `edgecache:${shortHash(deployment)}:`;
  if (typeof url !== "string") badOption("config", "redis.url", "a redis:// URL", url);
  const { client } = await connectRedis("redis", { url, cluster });
  try {
    const log = await redisChangeLog({ client, prefix, leaseMs, logger, sourceStamp });
    // Every node's loads land here too; each is checked against the log when read.
    const store = await redisStore({ client, prefix });
    return {
      log,
      shared: [store],
      client,
      prefix,
      leaseMs: leaseMs ?? DEFAULT_LEASE_MS,
      async close() {
        await log.close();
        await store.close();
        client.disconnect();
      },
    };
  } catch (err) {
    client.disconnect();
    throw err;
  }
}

export function shortHash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
}
