import type { Hono } from "hono";
import { edgecacheApp } from "../../app/edgecache-app.ts";
import { sharedLearning } from "../../app/proxy/learn/share.ts";
import {
  type CachingProxy,
  createProxy,
  type LearnOptions,
  type OriginRoute,
} from "../../app/proxy.ts";
import { badOption } from "../../core/errors.ts";
import type { DurableChangeLog } from "../../log/durable-object.ts";
import { Background } from "./background.ts";
import type { WorkerLogger } from "./logger.ts";
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
export interface EdgecacheProxyWorkerOptions extends EdgeCacheOptions {
  /** The origins, as for `edgecache proxy` (`[{ origin: "https://api.example.com" }]`). */
  origins: OriginRoute[];
  /** Seconds a stored response may be served while the origin fails (0). */
  grace?: number;
  /** Largest body stored, bytes (8 MiB); larger ones stream through. */
  maxCacheableSize?: number;
  /** URLs (absolute, or paths on the first origin's host) the cron trigger fetches through the proxy. */
  warm?: { urls?: string[] };
  /**
   * Learned invalidation (docs/guides/learned-rules.md): true or the same options as
   * `edgecache proxy`'s. The rules live in a Durable Object of the change log's namespace
   * (`<log name>:rules`), shared by every isolate.
   */
  learn?: boolean | LearnOptions;
}

export interface EdgecacheProxyWorker<E extends LogEnv = LogEnv> {
  fetch(request: Request, env: E, ctx: ExecutionContextLike): Promise<Response>;
  /** The cron trigger: fetches `warm.urls` through the proxy, storing what may be stored. */
  scheduled(controller: unknown, env: E, ctx: ExecutionContextLike): Promise<void>;
}

const C = "proxy-worker";

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
export function edgecacheProxyWorker<E extends LogEnv = LogEnv>(
  options: EdgecacheProxyWorkerOptions,
): EdgecacheProxyWorker<E> {
  if (typeof options !== "object" || options === null || !Array.isArray(options.origins)) {
    badOption(C, "origins", "an array of { origin }", options?.origins);
  }
  const background = new Background();
  let setUp: Promise<ProxyIsolate> | undefined;
  const isolate = (env: E) => {
    setUp ??= (async () => {
      const settings = workerSettings(env, options);
      const logger = isolateLogger(settings, background);
      const { cache, log } = edgeCache(env, settings, options, background, logger);
      let rules: IsolateRules | undefined;
      const proxy = createProxy({
        cache,
        routes: withTtl(options.origins, settings.ttl),
        logger: { warn: (message) => logger.warn(message) },
        grace: options.grace,
        maxCacheableSize: options.maxCacheableSize,
        clientAddress: peerAddress,
        // Workers' fetch takes no `duplex`; a request body streams as it is.
        fetch: (url, init) => fetch(url, { ...init, redirect: "manual" }),
        // Each change is added to the rules object in the background, a decision before it
        // is answered, and a write acts on rules no older than a sync interval.
        ...(options.learn && { learn: sharedLearning(options.learn, () => rules) }),
      });
      if (proxy.learn) {
        rules = new IsolateRules({
          namespace: env.CHANGE_LOG,
          logName: options.logName,
          learner: proxy.learn.learner,
          logger: { warn: (message) => logger.warn(message) },
          background,
        });
      }
      const app = edgecacheApp(proxy.app, { cache, proxy, ...adminAccess(env) });
      return { app, log, proxy, settings, logger, rules };
    })();
    setUp.catch(() => {
      setUp = undefined;
    });
    return setUp;
  };
  return {
    fetch: (request, env, ctx) =>
      serveRequest(
        () => isolate(env),
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
        const { proxy, log, settings } = await isolate(env);
        // Caching off: warming would only send the origin requests nothing keeps.
        if (!settings.caching) return;
        await log.sync();
        const urls = options.warm?.urls ?? [];
        if (urls.length > 0) await proxy.warm(urls, options.origins[0]!.origin);
      } finally {
        ctx.waitUntil(background.idle());
      }
    },
  };
}

interface ProxyIsolate {
  app: Hono;
  log: DurableChangeLog;
  proxy: CachingProxy;
  settings: WorkerSettings;
  logger: WorkerLogger;
  rules: IsolateRules | undefined;
}

/** The origins, each without a `ttl` of its own given the Worker's (when one is set). */
function withTtl(origins: OriginRoute[], ttl: number | undefined): OriginRoute[] {
  if (ttl === undefined) return origins;
  return origins.map((o) => (o.ttl === undefined ? { ...o, ttl } : o));
}
