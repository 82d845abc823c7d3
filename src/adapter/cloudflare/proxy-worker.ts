import type { Hono } from "hono";
import { edgecacheApp } from "../../app/edgecache-app.ts";
import {
  type CachingProxy,
  createProxy,
  type LearnOptions,
  type OriginRoute,
  type ProxyOptions,
} from "../../app/proxy/index.ts";
import { sharedLearning } from "../../app/proxy/learn/share.ts";
import type { Cache } from "../../core/cache/index.ts";
import { badOption, checkOptionNames, type OptionNames } from "../../core/errors.ts";
import type { DurableChangeLog } from "../../log/durable-object.ts";
import { Background } from "./background.ts";
import type { WorkerLogger } from "./logger.ts";
import {
  type ManifestEnv,
  type ManifestOptions,
  manifestClient,
  manifestPolicy,
  workerManifest,
} from "./manifest-client.ts";
import { IsolateRules } from "./rules-object.ts";
import { type WorkerSettings, workerSettings } from "./variables.ts";
import {
  adminAccess,
  type EdgeCacheOptions,
  type ExecutionContextLike,
  edgeCache,
  isolateLogger,
  type LogEnv,
  peerAddress,
  serveRequest,
} from "./worker.ts";

/**
 * `ttl` (or `EDGECACHE_TTL`) is, here, the freshness of a response that states none, for the
 * origins without a `ttl` of their own (OriginRoute.ttl).
 */
export interface EdgecacheProxyWorkerOptions extends EdgeCacheOptions, ManifestOptions {
  /** The origins, as for `edgecache proxy` (`[{ origin: "https://api.example.com" }]`). */
  origins: OriginRoute[];
  /** Seconds a stored response may be served while the origin fails (0). */
  grace?: number;
  /** Largest body stored, bytes (8 MiB); larger ones stream through. */
  maxCacheableSize?: number;
  /**
   * Client request headers the origin gets besides the default few (as `edgecache proxy`'s
   * forwardHeaders); each is keyed by, as if every answer named it in Vary.
   */
  forwardHeaders?: string[];
  /** URLs (absolute, or paths on the first origin's host) the cron trigger fetches through the proxy. */
  warm?: { urls?: string[] };
  /**
   * Learned invalidation (docs/guides/learned-rules.md): true or the same options as
   * `edgecache proxy`'s. The rules live in a Durable Object of the change log's namespace
   * (`<log name>:rules`), shared by every isolate.
   */
  learn?: boolean | LearnOptions;
}

/** The proxy Worker's bindings and variables: the cache's and the log's, and the manifest's. */
export interface ProxyEnv extends LogEnv, ManifestEnv {}

export interface EdgecacheProxyWorker<E extends ProxyEnv = ProxyEnv> {
  fetch(request: Request, env: E, ctx: ExecutionContextLike): Promise<Response>;
  /**
   * The cron trigger: fetches `warm.urls` through the proxy, storing what may be stored, and
   * arms the manifest's alarm if it is not set (a watchdog: each run sets the next).
   */
  scheduled(controller: unknown, env: E, ctx: ExecutionContextLike): Promise<void>;
}

const C = "proxy-worker";

/** The options EdgecacheProxyWorkerOptions names (checkOptionNames refuses any other). */
export const PROXY_WORKER_OPTIONS: OptionNames<EdgecacheProxyWorkerOptions> = {
  caching: true,
  forwardHeaders: true,
  grace: true,
  kv: true,
  learn: true,
  leaseMs: true,
  logLevel: true,
  logName: true,
  manifest: true,
  manifestConcurrency: true,
  manifestRetry: true,
  maxCacheableSize: true,
  memoryBytes: true,
  mode: true,
  origins: true,
  region: true,
  staleWhileRevalidate: true,
  tierShards: true,
  ttl: true,
  warm: true,
};

/**
 * Proxy mode as a Cloudflare Worker: the same RFC 9111 proxy as `edgecache proxy`
 * (`createProxy`), over memory, the Cache API and KV, with purges and unsafe requests
 * ordered by the Durable Object log. Origin requests use the Worker's `fetch`.
 *
 * @example
 * ```ts
 * import { ChangeLogObject, edgecacheProxyWorker } from "edgecache/cloudflare";
 * export { ChangeLogObject };
 * export default edgecacheProxyWorker({ origins: [{ origin: "https://api.example.com" }] });
 * ```
 */
