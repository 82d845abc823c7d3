import { readFileSync, renameSync, writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { resolve } from "node:path";
import type { HttpBindings } from "@hono/node-server";
import { Hono } from "hono";
import { addressSet, clientAddress } from "../../app/access.ts";
import { createAdminApi } from "../../app/admin.ts";
import { dashboardPage } from "../../app/dashboard.ts";
import { notFound, onError, validUrl } from "../../app/errors.ts";
import {
  type CachingProxy,
  createProxy,
  type LearnOptions,
  type OriginRoute,
  type Rule,
} from "../../app/proxy.ts";
import { Cache } from "../../core/cache.ts";
import type { CacheEntry } from "../../core/entry.ts";
import { endToEnd } from "../../core/http-cache.ts";
import { isClosable, type Store } from "../../core/store.ts";
import { localChangeLog } from "../../log/in-process.ts";
import { memoryStore } from "../../stores/memory.ts";
import { sqliteStore } from "../../stores/sqlite.ts";
import { joinCluster, type RedisSetting } from "./cluster.ts";
import { type FileLock, openLocked } from "./file-lock.ts";
import { type SharedRules, shareRules } from "./learned-rules-redis.ts";
import { cacheLogger, type Logger, nodeLogger, serverLogging } from "./log.ts";
import { type NodeMetrics, nodeMetrics } from "./metrics.ts";
import { nodeOriginFetch } from "./origin-fetch.ts";
import {
  adminAccess,
  type HitRequest,
  peerAddress,
  type RunningServer,
  startServer,
} from "./server.ts";
import { leaveStamp, takeStamp } from "./source-stamp.ts";

export interface NodeProxyOptions {
  /** Origins, chosen by the request's host and path prefix (most specific first). */
  origins: OriginRoute[];
  port?: number;
  hostname?: string;
  /** SQLite file of the persistent tier (./edgecache-proxy.cache.db), or false for memory only. */
  cacheFile?: string | false;
  /** Memory tier bounds (50 MB, 100 000 entries). */
  memory?: { maxBytes?: number; maxEntries?: number };
  /** Bounds of the cache file (256 MiB, 100 000 entries). */
  disk?: { maxBytes?: number; maxEntries?: number };
  /** Cached 404 and 410 responses kept at once (10 000). */
  notFound?: { maxEntries?: number };
  /** With a token the admin API needs `Authorization: Bearer <token>`; else loopback only. */
  adminToken?: string;
  /** Reverse proxies whose X-Forwarded-For is believed (admin access, the origin's X-Forwarded-For). */
  trustedProxies?: string[];
  /** Host names the admin API answers to besides the loopback ones and `hostname`. */
  allowedHosts?: string[];
  /** Working directory that relative paths resolve against. */
  cwd?: string;
  /** Largest body stored, bytes (8 MiB); larger ones stream through. */
  maxCacheableSize?: number;
  /** Seconds stored content may be served when the origin is down or answers 5xx (0). */
  grace?: number;
  /** Clock, epoch ms (tests use fake ones). */
  now?: () => number;
  /** Redis shared by several proxy nodes: purges and unsafe requests reach every node. */
  redis?: RedisSetting;
  /** Of the JSON log on stdout: "warn" by default; "info" logs every request. */
  logLevel?: string;
  /** A logger of one's own instead (tests capture the lines). */
  logger?: Logger;
  /** The tenant it serves: its metrics carry `tenant`, without process metrics. */
  tenant?: string;
  /** Learned invalidation (README, "Learned invalidation"): true or its options. */
  learn?: boolean | LearnOptions;
}

export interface NodeProxy {
  app: Hono;
  cache: Cache;
  proxy: CachingProxy;
  /** Its Prometheus metrics (served at /_edgecache/metrics). */
  metrics: NodeMetrics;
  listen(): Promise<RunningServer>;
  close(): Promise<void>;
}

export const DEFAULT_PROXY_CACHE_FILE = "edgecache-proxy.cache.db";

/**
 * Proxy mode on Node: memory and SQLite tiers (entries survive a restart), the caching
 * proxy in front of the origins, the admin API under /_edgecache, and a server whose fast
 * path answers fresh memory hits without Hono.
 *
 * @example
 * const node = await createNodeProxy({ origins: [{ origin: "http://127.0.0.1:3000" }], port: 8788 });
 * const { url } = await node.listen();
 */
export async function createNodeProxy(options: NodeProxyOptions): Promise<NodeProxy> {
  const cwd = options.cwd ?? process.cwd();
  const now = options.now ?? Date.now;
  const trusted = addressSet("proxy", "trustedProxies", options.trustedProxies);
  const file = options.cacheFile ?? DEFAULT_PROXY_CACHE_FILE;
  const cachePath = file === false ? undefined : resolve(cwd, file);
  const log = options.logger ?? nodeLogger(options.logLevel);
  return openLocked(cachePath, (lock) => open(options, { now, trusted, cachePath, lock, log }));
}

async function open(
  options: NodeProxyOptions,
  at: {
    now: () => number;
    trusted: ReturnType<typeof addressSet>;
    cachePath: string | undefined;
    lock: FileLock | undefined;
    log: Logger;
  },
): Promise<NodeProxy> {
  const { now, trusted, cachePath, lock, log } = at;
  const tiers: Store[] = [memoryStore({ ...options.memory, now })];
  // This process holds the file's lock, so a damaged one can be put aside and replaced.
  if (cachePath) tiers.push(sqliteStore({ path: cachePath, now, ...options.disk, repair: true }));
  // The origins name the deployment: proxies of the same origins share a Redis prefix.
  const origins = options.origins.map((o) => [o.host, o.pathPrefix, o.origin]);
  const cluster =
    options.redis === undefined
      ? undefined
      : await joinCluster(options.redis, `proxy:${JSON.stringify(origins)}`);
  if (cluster) tiers.push(...cluster.shared);
  // Entries stored before a clean restart carry positions of the log it left: resume it, so
  // they can still be checked (a crash leaves no stamp, and they are refused).
  const local = cluster
    ? undefined
    : localChangeLog({ resume: cachePath ? takeStamp(cachePath)?.log : undefined });
  const metrics = nodeMetrics({ tenant: options.tenant });
  const cache = new Cache({
    tiers,
    now,
    rehydrate: false,
    notFound: options.notFound,
    log: cluster?.log ?? local!,
    observer: metrics.observer,
    logger: cacheLogger(log),
  });
  metrics.watch(cache);
  const origin = nodeOriginFetch();
  let proxy: CachingProxy;
  let sharing: SharedRules | undefined;
  try {
    proxy = createProxy({
      cache,
      routes: options.origins,
      fetch: origin.fetch,
      maxCacheableSize: options.maxCacheableSize,
      grace: options.grace,
      now,
      ...(options.learn && {
        learn: cluster
          ? learnShared(options.learn, () => sharing)
          : learnWithFile(options.learn, cachePath, log),
      }),
      // A trusted proxy without X-Forwarded-For is the client as far as anyone knows.
      clientAddress: (c) =>
        clientAddress(peerAddress(c), (h) => c.req.header(h), trusted) ?? peerAddress(c),
      interim: (c) => {
        const res = (c.env as HttpBindings | undefined)?.outgoing;
        return res && ((status, headers) => relayInterim(res, status, headers));
      },
    });
    // With Redis, learned rules are the deployment's: shared by every node, kept in Redis.
    if (cluster && proxy.learn) {
      sharing = await shareRules({
        client: cluster.client,
        prefix: cluster.prefix,
        learner: proxy.learn.learner,
        logger: cacheLogger(log),
      });
    }
  } catch (err) {
    await cluster?.close();
    await closeTiers(tiers);
    origin.close();
    throw err;
  }

  const learning = proxy.learn;
  if (learning) metrics.watchLearning(() => learning.stats);
  const app = new Hono();
  app.onError(onError);
  app.use(validUrl);
  // The dashboard's page (no data in it) at /_edgecache/ too: a sub-app's "/" is /_edgecache.
  app.get("/_edgecache/", dashboardPage);
  app.route(
    "/_edgecache",
    createAdminApi({
      cache,
      token: options.adminToken,
      ...adminAccess(options),
      proxy,
      metrics,
      now,
    }),
  );
  // Reserved: never forwarded to an origin.
  app.all("/_edgecache/*", notFound);
  app.route("/", proxy.app);

  let running: RunningServer | undefined;
  return {
    app,
    cache,
    proxy,
    metrics,
    async listen() {
      running = await startServer({
        app,
        port: options.port,
        hostname: options.hostname,
        now,
        findHit: hitFinder(proxy),
        ...serverLogging(log),
      });
      return running;
    },
    async close() {
      await running?.close();
      await proxy.drain();
      await cache.drain();
      await sharing?.close();
      await cluster?.close(); // first: see createNodeEdgecache's close
      await closeTiers(tiers);
      origin.close();
      if (!cluster && cachePath && local) leaveStamp(cachePath, { log: local.snapshot() });
      lock?.release();
    },
  };
}

/**
 * Learned rules persist beside the cache file (`<cache file>.rules.json`), so a restart
 * keeps what was learned and what an operator decided; written on each change (a small
 * file, after a write's learning at most) through a temporary file and a rename, so a
 * crash never leaves half a file.
 */
function learnWithFile(
  setting: true | LearnOptions,
  cachePath: string | undefined,
  log: Logger,
): LearnOptions {
  const options = setting === true ? {} : setting;
  if (!cachePath) return options;
  const path = `${cachePath}.rules.json`;
  let initial: Rule[] | undefined;
  try {
    const parsed = JSON.parse(readFileSync(path, "utf8")) as { rules?: Rule[] };
    if (Array.isArray(parsed.rules)) initial = parsed.rules;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      log.warn({ msg: `[edgecache] [proxy] learned rules in ${path} not read: ${String(err)}` });
    }
  }
  const write = (rules: Rule[]) => {
    try {
      writeFileSync(`${path}.tmp`, JSON.stringify({ rules }));
      renameSync(`${path}.tmp`, path);
    } catch (err) {
      log.warn({ msg: `[edgecache] [proxy] learned rules not saved to ${path}: ${String(err)}` });
    }
  };
  return {
    ...options,
    initial: [...(initial ?? []), ...(options.initial ?? [])],
    onChange(rules) {
      options.onChange?.(rules);
      write(rules);
    },
  };
}

