import { existsSync } from "node:fs";
import { resolve } from "node:path";
import Database from "better-sqlite3";
import { Hono } from "hono";
import { createAdminApi } from "../../app/admin.ts";
import { dashboardPage } from "../../app/dashboard.ts";
import { createDataApi, type DataApi } from "../../app/data-api.ts";
import { notFound, onError } from "../../app/errors.ts";
import { Cache } from "../../core/cache.ts";
import { type LogStart, localChangeLog } from "../../core/change-log.ts";
import type { InvalidationPolicy } from "../../core/deps/planner.ts";
import { EdgecacheError } from "../../core/errors.ts";
import { isClosable, type ListableStore, type Store } from "../../core/store.ts";
import { demoViews, isSeeded, seedDemo } from "../../demo/seed.ts";
import { sqliteSource } from "../../sources/sqlite.ts";
import { memoryStore } from "../../stores/memory.ts";
import { sqliteStore } from "../../stores/sqlite.ts";
import { joinCluster } from "./cluster.ts";
import type { EdgecacheConfig } from "./config.ts";
import { type FileLock, openLocked } from "./file-lock.ts";
import { cacheLogger, type Logger, nodeLogger, serverLogging } from "./log.ts";
import { type NodeMetrics, nodeMetrics } from "./metrics.ts";
import { adminAccess, type RunningServer, startServer } from "./server.ts";
import { databaseStamp, leaveStamp, takeStamp } from "./source-stamp.ts";

export interface NodeEdgecacheOptions extends EdgecacheConfig {
  /** Working directory that relative paths resolve against. */
  cwd?: string;
  /** SQLite file of the demo when no `database` is configured (./edgecache.db). */
  demoDatabase?: string;
  /** Demo size when the demo database is created. */
  demo?: { users?: number; orders?: number };
  adminToken?: string;
  policy?: InvalidationPolicy;
  rehydrate?: boolean;
  /** Of the JSON log on stdout: "warn" by default; "info" logs every request. */
  logLevel?: string;
  /** A logger of one's own instead (tests capture the lines). */
  logger?: Logger;
  /** The tenant it serves: its metrics carry `tenant`, without process metrics. */
  tenant?: string;
}

export interface NodeEdgecache {
  app: Hono;
  cache: Cache;
  api: DataApi;
  /** Whether the embedded demo database is served. */
  demo: boolean;
  databasePath: string;
  /** Its Prometheus metrics (served at /_edgecache/metrics). */
  metrics: NodeMetrics;
  listen(): Promise<RunningServer>;
  close(): Promise<void>;
}

/**
 * Wires the single-process setup: a SQLite source, memory and SQLite cache tiers, the
 * data API under /v1 and the admin API under /_edgecache.
 */
export async function createNodeEdgecache(
  options: NodeEdgecacheOptions = {},
): Promise<NodeEdgecache> {
  const cwd = options.cwd ?? process.cwd();
  const logger = options.logger ?? nodeLogger(options.logLevel);
  const demo = options.database === undefined;
  const databasePath = resolve(cwd, options.database ?? options.demoDatabase ?? "edgecache.db");
  if (!demo && !existsSync(databasePath)) {
    throw new EdgecacheError(
      "E_BAD_OPTION",
      "config",
      `database: no SQLite file at ${databasePath}`,
    );
  }
  const cacheFile =
    options.cacheFile === undefined
      ? databasePath.replace(/(\.db)?$/, ".cache.db")
      : options.cacheFile;
  const cachePath = cacheFile === false ? undefined : resolve(cwd, cacheFile);
  return openLocked(cachePath, (lock) =>
    open(options, { demo, databasePath, cachePath, lock, logger }),
  );
}

