import type { Context, ExecutionContext, Hono } from "hono";
import type { AdminOptions, CaptureView } from "../../app/admin.ts";
import { createDataApi, type DataApi } from "../../app/data-api.ts";
import { type DataRoute, validateDataRoutes } from "../../app/data-routes.ts";
import { edgecacheApp } from "../../app/edgecache-app.ts";
import { errorBody, errorResponse } from "../../app/errors.ts";
import { sourceCheck } from "../../app/health.ts";
import { Cache } from "../../core/cache/index.ts";
import type { LogPosition } from "../../core/change-log/contract.ts";
import { requestKey } from "../../core/data/keys.ts";
import type { ViewInfo } from "../../core/data/query.ts";
import {
  badOption,
  checkOptionNames,
  EdgecacheError,
  type OptionNames,
} from "../../core/errors.ts";
import type { Store } from "../../core/store.ts";
import { DurableChangeLog } from "../../log/durable-object.ts";
import { type D1DatabaseLike, d1Source } from "../../sources/d1.ts";
import { type CacheStorageLike, cacheApiStore } from "../../stores/cache-api.ts";
import { durableObjectStore } from "../../stores/durable-object.ts";
import { kvStore } from "../../stores/kv.ts";
import { memoryStore } from "../../stores/memory.ts";
import { Background } from "./background.ts";
import { startPrecompute } from "./cache-tier-object.ts";
import { HotKeysReporter, REPORT_EVERY_MS } from "./hot-keys.ts";
import { type WorkerLogger, workerLogger } from "./logger.ts";
import { requestSession, seenAfter, withSession } from "./session.ts";
import {
  adminTokenVariable,
  allowedHostsVariable,
  DEFAULT_TTL_SECONDS,
  describeSettings,
  EDGE_CACHE_OPTION_NAMES,
  type EdgeCacheOptions,
  type LogEnv,
  type WorkerSettings,
  workerSettings,
} from "./variables.ts";

export type { EdgeCacheOptions, LogEnv };

/**
 * The bindings and variables the Worker reads (names as in `wrangler.jsonc`). Only `DB`
 * and `CHANGE_LOG` are required; without `CACHE` there is no KV tier.
 */
export interface EdgecacheEnv extends LogEnv {
  /** D1: the database the data API serves. */
  DB: D1DatabaseLike;
}

/** A Worker's `ExecutionContext`, as Hono declares it (no Cloudflare type). */
export type ExecutionContextLike = ExecutionContext;

export interface EdgecacheWorkerOptions<E extends EdgecacheEnv = EdgecacheEnv>
  extends EdgeCacheOptions {
  /** Declared views (joins) of the D1 schema. */
  views?: ViewInfo[];
  /**
   * Per resource, seconds: `{ users: { ttl: 60 }, stats: { ttl: 10, staleWhileRevalidate: 300 } }`,
   * and what browsers and CDNs may keep: `{ products: { browser: { maxAge: 60 } } }` (DataRoute).
   */
  routes?: Record<string, DataRoute>;
  /** Runs once per isolate before the schema is read (the demo's seed step). */
  prepare?: (env: E) => Promise<unknown>;
  /**
   * What the cron trigger (`scheduled`) loads into the tiers when missing there: `urls`
   * (paths with their query, such as an expensive aggregate's) and the `hottest` keys by
   * reads counted in every isolate (default 50; 0 counts nothing). `reportMs`: how often an
   * isolate sends its counts (REPORT_EVERY_MS).
   */
  warm?: { urls?: string[]; hottest?: number; reportMs?: number };
  /**
   * D1 read replication (turn it on for the database too): loads read through the Sessions
   * API at the bookmark of the newest write the change log has brought this isolate, so a
   * replica behind an acknowledged write is never read into the cache. Off by default: every
   * query then goes to the primary.
   */
  readReplicas?: boolean;
}

