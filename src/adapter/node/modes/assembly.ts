import { createHash } from "node:crypto";
import type { Hono } from "hono";
import { Cache, type CacheOptions } from "../../../core/cache/index.ts";
import type { ChangeLog, LogStart } from "../../../core/change-log/contract.ts";
import { localChangeLog } from "../../../core/change-log/in-process.ts";
import { type OutsideWrites, withOutsideWrites } from "../../../core/change-log/outside-writes.ts";
import { isClosable, isListable, type Store } from "../../../core/store.ts";
import { type MemoryStoreOptions, memoryStore } from "../../../stores/memory.ts";
import { type Cluster, joinCluster, type RedisSetting } from "../cluster.ts";
import { cacheLogger, type Logger, serverLogging } from "../logging.ts";
import { type NodeMetrics, nodeMetrics } from "../metrics.ts";
import { type NodeServerOptions, type RunningServer, startServer } from "../server/server.ts";
import { type CacheFile, dropCacheFile } from "./cache-file.ts";
import { leaveStamp, type Stamp, takeStamp } from "./source-stamp.ts";

/** What a Node mode (the data API, the proxy) asks of the assembly. */
export interface ModeSpec {
  /** The persistent tier's file, opened and locked by this process (see withCacheFile). */
  file: CacheFile;
  memory?: MemoryStoreOptions;
  now?: () => number;
  redis?: RedisSetting;
  /** What the nodes of one deployment share in Redis (their prefix is made from it). */
  deployment: string;
  /** The source's stamp, so nodes over a changed database start over. */
  sourceStamp?: { start: string; current(): string };
  /**
   * Where a single node's log resumes, from the stamp the last clean stop left beside the
   * cache file (undefined: a new log, whose entries in the file would all be refused).
   */
  resume(stamp: Stamp | undefined): LogStart | undefined;
  /** Empty the cache file when a single node's log is not resumed, to free the room. */
  emptyUnresumed?: boolean;
  /** Writes made around this node (change capture): the log waits for them. */
  outside?: OutsideWrites;
  /** The rest of the cache's options. */
  cache: Omit<CacheOptions, "tiers" | "log" | "observer" | "logger" | "now">;
  tenant?: string;
  logger: Logger;
}

/** A node's cache as its mode assembled it: tiers, log and metrics, and how to close them. */
export interface Assembled {
  cache: Cache;
  tiers: Store[];
  cluster: Cluster | undefined;
  metrics: NodeMetrics;
  /** The persistent tier, when there is one (a mode may empty it). */
  persistent: Store | undefined;
  /**
   * Leaves the log (before the tiers close: no record arrives after), closes the tiers and,
   * on a single node, leaves the stamp for the next start (`database`: what it was over;
   * false: none, so the next start empties the file).
   */
  close(leave: { database?: string } | false): Promise<void>;
}

/**
 * The cache every Node mode runs on: this node's memory, the cache file when there is one,
 * and with `redis` the tier and the change log shared by the deployment's nodes; alone, a
 * log of its own, resumed across clean restarts.
 */
export async function assemble(spec: ModeSpec): Promise<Assembled> {
  const { now } = spec;
  const cluster =
    spec.redis === undefined
      ? undefined
      : await joinCluster(spec.redis, spec.deployment, spec.sourceStamp);
  // Entries stored before a clean restart carry positions of the log it left: resume it, so
  // they can still be checked (a crash leaves no stamp, and they are refused).
  const local = cluster
    ? undefined
    : localChangeLog({ resume: await resumeLog(spec), outside: spec.outside });
  // After resumeLog, which may have left the node without its file.
  const { path: cachePath, store: persistent } = spec.file;
  const tiers: Store[] = [memoryStore({ ...spec.memory, ...(now && { now }) })];
  if (persistent) tiers.push(persistent);
  if (cluster) tiers.push(...cluster.shared);
  const { outside } = spec;
  const log: ChangeLog = cluster
    ? outside
      ? withOutsideWrites(cluster.log, outside)
      : cluster.log
    : local!;
  const metrics = nodeMetrics({ tenant: spec.tenant });
  const cache = new Cache({
    ...spec.cache,
    tiers,
    log,
    ...(now && { now }),
    sha256: (data) => createHash("sha256").update(data).digest("hex"),
    observer: metrics.observer,
    logger: cacheLogger(spec.logger),
  });
  metrics.watch(cache);
  return {
    cache,
    tiers,
    cluster,
    metrics,
    persistent,
    async close(leave) {
      await cluster?.close();
      for (const tier of tiers) {
        // A tier that cannot close (its file's disk gone) must not keep the rest open.
        if (isClosable(tier)) {
          await tier.close().catch((err: unknown) => {
            spec.logger.warn(
              `[edgecache] [cache] closing the ${tier.name} tier failed (${(err as Error).message})`,
            );
          });
        }
      }
      if (local && cachePath && leave) {
        // A full or read-only filesystem costs the next start its entries, not this stop.
        try {
          leaveStamp(cachePath, {
            ...leave,
            log: { ...local.snapshot(), history: cache.history() },
          });
        } catch (err) {
          spec.logger.warn(
            `[edgecache] [cache] cannot leave the stamp beside ${cachePath} (${(err as Error).message}): the next start empties the file`,
          );
        }
      }
    },
  };
}

/**
 * Where a single node's log resumes (see ModeSpec.resume), the stamp beside the cache file
 * consumed. A failure of the file on the way (the stamp cannot be removed, emptying the file
 * finds the disk full or read-only) leaves the node without it, with one warning: a start
 * never fails for its cache file, and a new log is safe with no file to resume.
 */
async function resumeLog(spec: ModeSpec): Promise<LogStart | undefined> {
  const { file } = spec;
  if (file.path === undefined || file.store === undefined) return spec.resume(undefined);
  const { path, store } = file;
  try {
    const resume = spec.resume(takeStamp(path));
    if (resume === undefined && spec.emptyUnresumed && isListable(store)) {
      // Every entry would be refused: free the room.
      const keys: string[] = [];
      for await (const key of store.keys("")) keys.push(key);
      const n = keys.length > 0 ? await store.delete(keys) : 0;
      if (n > 0) {
        console.warn(
          `[edgecache] [cache] ${path}: emptied ${n} entries; the database may have changed while edgecache was stopped`,
        );
      }
    }
    return resume;
  } catch (err) {
    await dropCacheFile(file, err, spec.logger);
    return undefined;
  }
}

/** A mode's server: `listen` starts it, `close` stops it first of all. */
export function modeServer(
  app: Hono,
  logger: Logger,
  options: Omit<NodeServerOptions, "app">,
): { listen(): Promise<RunningServer>; close(): Promise<void> } {
  let running: RunningServer | undefined;
  return {
    async listen() {
      running = await startServer({ app, ...options, ...serverLogging(logger) });
      return running;
    },
    async close() {
      await running?.close();
    },
  };
}
