import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { Hono } from "hono";
import { createDataApi, type DataApi } from "../../../app/data-api.ts";
import { edgecacheApp } from "../../../app/edgecache-app.ts";
import { sourceCheck } from "../../../app/health.ts";
import type { Cache } from "../../../core/cache/index.ts";
import { type CaptureFollower, followCapture, isCapturing } from "../../../core/capture-feed.ts";
import type { InvalidationPolicy } from "../../../core/deps/planner.ts";
import { checkOptionNames, EdgecacheError, type OptionNames } from "../../../core/errors.ts";
import type { Store } from "../../../core/store.ts";
import { connectPostgres } from "../../../database/postgres/connect.ts";
import { CURRENT_TABLES_SQL } from "../../../database/postgres/dialect.ts";
import { openSqliteFile, sqliteFileProblem } from "../../../database/sqlite/file.ts";
import { demoViews, isSeeded, seedDemo } from "../../../demo/seed.ts";
import { seedPostgresDemo } from "../../../demo/seed-postgres.ts";
import { isPostgresUrl, postgresSource, redactUrl } from "../../../sources/postgres.ts";
import type { Source } from "../../../sources/source.ts";
import { sqliteSource } from "../../../sources/sqlite.ts";
import { reloadsLists, shortHash } from "../cluster.ts";
import type { EdgecacheConfig } from "../config.ts";
import { type Logger, nodeLogger } from "../logging.ts";
import type { NodeMetrics } from "../metrics.ts";
import { adminAccess, type RunningServer } from "../server/server.ts";
import { assemble, modeServer } from "./assembly.ts";
import { type CacheFile, withCacheFile } from "./cache-file.ts";
import { databaseStamp } from "./source-stamp.ts";

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
  /** The cache's tiers, fastest first, as this node assembled them. */
  tiers: readonly Store[];
  api: DataApi;
  /** Whether the embedded demo database is served. */
  demo: boolean;
  databasePath: string;
  /** Change capture, when the source has it (installed or not). */
  capture?: CaptureFollower;
  /** Its Prometheus metrics (served at /_edgecache/metrics). */
  metrics: NodeMetrics;
  listen(): Promise<RunningServer>;
  close(): Promise<void>;
}

/** Every option of NodeEdgecacheOptions: checkOptionNames refuses any other. */
const OPTIONS: OptionNames<NodeEdgecacheOptions> = {
  adminToken: true,
  allowedHosts: true,
  allowedOrigins: true,
  busyTimeout: true,
  cacheFile: true,
  cwd: true,
  database: true,
  demo: true,
  demoDatabase: true,
  disk: true,
  hostname: true,
  index: true,
  logLevel: true,
  logger: true,
  memory: true,
  notFound: true,
  policy: true,
  port: true,
  proxy: true,
  redis: true,
  rehydrate: true,
  routes: true,
  staleWhileRevalidate: true,
  tenant: true,
  trustedProxies: true,
  ttl: true,
  views: true,
};
/**
 * Wires the single-process setup: a SQLite source, memory and SQLite cache tiers, the
 * data API under /v1 and the admin API under /_edgecache.
 */
export async function createNodeEdgecache(
  given: NodeEdgecacheOptions = {},
): Promise<NodeEdgecache> {
  checkOptionNames("config", given, OPTIONS);
  // The logger first: a bad level fails before any file or connection is opened.
  const options = { ...given, logger: given.logger ?? nodeLogger(given.logLevel) };
  const cwd = options.cwd ?? process.cwd();
  const named = options.database ?? options.demoDatabase;
  if (named !== undefined && isPostgresUrl(named)) {
    const database = redactUrl(named);
    const cachePath = cachePathOf(options, cwd, `edgecache-${shortHash(database)}.cache.db`);
    return withCacheFile(cachePath, fileOptions(options), (file) =>
      open(options, { file, source: () => openPostgres(options, named) }),
    );
  }
  const demo = options.database === undefined;
  const databasePath = resolve(cwd, named ?? DEMO_FILE);
  // A config naming the demo's own file (as the guides' examples do) before the first start
  // without one made it: made now as that start would have, so the first start works too.
  const seed = demo || (databasePath === resolve(cwd, DEMO_FILE) && !existsSync(databasePath));
  const problem = seed ? undefined : sqliteFileProblem(databasePath);
  if (problem) throw new EdgecacheError("E_BAD_OPTION", "config", `database: ${problem}`);
  const cachePath = cachePathOf(options, cwd, databasePath.replace(/(\.db)?$/, ".cache.db"));
  return withCacheFile(cachePath, fileOptions(options), (file) =>
    open(options, { file, source: async () => openSqlite(options, demo, seed, databasePath) }),
  );
}

/** The demo database's file, in the working directory. */
const DEMO_FILE = "edgecache.db";

function fileOptions(options: NodeEdgecacheOptions & { logger: Logger }) {
  return { ...options.disk, logger: options.logger };
}

function cachePathOf(
  options: NodeEdgecacheOptions,
  cwd: string,
  beside: string,
): string | undefined {
  const cacheFile = options.cacheFile === undefined ? beside : options.cacheFile;
  return cacheFile === false ? undefined : resolve(cwd, cacheFile);
}

/** The database behind the data API, as the node sees it. */
interface OpenedSource {
  source: Source;
  /** Whether the demo schema (and its views) is served. */
  demo: boolean;
  /** The SQLite path, or the PostgreSQL URL without its password. */
  database: string;
  /**
   * A stamp of the database files for a restart to compare, where there are files; a
   * server database has none, so its entries are never resumed (until change capture).
   */
  stamp?: { start: string; current(): string };
  close(): Promise<void>;
}