/** What one isolate builds on its first request and keeps. */
export interface EdgecacheIsolate {
  app: Hono;
  cache: Cache;
  api: DataApi;
  log: DurableChangeLog;
  hotKeys: HotKeysReporter | undefined;
  /** What the isolate was made with: its variables over the options. */
  settings: WorkerSettings;
  logger: WorkerLogger;
}

/** What one run of warming loaded. */
export interface WarmRun {
  keys: number;
  failed: number;
}

/** Warming loads this many keys at once. */
const WARM_CONCURRENCY = 4;
/** The hottest keys warmed by default. */
const DEFAULT_HOTTEST = 50;

/** A module Worker: `export default edgecacheWorker(...)`. */
export interface EdgecacheWorker<E extends EdgecacheEnv = EdgecacheEnv> {
  fetch(request: Request, env: E, ctx: ExecutionContextLike): Promise<Response>;
  /** The cron trigger: warms the configured URLs and the hottest keys. */
  scheduled(controller: unknown, env: E, ctx: ExecutionContextLike): Promise<void>;
  /** One warming run, as `scheduled` makes it. */
  warm(env: E): Promise<WarmRun>;
  /**
   * The isolate's setup, made on first use (tests, scheduled work). `request`: the first
   * request, whose `cf` location picks the follower in follower mode.
   */
  isolate(env: E, request?: Request): Promise<EdgecacheIsolate>;
}

declare const caches: (CacheStorageLike & { default?: unknown }) | undefined;

const C = "worker";

/** The options EdgecacheWorkerOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<EdgecacheWorkerOptions> = {
  ...EDGE_CACHE_OPTION_NAMES,
  prepare: true,
  readReplicas: true,
  routes: true,
  views: true,
  warm: true,
};
/** The data API's paths: the reads counted for warming. */
const DATA_PREFIX = "/v1/";

/**
 * The data API and admin API as a Cloudflare Worker: D1 behind memory, Cache API and KV
 * tiers, exact across isolates through the Durable Object change log. Export
 * `ChangeLogObject` beside it (the binding `CHANGE_LOG` names that class).
 *
 * Each request first brings the isolate up to the log (`sync`: every request in strict
 * mode, once per half lease in lease mode); background work (rehydration, refreshes,
 * deletes of refused entries) runs through `ctx.waitUntil`.
 *
 * @example
 * ```ts
 * import { ChangeLogObject, edgecacheWorker } from "edgecache/cloudflare";
 * export { ChangeLogObject };
 * export default edgecacheWorker({ routes: { users: { ttl: 300 } } });
 * ```
 */