async function open(
  options: NodeEdgecacheOptions,
  at: {
    demo: boolean;
    databasePath: string;
    cachePath: string | undefined;
    lock: FileLock | undefined;
    logger: Logger;
  },
): Promise<NodeEdgecache> {
  const { demo, databasePath, cachePath, lock, logger } = at;
  const stampAtStart = databaseStamp(databasePath);
  const db = new Database(databasePath);
  // WAL: readers (other processes, the cache's own reads) proceed while a write commits.
  db.pragma("journal_mode = WAL");
  if (demo && !isSeeded(db)) seedDemo(db, options.demo);
  const source = sqliteSource({
    database: db,
    views: demo ? demoViews : (options.views ?? []),
    busyTimeout: options.busyTimeout === undefined ? undefined : options.busyTimeout * 1000,
  });

  const tiers: Store[] = [memoryStore(options.memory)];
  // Many nodes share a Redis change log: entries are checked against it, whoever wrote
  // them. One node has its own log, resumed across clean restarts (see source-stamp.ts).
  const cluster =
    options.redis === undefined
      ? undefined
      : await joinCluster(options.redis, `sqlite:${databasePath}`, {
          start: stampAtStart,
          current: () => databaseStamp(databasePath),
        });
  let resume: LogStart | undefined;
  if (cachePath) {
    // This process holds the file's lock, so a damaged one can be put aside and replaced.
    const persistent = sqliteStore({ path: cachePath, ...options.disk, repair: true });
    const stamp = cluster ? undefined : takeStamp(cachePath);
    if (stamp?.database === stampAtStart) resume = stamp.log;
    else if (!cluster) {
      // Its entries belong to a log that is gone: they would all be refused. Free the room.
      const n = await clear(persistent);
      if (n > 0) {
        console.warn(
          `[edgecache] [cache] ${cachePath}: emptied ${n} entries; the database may have changed while edgecache was stopped`,
        );
      }
    }
    tiers.push(persistent);
  }
  if (cluster) tiers.push(...cluster.shared);
  const local = cluster ? undefined : localChangeLog({ resume });
  const log = cluster?.log ?? local!;
  const metrics = nodeMetrics({ tenant: options.tenant });
  const cache = new Cache({
    tiers,
    log,
    observer: metrics.observer,
    logger: cacheLogger(logger),
    ttl: (options.ttl ?? 86_400) * 1000,
    staleWhileRevalidate: (options.staleWhileRevalidate ?? 0) * 1000,
    policy: options.policy,
    notFound: options.notFound,
    rehydrate: options.rehydrate === false ? false : undefined,
  });
  metrics.watch(cache);
  const api = await createDataApi({ source, cache, routes: options.routes });

  const app = new Hono();
  app.onError(onError);
  // The dashboard's page (no data in it) at /_edgecache/ too: a sub-app's "/" is /_edgecache.
  app.get("/_edgecache/", dashboardPage);
  app.route(
    "/_edgecache",
    createAdminApi({ cache, token: options.adminToken, metrics, ...adminAccess(options) }),
  );
  app.route("/", api.app);
  app.notFound(notFound);

  let running: RunningServer | undefined;
  return {
    app,
    cache,
    api,
    demo,
    databasePath,
    metrics,
    async listen() {
      running = await startServer({
        app,
        cache,
        port: options.port,
        hostname: options.hostname,
        ...serverLogging(logger),
      });
      return running;
    },
    async close() {
      await running?.close();
      await cache.drain();
      cache.setWriteHooks({}); // no refetch from here on
      db.close();
      // Leave the log before the tiers close (no record arrives after), and after the
      // database (the stamp it leaves is of the closed files).
      await cluster?.close();
      for (const tier of tiers) if (isClosable(tier)) await tier.close();
      if (!cluster && cachePath && local) {
        leaveStamp(cachePath, { database: databaseStamp(databasePath), log: local.snapshot() });
      }
      lock?.release();
    },
  };
}

async function clear(store: ListableStore): Promise<number> {
  const keys: string[] = [];
  for await (const key of store.keys("")) keys.push(key);
  return keys.length > 0 ? store.delete(keys) : 0;
}
