import { type Context, Hono } from "hono";
import type { Cache } from "../../core/cache/index.ts";
import type { CacheEntry } from "../../core/entries/entry.ts";
import {
  badOption,
  checkOptionNames,
  EdgecacheError,
  type OptionNames,
} from "../../core/errors.ts";
import { rateLimited } from "../../core/report.ts";
import { ignoringClientRefresh, policyClass, requestDirectives } from "../http-caching/rules.ts";
import { decide, PLAIN, selectVariant, selectVariantNow } from "./decide.ts";
import { forwardedHeaders } from "./headers.ts";
import { type LearnEnv, type LearnOptions, learnEnv } from "./learn/env.ts";
import type { LoadEnv, OriginFetch } from "./load.ts";
import type { Fetched } from "./manifest/keeper.ts";
import { passThrough } from "./pass.ts";
import { type PurgeRequest, purge } from "./purge.ts";
import { errorReply } from "./replies.ts";
import type { OriginRoute } from "./routes.ts";
import {
  baseKey,
  COMPONENT,
  fastKeys,
  forwardedHost,
  keyHost,
  MAX_CACHED_TARGET,
  matchRoute,
  validateRoutes,
} from "./routes.ts";
import { cached, type ServeEnv } from "./serve.ts";
import type { Interim } from "./types.ts";
import { type Ctx, isVaryRecord } from "./types.ts";

export { DEFAULT_FORWARDED_HEADERS, forwardedHeaders } from "./headers.ts";
// The proxy by concern: routes.ts (routing and keys), serve.ts (answering GET and HEAD from
// the cache or one shared origin request), load.ts and store.ts (the origin request and
// what is stored), revalidate.ts (conditional requests and 304s), pass.ts (other methods,
// and invalidation by unsafe ones), purge.ts, headers.ts and replies.ts.
export type { LearnOptions, LearnStats } from "./learn/env.ts";
export type { Rule, RuleState } from "./learn/rules.ts";
export type { OriginFetch } from "./load.ts";
export type { Fetched } from "./manifest/keeper.ts";
export type { PurgeRequest } from "./purge.ts";
export {
  type ClientDirectives,
  MAX_CACHED_TARGET,
  type OriginRoute,
  type Route,
  validateRoutes,
} from "./routes.ts";
export type { Interim } from "./types.ts";

export interface ProxyOptions {
  cache: Cache;
  routes: OriginRoute[];
  fetch?: OriginFetch;
  /** Largest body stored, bytes (8 MiB). Larger ones stream through. */
  maxCacheableSize?: number;
  /**
   * Seconds a stored response may still be served when the origin is down or answers
   * 500, 502, 503 or 504, where no directive forbids it (0: only `stale-if-error` does).
   */
  grace?: number;
  /**
   * Request headers to send to the origin besides DEFAULT_FORWARDED_HEADERS (Accept,
   * Accept-Encoding, Accept-Language, Authorization, Cache-Control, Cookie, Origin, Pragma):
   * each is keyed by, as if every answer named it in Vary. Other client headers never reach
   * an origin request whose answer may be stored (docs/operating/security.md).
   */
  forwardHeaders?: string[];
  /** The client's address for X-Forwarded-For (the runtime knows it). */
  clientAddress?: (c: Context) => string | undefined;
  /** How interim (1xx) responses reach this request's client, where the runtime can. */
  interim?: (c: Context) => Interim | undefined;
  now?: () => number;
  /** Where failed origin requests are reported (console), at most once per 10 s. */
  logger?: { warn(message: string): void };
  /**
   * Learned invalidation: after successful writes, sampled cached reads are asked again and
   * rules learned from which changed; confident ones invalidate on later writes.
   */
  learn?: LearnOptions;
}

export interface WarmResult {
  url: string;
  status: number;
  cacheStatus: string | null;
}

/** Every option of ProxyOptions: checkOptionNames refuses any other. */
const OPTIONS: OptionNames<ProxyOptions> = {
  cache: true,
  clientAddress: true,
  fetch: true,
  forwardHeaders: true,
  grace: true,
  interim: true,
  learn: true,
  logger: true,
  maxCacheableSize: true,
  now: true,
  routes: true,
};
export interface CachingProxy {
  /** Answers every request (mount the admin API before it). */
  app: Hono;
  /**
   * The synchronous hit lookup of a runtime's fast path: the fresh memory-tier entry that
   * answers this GET or HEAD as a plain hit (counted), or undefined when the app must
   * answer (a miss, a stale entry, or request headers that need more than a lookup).
   */
  peekHit(
    method: string,
    target: string,
    host: string,
    header: (name: string) => string | undefined,
  ): CacheEntry | undefined;
  /** Removes entries by tag, URL or path prefix from every tier; resolves with how many. */
  purge(request: PurgeRequest): Promise<number>;
  /** Fetches URLs (paths resolve against `base`) through the proxy, storing what may be. */
  warm(urls: string[], base: string): Promise<WarmResult[]>;
  /** Whether `host` (a URL's, with its port) is one a route names or a route's origin's. */
  serves(host: string): boolean;
  /**
   * Fetches an absolute URL as a client's GET would be answered, without counting it as a
   * client's read (the manifest keeper's fetch); `refresh` asks the origin even when a
   * fresh copy is held. Says how it was answered and what is stored for it now.
   */
  keep(url: string, refresh: boolean): Promise<Fetched>;
  /** Waits for origin requests in flight (background refreshes included). */
  drain(): Promise<void>;
  /** Learned invalidation, when turned on: its rules and counts. */
  learn: LearnEnv | undefined;
}