/**
 * Learning on nodes that share Redis: rules live there (see `shareRules`), not in a file;
 * each change a node makes is added to them at once.
 */
function learnShared(
  setting: true | LearnOptions,
  sharing: () => SharedRules | undefined,
): LearnOptions {
  const options = setting === true ? {} : setting;
  return {
    ...options,
    onChange(rules) {
      options.onChange?.(rules);
      void sharing()?.sync();
    },
  };
}

/** The proxy's hit lookup for startServer's fast paths. */
export function hitFinder(proxy: CachingProxy): (req: HitRequest) => CacheEntry | undefined {
  return (req) =>
    proxy.peekHit(req.method!, req.url!, req.headers.host!, (name) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v.join(", ") : v;
    });
}

async function closeTiers(tiers: Store[]): Promise<void> {
  for (const tier of tiers) if (isClosable(tier)) await tier.close();
}

/**
 * Sends an origin's interim response on (RFC 9110 15.2: a proxy forwards 1xx responses):
 * 100, 102 and 103 (its fields end to end; node:http sends a 103 only with a Link), which
 * are what node:http can write. Once the final response has begun, it is too late.
 */
function relayInterim(res: ServerResponse, status: number, headers: Headers): void {
  if (res.headersSent || res.writableEnded) return;
  try {
    if (status === 100) res.writeContinue();
    else if (status === 102) res.writeProcessing();
    else if (status === 103) {
      const hints: Record<string, string> = {};
      for (const [name, value] of endToEnd(headers)) hints[name] = value;
      res.writeEarlyHints(hints);
    }
  } catch {
    // A Link node:http refuses: the hint is dropped, the response itself is unaffected.
  }
}