/** `seed`: make the demo's tables and rows if the file has none (`demo`: serve its views too). */
function openSqlite(
  options: NodeEdgecacheOptions,
  demo: boolean,
  seed: boolean,
  path: string,
): OpenedSource {
  const start = databaseStamp(path);
  const busyTimeout = options.busyTimeout === undefined ? undefined : options.busyTimeout * 1000;
  // WAL: readers (other processes, the cache's own reads) proceed while a write commits.
  const db = openSqliteFile(path, {
    busyTimeout,
    component: "config",
    what: demo ? "the demo database" : "database",
    hint: demo
      ? "pass --db a path where the demo's SQLite file can be made, or an existing one"
      : "name a SQLite file (or a postgres:// URL) in the config's database",
  });
  if (seed && !isSeeded(db)) seedDemo(db, options.demo);
  const source = sqliteSource({
    database: db,
    views: demo ? demoViews : (options.views ?? []),
    busyTimeout,
  });
  return {
    source,
    demo,
    database: path,
    stamp: { start, current: () => databaseStamp(path) },
    async close() {
      db.close();
    },
  };
}

/**
 * A PostgreSQL database: an empty one (no tables in its schema) gets the demo, and a
 * database whose only tables are the demo's is served with the demo's views.
 */
async function openPostgres(options: NodeEdgecacheOptions, url: string): Promise<OpenedSource> {
  const sql = await connectPostgres(url);
  try {
    const tables = await sql.unsafe(CURRENT_TABLES_SQL);
    const names = tables.map((t) => String(t.name)).sort();
    if (names.length === 0) await seedPostgresDemo(sql, options.demo);
    const demo = names.length === 0 || names.join() === "orders,users";
    const [{ schema }] = (await sql.unsafe("SELECT current_schema() AS schema")) as [
      { schema: string },
    ];
    const source = await postgresSource({
      sql,
      schema,
      views: demo ? demoViews : (options.views ?? []),
    });
    return {
      source,
      demo,
      database: redactUrl(url),
      async close() {
        await source.close();
        await sql.end({ timeout: 5 });
      },
    };
  } catch (cause) {
    await sql.end({ timeout: 1 }).catch(() => {});
    if (cause instanceof EdgecacheError) throw cause;
    throw new EdgecacheError(
      "E_SOURCE_UNAVAILABLE",
      "postgres",
      `cannot open database ${redactUrl(url)}: ${(cause as Error).message}`,
      { cause },
    );
  }
}

async function open(
  options: NodeEdgecacheOptions,
  at: { file: CacheFile; source: () => Promise<OpenedSource> },
): Promise<NodeEdgecache> {
  const { file } = at;
  const logger = options.logger ?? nodeLogger(options.logLevel);
  const opened = await at.source();
  const { source, demo, database } = opened;
  // With change capture installed, writes made while edgecache was stopped wait in the
  // change table and are replayed before the node serves: the installation, not the
  // database files, says whether the cache may be resumed.
  const capturing = isCapturing(source) ? source : undefined;
  const captureId = async () => {
    const status = await capturing?.captureStatus();
    return status?.installed ? `capture:${status.id ?? ""}` : undefined;
  };
  const capturedAtStart = await captureId();
  const sourceStamp =
    capturedAtStart !== undefined
      ? { start: capturedAtStart, current: () => capturedAtStart }
      : opened.stamp;

  let follower: CaptureFollower | undefined;
  const feed = capturing?.captureFeed();
  const node = await assemble({
    file,
    memory: options.memory,
    redis: options.redis,
    deployment: `${source.name}:${database}`,
    sourceStamp,
    // A stamp of another database (or none): the file's entries belong to a log that is gone.
    resume: (stamp) =>
      sourceStamp && stamp?.database === sourceStamp.start ? stamp.log : undefined,
    emptyUnresumed: true,
    outside: feed && {
      active: () => follower?.installed ?? capturedAtStart !== undefined,
      pending: () => feed.pending(),
    },
    cache: {
      ttl: (options.ttl ?? 86_400) * 1000,
      staleWhileRevalidate: (options.staleWhileRevalidate ?? 0) * 1000,
      policy: options.policy,
      notFound: options.notFound,
      index: options.index,
      rehydrate:
        options.rehydrate === false
          ? false
          : reloadsLists(options.redis)
            ? { lists: true }
            : undefined,
    },
    tenant: options.tenant,
    logger,
  });
  const { cache, tiers, metrics } = node;
  const api = await createDataApi({
    source,
    cache,
    routes: options.routes,
    allowedOrigins: options.allowedOrigins,
  });
  if (feed) {
    follower = followCapture(cache, feed);
    await follower.caughtUp;
  }

  const app = edgecacheApp(api.app, {
    cache,
    health: { source: sourceCheck(source, api.schema) },
    token: options.adminToken,
    metrics,
    cacheFile: file.status,
    ...(follower && {
      capture: () => ({
        installed: follower.installed,
        leading: follower.leading,
        ...follower.stats(),
      }),
    }),
    ...adminAccess(options),
  });
  const server = modeServer(app, logger, {
    cache,
    port: options.port,
    hostname: options.hostname,
    allowedHosts: options.allowedHosts,
  });
  return {
    app,
    cache,
    tiers,
    api,
    demo,
    databasePath: database,
    capture: follower,
    metrics,
    listen: server.listen,
    async close() {
      await server.close();
      await cache.drain();
      api.detach(); // no refetch from here on
      await follower?.close();
      const capturedAtClose = await captureId().catch(() => undefined);
      // Before the log and tiers (the stamp it leaves is of the closed files).
      await opened.close();
      const stampAtClose = capturedAtClose ?? opened.stamp?.current();
      await node.close(stampAtClose === undefined ? false : { database: stampAtClose });
      file.release();
    },
  };
}