export function edgecacheWorker<E extends EdgecacheEnv = EdgecacheEnv>(
  options: EdgecacheWorkerOptions<E> = {},
): EdgecacheWorker<E> {
  if (typeof options !== "object" || options === null)
    badOption(C, "options", "an object", options);
  checkOptionNames(C, options, OPTIONS);
  if (options.prepare !== undefined && typeof options.prepare !== "function") {
    badOption(C, "prepare", "a function", options.prepare);
  }
  // Where the Worker is built, so a bad route fails the deploy, not its first request.
  validateDataRoutes(options.routes, C);
  const background = new Background();
  let setUp: Promise<EdgecacheIsolate> | undefined;

  const isolate = (env: E, request?: Request): Promise<EdgecacheIsolate> => {
    setUp ??= open(env, options, background, regionOf(request));
    // A failed setup (D1 unreachable) is tried again by the next request.
    setUp.catch(() => {
      setUp = undefined;
    });
    return setUp;
  };

  const warm = async (env: E): Promise<WarmRun> => {
    const { api, log, hotKeys, settings } = await isolate(env);
    // Caching off: nothing would be stored, so warming would only load D1.
    if (!settings.caching) return { keys: 0, failed: 0 };
    await log.sync();
    const urls = (options.warm?.urls ?? []).map((path) => {
      const url = new URL(path, "http://warm");
      return requestKey(url.pathname, url.search);
    });
    const hottest = options.warm?.hottest ?? DEFAULT_HOTTEST;
    const hot = hotKeys && hottest > 0 ? await hotKeys.top(hottest) : [];
    const keys = [...new Set([...urls, ...hot])];
    let next = 0;
    let failed = 0;
    // A key already in the tiers is a hit and costs no query; a missing one is loaded.
    const worker = async () => {
      while (next < keys.length) {
        await api.refetch(keys[next++]!).catch(() => failed++);
      }
    };
    await Promise.all(Array.from({ length: WARM_CONCURRENCY }, worker));
    return { keys: keys.length, failed };
  };

  return {
    isolate,
    warm,
    async scheduled(_controller, env, ctx) {
      try {
        // The precompute's alarm re-arms itself; the cron is its watchdog.
        if (env.CACHE_TIER) background.add(startPrecompute(env.CACHE_TIER));
        const run = await warm(env);
        const { logger } = await isolate(env);
        logger.info(`[edgecache] [${C}] warmed ${run.keys} keys, ${run.failed} failed`);
      } finally {
        ctx.waitUntil(background.idle());
      }
    },
    fetch: (request, env, ctx) =>
      serveRequest(
        () => isolate(env, request),
        background,
        ctx,
        async ({ app, hotKeys }) => {
          const response = await app.fetch(request, env, ctx);
          if (hotKeys && request.method === "GET" && response.status === 200) {
            const url = new URL(request.url);
            if (url.pathname.startsWith(DATA_PREFIX)) {
              hotKeys.count(requestKey(url.pathname, url.search));
              background.add(hotKeys.flush());
            }
          }
          return response;
        },
        request,
      ),
  };
}

async function open<E extends EdgecacheEnv>(
  env: E,
  options: EdgecacheWorkerOptions<E>,
  background: Background,
  region: string | undefined,
): Promise<EdgecacheIsolate> {
  if (typeof env.DB?.prepare !== "function") badOption(C, "env.DB", "a D1 binding", env.DB);
  // Before anything is seeded or opened: a bad variable fails the request at once.
  const settings = workerSettings(env, options);
  const logger = isolateLogger(settings, background);
  await options.prepare?.(env);
  const { cache, log } = edgeCache(env, settings, options, background, logger, region);
  const sessions = options.readReplicas
    ? { bookmark: () => log.bookmark, written: (bookmark: string) => log.wrote(bookmark) }
    : undefined;
  // Change capture's marked rows of a write are deleted after its answer (database/d1/change-table.ts).
  const schedule = (work: Promise<unknown>) => background.add(work);
  const source = d1Source({ database: env.DB, views: options.views, schedule, sessions });
  // One write at a time (WriteChain): in a group, a request would wait on a promise only
  // another request settles, which workerd cancels as hung.
  const api = await createDataApi({ source, cache, routes: options.routes, groupWrites: 1 });
  const app = edgecacheApp(api.app, {
    cache,
    health: { source: sourceCheck(source, api.schema) },
    capture: capturedBy(log),
    ...adminAccess(env),
  });
  const counting = settings.caching && (options.warm?.hottest ?? DEFAULT_HOTTEST) > 0;
  const hotKeys = counting
    ? new HotKeysReporter(env.CHANGE_LOG, options.warm?.reportMs ?? REPORT_EVERY_MS)
    : undefined;
  return { app, cache, api, log, hotKeys, settings, logger };
}

/**
 * `capture` in a data API's `/stats`: the captured changes this isolate applied from its log,
 * whichever drain appended them (the log object's alarm, a write's, another isolate's).
 */
export function capturedBy(log: DurableChangeLog): () => CaptureView {
  return () => ({ applied: log.capturedApplied() });
}