export function edgecacheProxyWorker<E extends ProxyEnv = ProxyEnv>(
  options: EdgecacheProxyWorkerOptions,
): EdgecacheProxyWorker<E> {
  if (typeof options !== "object" || options === null || !Array.isArray(options.origins)) {
    badOption(C, "origins", "an array of { origin }", options?.origins);
  }
  checkOptionNames(C, options, PROXY_WORKER_OPTIONS);
  manifestPolicy(options);
  const background = new Background();
  let setUp: Promise<ProxyIsolate> | undefined;
  const isolate = (env: E, request?: Request) => {
    setUp ??= (async () => {
      let rules: IsolateRules | undefined;
      // Each change is added to the rules object in the background, a decision before it
      // is answered, and a write acts on rules no older than a sync interval.
      const learn = options.learn ? sharedLearning(options.learn, () => rules) : undefined;
      const made = proxyCache(env, options, background, learn);
      const { cache, proxy, logger } = made;
      if (proxy.learn) {
        rules = new IsolateRules({
          namespace: env.CHANGE_LOG,
          logName: options.logName,
          learner: proxy.learn.learner,
          logger: { warn: (message) => logger.warn(message) },
          background,
        });
      }
      const manifest = isolateManifest(env, options, request);
      if (manifest) background.add(manifest.start());
      const app = edgecacheApp(proxy.app, { cache, proxy, manifest, ...adminAccess(env) });
      return { ...made, app, manifest, rules };
    })();
    setUp.catch(() => {
      setUp = undefined;
    });
    return setUp;
  };
  return {
    fetch: (request, env, ctx) =>
      serveRequest(
        () => isolate(env, request),
        background,
        ctx,
        ({ app, rules }) => {
          rules?.tick();
          return Promise.resolve(app.fetch(request, env, ctx));
        },
        request,
      ),
    async scheduled(_controller, env, ctx) {
      try {
        const { proxy, log, settings, manifest } = await isolate(env);
        // Caching off: warming would only send the origin requests nothing keeps.
        if (!settings.caching) return;
        if (manifest) background.add(manifest.start());
        await log.sync();
        const urls = options.warm?.urls ?? [];
        if (urls.length > 0) await proxy.warm(urls, options.origins[0]!.origin);
      } finally {
        ctx.waitUntil(background.idle());
      }
    },
  };
}

/**
 * The proxy of one isolate (or of the manifest's object): the Worker's cache (`edgeCache`)
 * and `createProxy` over it, with the Worker's `fetch` for the origins; `learn`: an
 * isolate's learning (the manifest's object makes no writes and learns nothing).
 */
export function proxyCache(
  env: ProxyEnv,
  options: EdgecacheProxyWorkerOptions,
  background: Background,
  learn?: LearnOptions,
): {
  cache: Cache;
  log: DurableChangeLog;
  proxy: CachingProxy;
  settings: WorkerSettings;
  logger: WorkerLogger;
} {
  const settings = workerSettings(env, options);
  const logger = isolateLogger(settings, background);
  const { cache, log } = edgeCache(env, settings, options, background, logger);
  const proxy = workerProxy(cache, withTtl(options.origins, settings.ttl), logger, {
    grace: options.grace,
    maxCacheableSize: options.maxCacheableSize,
    forwardHeaders: options.forwardHeaders,
    ...(learn && { learn }),
  });
  return { cache, log, proxy, settings, logger };
}

/**
 * `createProxy` as a Worker runs it: origin requests through the Worker's `fetch`, the
 * client's address from Cloudflare's header, warnings to the isolate's logger.
 */
export function workerProxy(
  cache: Cache,
  routes: OriginRoute[],
  logger: Pick<WorkerLogger, "warn">,
  options: Pick<ProxyOptions, "grace" | "maxCacheableSize" | "forwardHeaders" | "learn"> = {},
): CachingProxy {
  return createProxy({
    ...options,
    cache,
    routes,
    logger: { warn: (message) => logger.warn(message) },
    clientAddress: peerAddress,
    // Workers' fetch takes no `duplex`; a request body streams as it is.
    fetch: (url, init) => fetch(url, { ...init, redirect: "manual" }),
  });
}

/**
 * The isolate's view of the manifest, when there is one: checked first (a bad line fails the
 * isolate's start with E_BAD_OPTION naming it), then kept by the `MANIFEST` object.
 */
function isolateManifest(
  env: ProxyEnv,
  options: EdgecacheProxyWorkerOptions,
  request: Request | undefined,
): ReturnType<typeof manifestClient> | undefined {
  const urls = workerManifest(env, options);
  if (urls.length === 0) return undefined;
  if (typeof env.MANIFEST?.idFromName !== "function") {
    badOption(
      C,
      "env.MANIFEST",
      "the manifest's Durable Object binding (proxyManifestObject) with a manifest",
      env.MANIFEST,
    );
  }
  return manifestClient(env.MANIFEST, request && new URL(request.url).origin);
}

interface ProxyIsolate extends ReturnType<typeof proxyCache> {
  app: Hono;
  manifest: ReturnType<typeof manifestClient> | undefined;
  rules: IsolateRules | undefined;
}

/** The origins, each without a `ttl` of its own given the Worker's (when one is set). */
function withTtl(origins: OriginRoute[], ttl: number | undefined): OriginRoute[] {
  if (ttl === undefined) return origins;
  return origins.map((o) => (o.ttl === undefined ? { ...o, ttl } : o));
}
