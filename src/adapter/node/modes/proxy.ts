import { readFileSync, renameSync, writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { resolve } from "node:path";
import type { HttpBindings } from "@hono/node-server";
import type { Hono } from "hono";
import { addressSet, clientAddress } from "../../../app/access.ts";
import type { ManifestView } from "../../../app/admin.ts";
import { edgecacheApp } from "../../../app/edgecache-app.ts";
import { endToEnd } from "../../../app/http-caching/rules.ts";
import {
  type CachingProxy,
  createProxy,
  type LearnOptions,
  type OriginRoute,
  type Rule,
} from "../../../app/proxy/index.ts";
import { sharedLearning } from "../../../app/proxy/learn/share.ts";
import type { ManifestKeeper } from "../../../app/proxy/manifest/keeper.ts";
import type { Cache } from "../../../core/cache/index.ts";
import type { CacheEntry } from "../../../core/entries/entry.ts";
import { checkOptionNames, type OptionNames } from "../../../core/errors.ts";
import type { Store } from "../../../core/store.ts";
import type { RedisSetting } from "../cluster.ts";
import { cacheLogger, type Logger, nodeLogger } from "../logging.ts";
import type { NodeMetrics } from "../metrics.ts";
import { adminAccess, type HitRequest, peerAddress, type RunningServer } from "../server/server.ts";
import { assemble, modeServer } from "./assembly.ts";
import { type CacheFile, withCacheFile } from "./cache-file.ts";
import { type SharedRules, shareRules } from "./learned-rules-redis.ts";
import { nodeManifest } from "./manifest.ts";
import type { SharedManifest } from "./manifest-shared.ts";
import { nodeOriginFetch } from "./origin-fetch.ts";

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
  /** The dependency index's heap at most, bytes (64 MiB). */
  index?: { maxBytes?: number };
  /** With a token the admin API needs `Authorization: Bearer <token>`; else loopback only. */
  adminToken?: string;
  /** Reverse proxies whose X-Forwarded-For is believed (admin access, the origin's X-Forwarded-For). */
  trustedProxies?: string[];
  /** Host names the node answers to besides the loopback ones, `hostname` and the origins' `host`s. */
  allowedHosts?: string[];
  /** Working directory that relative paths resolve against. */
  cwd?: string;
  /** Largest body stored, bytes (8 MiB); larger ones stream through. */
  maxCacheableSize?: number;
  /** Seconds stored content may be served when the origin is down or answers 5xx (0). */
  grace?: number;
  /**
   * Client request headers the origin gets besides the default few (ProxyOptions
   * forwardHeaders); each is keyed by, as if every answer named it in Vary.
   */
  forwardHeaders?: string[];
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
  /**
   * URLs kept cached (docs/guides/proxy.md, "Keeping URLs cached"): a manifest file's path,
   * or its lines. Fetched when the node listens, and again before each expires.
   */
  manifest?: string | readonly string[];
  /** Manifest fetches at once (4). */
  manifestConcurrency?: number;
  /** Manifest retry delays, ms: the first (1000), doubling up to the longest (300000). */
  manifestRetry?: { minMs?: number; maxMs?: number };
}

export interface NodeProxy {
  app: Hono;
  cache: Cache;
  /**
   * The manifest's keeper, when there is a manifest (started by `listen`); with Redis, the
   * node's part in the one keeper of the cluster (`view`: the state every node shows).
   */
  manifest: ManifestKeeper | SharedManifest | undefined;
  /** The cache's tiers, fastest first, as this node assembled them. */
  tiers: readonly Store[];
  proxy: CachingProxy;
  /** Its Prometheus metrics (served at /_edgecache/metrics). */
  metrics: NodeMetrics;
  listen(): Promise<RunningServer>;
  close(): Promise<void>;
}

/** Every option of NodeProxyOptions: checkOptionNames refuses any other. */
const OPTIONS: OptionNames<NodeProxyOptions> = {
  adminToken: true,
  allowedHosts: true,
  cacheFile: true,
  cwd: true,
  disk: true,
  forwardHeaders: true,
  grace: true,
  hostname: true,
  index: true,
  learn: true,
  logLevel: true,
  logger: true,
  manifest: true,
  manifestConcurrency: true,
  manifestRetry: true,
  maxCacheableSize: true,
  memory: true,
  notFound: true,
  now: true,
  origins: true,
  port: true,
  redis: true,
  tenant: true,
  trustedProxies: true,
};
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
  checkOptionNames("proxy", options, OPTIONS);
  const cwd = options.cwd ?? process.cwd();
  const now = options.now ?? Date.now;
  const trusted = addressSet("proxy", "trustedProxies", options.trustedProxies);
  const file = options.cacheFile ?? DEFAULT_PROXY_CACHE_FILE;
  const cachePath = file === false ? undefined : resolve(cwd, file);
  const log = options.logger ?? nodeLogger(options.logLevel);
  return withCacheFile(cachePath, { ...options.disk, now, logger: log }, (file) =>
    open(options, { now, trusted, file, log }),
  );
}