/** The isolate's logger at its level, which its background work reports to too. */
export function isolateLogger(settings: WorkerSettings, background: Background): WorkerLogger {
  const logger = workerLogger(settings.logLevel);
  background.report = logger.warn;
  logger.info(`[edgecache] [${C}] isolate started: ${describeSettings(settings)}`);
  return logger;
}

/**
 * The cache of one isolate: memory, the Durable Object tier (with `CACHE_TIER` bound), the
 * Cache API and (unless KV is off) KV, all checked against the Durable Object log; background
 * work goes to `background`. With caching off
 * the tiers stay, unread: writes still delete what they made stale there, so entries from
 * before are not served stale once caching is back on.
 *
 * `place` (a tenant's, see tenants-worker.ts) gives the cache a change log, a Cache API
 * cache and prefixes in KV and the Durable Object tier of its own: nothing of one place's
 * entries or changes reaches another's. Its `capture` names the D1 binding whose change
 * table that log's object drains (false: none), where the Worker's own log drains `DB`.
 */
export function edgeCache(
  env: LogEnv,
  settings: WorkerSettings,
  options: EdgeCacheOptions,
  background: Background,
  logger: WorkerLogger,
  requestRegion?: string,
  tenant?: { place: string; capture: string | false },
): { cache: Cache; log: DurableChangeLog } {
  const place = tenant?.place;
  const log = new DurableChangeLog({
    namespace: env.CHANGE_LOG,
    name: place === undefined ? options.logName : `edgecache:${place}`,
    ...(tenant && { capture: tenant.capture }),
    mode: settings.mode,
    leaseMs: settings.leaseMs,
    region: settings.region || requestRegion || DEFAULT_REGION,
  });
  const tiers: Store[] = [memoryStore({ maxBytes: settings.memoryBytes })];
  // One copy per key that every isolate reads at once, before the per-location tiers.
  if (env.CACHE_TIER) {
    tiers.push(
      durableObjectStore({
        namespace: env.CACHE_TIER,
        shards: settings.tierShards,
        ...(place !== undefined && { prefix: `tier:${place}:` }),
      }),
    );
    // The precompute is the Worker's own code, not a tenant's.
    if (place === undefined) background.add(startPrecompute(env.CACHE_TIER));
  }
  // The Cache API first (this data centre, no write limit), then KV (every location).
  if (typeof caches !== "undefined") {
    tiers.push(
      cacheApiStore({ cacheName: place === undefined ? "edgecache" : `edgecache:${place}` }),
    );
  }
  if (settings.kv) {
    tiers.push(
      kvStore({
        namespace: settings.kv,
        ...(place !== undefined && { prefix: `edgecache:${place}:` }),
      }),
    );
  }
  const cache = new Cache({
    tiers,
    log,
    enabled: settings.caching,
    ttl: (settings.ttl ?? DEFAULT_TTL_SECONDS) * 1000,
    staleWhileRevalidate: (options.staleWhileRevalidate ?? 0) * 1000,
    schedule: (work) => background.add(work),
    logger: { warn: (message, error) => logger.warn(`[edgecache] ${message}`, error) },
  });
  return { cache, log };
}

/**
 * The answer while the isolate cannot start. A bad variable or option (E_BAD_OPTION) is the
 * operator's to fix and stays until they do: a 500 whose message names it (the variables
 * hold no secret; the admin token is never checked for form). Anything else, D1 out of
 * reach say, may pass: a 503 that says only that the Worker could not start. Logged at any
 * level, since the isolate's own level may be what is wrong.
 */
export function setupFailed(error: unknown): Response {
  const failure =
    error instanceof EdgecacheError
      ? error
      : new EdgecacheError("E_SOURCE_UNAVAILABLE", C, "setup failed", { cause: error });
  console.error(failure.message, failure.cause ?? "");
  if (failure.code === "E_BAD_OPTION") {
    return new Response(errorBody(failure).body, {
      status: 500,
      headers: { "content-type": "application/json" },
    });
  }
  return Response.json(
    { error: { code: failure.code, message: "the Worker could not start" } },
    { status: 503 },
  );
}