const DEFAULT_MAX_CACHEABLE = 8 * 1024 * 1024;
/** peekHit's lookups: counted once it knows which key answered (one object for every hit). */
const UNCOUNTED = { count: false } as const;

/**
 * Proxy mode: an HTTP cache (RFC 9111, shared) in front of origin APIs, on the tiered
 * engine. Fresh hits come from the tiers; misses of one key make one origin request;
 * stale entries are revalidated with a conditional request, served while revalidating
 * (stale-while-revalidate) or when the origin fails (stale-if-error, grace); an unsafe
 * request that succeeds invalidates its URL. Portable: the origin request goes through
 * `fetch` (injected by the runtime).
 *
 * @example
 * const proxy = createProxy({ cache, routes: [{ origin: "http://127.0.0.1:3000" }] });
 * app.route("/", proxy.app);
 */
export function createProxy(options: ProxyOptions): CachingProxy {
  checkOptionNames("proxy", options, OPTIONS);
  const { cache } = options;
  const routes = validateRoutes(options.routes);
  const now = options.now ?? Date.now;
  const maxSize = options.maxCacheableSize ?? DEFAULT_MAX_CACHEABLE;
  if (!Number.isSafeInteger(maxSize) || maxSize < 0) {
    badOption(COMPONENT, "maxCacheableSize", "an integer number of bytes >= 0", maxSize);
  }
  const grace = options.grace ?? 0;
  if (typeof grace !== "number" || !(grace >= 0)) {
    badOption(COMPONENT, "grace", "a number of seconds >= 0", grace);
  }
  const originFetch: OriginFetch =
    options.fetch ??
    ((url, init) =>
      fetch(url, { ...init, redirect: "manual", ...(init.body && { duplex: "half" }) }));
  const report = rateLimited(options.logger ?? console, now);
  const forward = forwardedHeaders(options.forwardHeaders, COMPONENT);
  const load: LoadEnv = {
    cache,
    originFetch,
    Policy: policyClass(now),
    now,
    maxSize,
    grace,
    forward,
  };
  const learn = options.learn ? learnEnv(options.learn, routes, now) : undefined;
  if (learn) learn.refetch = warm;
  const env: ServeEnv & { learn?: LearnEnv } = {
    ...load,
    ...(learn && { learn }),
    inflight: new Map(),
    reportDown: (error) =>
      report("origin", `[edgecache] [proxy] origin request failed: ${String(error)}`),
  };
  const fastKey = fastKeys(routes);
  // What serves() answers to: the hosts routes name (with or without a port, as matchRoute
  // takes them) and the origins'.
  const routeHosts = new Set(
    routes.flatMap((r) => [(r.host ?? "").toLowerCase(), r.originUrl.host]),
  );
  routeHosts.delete("");

  /** Every request the proxy answers: a client's (through `app`) or the manifest's. */
  async function handle(
    request: Request,
    from: Pick<Ctx, "clientAddress" | "interim" | "background" | "refresh">,
  ): Promise<Response> {
    const url = new URL(request.url);
    const route = matchRoute(routes, url.host, url.pathname);
    if (!route) {
      return errorReply(
        new EdgecacheError(
          "E_NOT_FOUND",
          COMPONENT,
          `no origin route for host "${url.host}" and path "${url.pathname}"`,
        ),
        "bypass",
      );
    }
    const read = request.method === "GET" || request.method === "HEAD";
    // A read the route ignores clients' refresh directives for is answered, and its origin
    // request made, as if they had not been sent; what is passed through keeps them.
    const headers =
      read && route.clientDirectives === "ignore"
        ? ignoringClientRefresh(request.headers)
        : request.headers;
    // The scheme the runtime says it was asked by (a Node listener's own; never a client's
    // absolute-form target, which the server answers as its origin-form).
    const scheme = url.protocol.slice(0, -1);
    const asked = requestDirectives(headers);
    const ctx: Ctx = {
      route,
      host: keyHost(route, url.host, scheme),
      forwardedHost: forwardedHost(route, url.host),
      scheme,
      target: url.pathname + url.search,
      url,
      method: request.method,
      headers,
      // Edgecache's own refresh after the route's filter, which is for clients' directives.
      directives: from.refresh ? { ...asked, noCache: true } : asked,
      ...from,
    };
    if (!read) return passThrough(env, ctx, request.body);
    if (!cache.enabled) {
      // Caching off: each read is its own origin request (no coalescing), counted.
      cache.countRead(ctx.target, "bypass");
      return passThrough(env, { ...ctx, headers: request.headers }, null, "bypass", "cache-off");
    }
    if (ctx.target.length > MAX_CACHED_TARGET) {
      return passThrough(
        env,
        { ...ctx, headers: request.headers },
        null,
        "bypass",
        "target-too-long",
      );
    }
    return cached(env, ctx);
  }

  const app = new Hono();
  app.all("*", (c) =>
    handle(c.req.raw, {
      clientAddress: options.clientAddress?.(c),
      interim: options.interim?.(c),
    }),
  );

  function peekHit(
    method: string,
    target: string,
    host: string,
    header: (name: string) => string | undefined,
  ): CacheEntry | undefined {
    if (method !== "GET" && method !== "HEAD") return undefined;
    // Credentials or a Range take the full path.
    if (header("authorization") !== undefined || header("range") !== undefined) return undefined;
    const found = fastKey(target, host);
    if (found === null) return undefined;
    // So does anything the request says about caching, unless its route ignores all of it.
    const cacheControl = header("cache-control");
    if (cacheControl !== undefined || header("pragma") !== undefined) {
      if (found.route.clientDirectives !== "ignore") return undefined;
      const kept = ignoringClientRefresh(new Headers({ "cache-control": cacheControl ?? "" }));
      if (kept.has("cache-control")) return undefined;
    }
    const selected = selectVariantNow(found.key, header, (k) => cache.peek(k, UNCOUNTED));
    // What cache.peek returns is fresh: the same decision as the app's, for a plain request.
    if (!selected?.entry || decide(selected.entry, PLAIN, now()).kind !== "hit") return undefined;
    // A stored piece (a 206, RFC 9111 3.3) answers only Range requests, which take the app.
    if (selected.entry.status === 206) return undefined;
    cache.countRead(selected.key, "hit");
    return selected.entry;
  }

  async function warm(urls: string[], base: string): Promise<WarmResult[]> {
    const results: WarmResult[] = [];
    const queue = [...urls.entries()];
    // A few at a time, so a long list does not flood the origin.
    const worker = async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        const [i, u] = next;
        const absolute = new URL(u, base);
        const res = await app.request(absolute.href);
        await res.body?.cancel();
        results[i] = {
          url: absolute.href,
          status: res.status,
          cacheStatus: res.headers.get("cache-status"),
        };
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    return results;
  }

  async function keep(url: string, refresh: boolean): Promise<Fetched> {
    // `refresh` has a held copy validated with the origin (RFC 9111 5.2.1.4's no-cache, as
    // a parameter: a client's header would be dropped on a route that ignores them), and
    // what comes back is stored as a client's request would store it.
    const res = await handle(new Request(url), {
      clientAddress: undefined,
      interim: undefined,
      background: true,
      refresh,
    });
    await res.body?.cancel();
    const stored = await storedFor(url);
    return {
      status: res.status,
      cacheStatus: res.headers.get("cache-status"),
      ...(stored && { stored: { createdAt: stored.createdAt, freshUntil: stored.freshUntil } }),
    };
  }

  /** The stored response a plain request for `url` selects (no headers, so no Vary'd values). */
  async function storedFor(url: string): Promise<CacheEntry | undefined> {
    const u = new URL(url);
    const route = matchRoute(routes, u.host, u.pathname);
    if (!route) return undefined;
    const base = baseKey(u.pathname + u.search, keyHost(route, u.host, u.protocol.slice(0, -1)));
    const { entry } = await selectVariant(
      base,
      () => undefined,
      (k) => cache.getEntry(k, UNCOUNTED),
    );
    return entry && !isVaryRecord(entry) ? entry : undefined;
  }

  async function drain(): Promise<void> {
    while (env.inflight.size > 0) {
      await Promise.allSettled([...env.inflight.values()].map((f) => f.promise));
    }
  }

  return {
    app,
    peekHit,
    purge: (request) => purge(cache, request),
    warm,
    serves: (host) => {
      const h = host.toLowerCase();
      return routeHosts.has(h) || routeHosts.has(h.replace(/:\d+$/, ""));
    },
    keep,
    drain,
    learn,
  };
}