async function open(
  options: NodeProxyOptions,
  at: {
    now: () => number;
    trusted: ReturnType<typeof addressSet>;
    file: CacheFile;
    log: Logger;
  },
): Promise<NodeProxy> {
  const { now, trusted, file, log } = at;
  // The origins name the deployment: proxies of the same origins share a Redis prefix.
  const origins = options.origins.map((o) => [o.host, o.pathPrefix, o.origin]);
  const node = await assemble({
    file,
    memory: options.memory,
    now,
    redis: options.redis,
    deployment: `proxy:${JSON.stringify(origins)}`,
    resume: (stamp) => stamp?.log,
    cache: { rehydrate: false, notFound: options.notFound, index: options.index },
    tenant: options.tenant,
    logger: log,
  });
  const { cache, cluster, metrics, tiers } = node;
  const origin = nodeOriginFetch();
  let proxy: CachingProxy;
  let sharing: SharedRules | undefined;
  let manifest: ManifestKeeper | SharedManifest | undefined;
  try {
    proxy = createProxy({
      cache,
      routes: options.origins,
      fetch: origin.fetch,
      maxCacheableSize: options.maxCacheableSize,
      grace: options.grace,
      forwardHeaders: options.forwardHeaders,
      now,
      ...(options.learn && {
        learn: cluster
          ? // Rules live in Redis (see `shareRules`), not in a file: each change is added at once.
            sharedLearning(options.learn, () => sharing && { changed: () => void sharing?.sync() })
          : learnWithFile(options.learn, file.path, log),
      }),
      // A trusted proxy without X-Forwarded-For is the client as far as anyone knows.
      clientAddress: (c) =>
        clientAddress(peerAddress(c), (h) => c.req.header(h), trusted) ?? peerAddress(c),
      interim: (c) => {
        const res = (c.env as HttpBindings | undefined)?.outgoing;
        return res && ((status, headers) => relayInterim(res, status, headers));
      },
    });
    // Read and checked now, so that a bad manifest stops the start; fetched from listen.
    manifest =
      options.manifest === undefined
        ? undefined
        : nodeManifest(
            {
              manifest: options.manifest,
              concurrency: options.manifestConcurrency,
              retry: options.manifestRetry,
              cwd: options.cwd ?? process.cwd(),
              hostname: options.hostname,
              now,
              cluster,
              logger: cacheLogger(log),
            },
            proxy,
          );
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
    await node.close(false);
    origin.close();
    throw err;
  }

  const learning = proxy.learn;
  if (learning) metrics.watchLearning(() => learning.stats);
  // With Redis, what every node shows is the keeper's state there.
  const manifestView = manifest && viewOf(manifest);
  if (manifestView) metrics.watchManifest(manifestView.summary);
  const app = edgecacheApp(proxy.app, {
    cache,
    token: options.adminToken,
    ...adminAccess(options),
    proxy,
    manifest: manifestView,
    metrics,
    cacheFile: file.status,
    now,
  });
  const server = modeServer(app, log, {
    port: options.port,
    hostname: options.hostname,
    allowedHosts: options.allowedHosts,
    routedHosts: options.origins.flatMap((o) => (o.host === undefined ? [] : [o.host])),
    now,
    findHit: hitFinder(proxy),
  });
  return {
    app,
    cache,
    tiers,
    proxy,
    manifest,
    metrics,
    async listen() {
      const running = await server.listen();
      manifest?.start();
      return running;
    },
    async close() {
      await manifest?.stop();
      await server.close();
      await proxy.drain();
      await cache.drain();
      await sharing?.close();
      await node.close({});
      origin.close();
      file.release();
    },
  };
}

/** What a manifest's admin routes and metric show: with Redis, the shared state. */
function viewOf(manifest: ManifestKeeper | SharedManifest): ManifestView {
  return "view" in manifest ? manifest.view : manifest;
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

/** The proxy's hit lookup for startServer's fast paths. */
export function hitFinder(proxy: CachingProxy): (req: HitRequest) => CacheEntry | undefined {
  return (req) =>
    proxy.peekHit(req.method!, req.url!, req.headers.host!, (name) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v.join(", ") : v;
    });
}

/**
 * Sends an origin's interim response on (RFC 9110 15.2: a proxy forwards 1xx responses):
 * 102 and 103 (its fields end to end; node:http sends a 103 only with a Link), which are
 * what node:http can write. Never a 100: node:http has answered a client's
 * `Expect: 100-continue` itself before the request reached the app, so the origin's would
 * be a second one, and a client that asked for none (HTTP/1.0 among them, RFC 9110 15.2
 * forbids it any 1xx) waits for none. Once the final response has begun, it is too late.
 */
function relayInterim(res: ServerResponse, status: number, headers: Headers): void {
  if (res.headersSent || res.writableEnded) return;
  try {
    if (status === 102) res.writeProcessing();
    else if (status === 103) {
      const hints: Record<string, string> = {};
      for (const [name, value] of endToEnd(headers)) hints[name] = value;
      res.writeEarlyHints(hints);
    }
  } catch {
    // A Link node:http refuses: the hint is dropped, the response itself is unaffected.
  }
}