/** At `info`: one line per request, with what the cache did (`Cache-Status`, RFC 9211). */
function logRequest(
  logger: WorkerLogger,
  request: Request,
  response: Response,
  started: number,
): void {
  const url = new URL(request.url);
  const ms = Math.round((performance.now() - started) * 1000) / 1000;
  const line = `${request.method} ${url.pathname}${url.search} ${response.status} ${ms} ms`;
  const cache = response.headers.get("cache-status");
  if (response.status >= 500) logger.error(`[edgecache] [${C}] request failed: ${line}`);
  else logger.info(`[edgecache] [${C}] ${line}${cache ? ` (${cache})` : ""}`);
}

/** Follower mode's region when neither a setting nor the request names one. */
export const DEFAULT_REGION = "default";

/**
 * The Durable Object location hint nearest a continent (`request.cf.continent`); North
 * America and Europe are split by longitude. Antarctica and Tor exits get no hint.
 */
export const REGION_OF_CONTINENT: Record<string, string> = {
  NA: "enam",
  SA: "sam",
  EU: "weur",
  AF: "afr",
  AS: "apac",
  OC: "oc",
};

/** The follower region of a request's location (see REGION_OF_CONTINENT). */
export function regionOf(request: Request | undefined): string | undefined {
  const cf = (request as { cf?: { continent?: unknown; longitude?: unknown } } | undefined)?.cf;
  const continent = typeof cf?.continent === "string" ? cf.continent : "";
  const longitude = Number(cf?.longitude);
  if (continent === "NA" && longitude < -100) return "wnam";
  if (continent === "EU" && longitude > 20) return "eeur";
  return REGION_OF_CONTINENT[continent];
}

/** The admin API's access rules on Workers, from the Worker's variables. */
export function adminAccess(env: LogEnv): Omit<AdminOptions, "cache"> {
  return {
    token: adminTokenVariable(env),
    peerAddress,
    allowedHosts: allowedHostsVariable(env),
  };
}

/**
 * The client's address: Cloudflare sets `CF-Connecting-IP` on every request (a client's
 * own value is replaced), and wrangler dev sets it to the local client's.
 */
export function peerAddress(c: Context): string | undefined {
  return c.req.header("cf-connecting-ip");
}

/**
 * A request as every edgecache Worker runs it: the isolate's setup (made once), a `sync`
 * with the log, the app's answer, then `ctx.waitUntil` for the background work.
 */
export async function serveRequest<
  I extends { app: Hono; log: DurableChangeLog; logger: WorkerLogger },
>(
  isolate: () => Promise<I>,
  background: Background,
  ctx: ExecutionContextLike,
  answer: (isolate: I) => Promise<Response>,
  request?: Request,
): Promise<Response> {
  let session: LogPosition | undefined;
  try {
    if (request) session = requestSession(request);
  } catch (error) {
    return errorResponse(error);
  }
  try {
    const opened = await isolate();
    const { log, logger } = opened;
    const started = performance.now();
    const unreachable = (error: unknown) => {
      logger.warn(`[edgecache] [${C}] change log unreachable: ${String(error)}`);
    };
    // Reads after this see every write acknowledged before the request began (strict,
    // lease and follower modes), or before the last sync (session mode).
    await log.sync().catch(unreachable);
    let response: Response;
    if (log.mode !== "session") response = await answer(opened);
    else {
      // Session mode: the client's own writes and reads first. Out of the log's reach, the
      // isolate stops trusting its cache and reads D1's primary: still read-your-writes.
      if (session) await log.reach(session).catch(unreachable);
      response = withSession(await answer(opened), session, seenAfter(session, log.position));
    }
    if (request && logger.level !== "silent") logRequest(logger, request, response, started);
    return response;
  } catch (error) {
    return setupFailed(error);
  } finally {
    ctx.waitUntil(background.idle());
  }
}
