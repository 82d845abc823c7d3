import { type Context, Hono } from "hono";
import type { Cache, EntryInit } from "../core/cache.ts";
import type { LogPosition } from "../core/change-log.ts";
import type { CacheEntry } from "../core/entry.ts";
import { badOption, EdgecacheError } from "../core/errors.ts";
import {
  type CacheRequest,
  endToEnd,
  type Freshness,
  freshness,
  type HeaderRecord,
  newPolicy,
  type PolicyClass,
  policyClass,
  type RequestDirectives,
  requestDirectives,
  responseTags,
  sharedWithAuthorization,
  toRecord,
  variantSuffix,
  variantSuffixAsync,
  varyNames,
} from "../core/http-cache.ts";
import { rateLimited } from "../core/report.ts";
import { errorBody } from "./errors.ts";
import { type CacheOutcome, entryReply, type Forward, replyResponse } from "./http.ts";

/** One origin behind the proxy, chosen by the request's host and path. */
export interface OriginRoute {
  /** Where requests go: scheme, host and port (`http://127.0.0.1:3000`). */
  origin: string;
  /** Only requests for this host (`api.example.com`, or with a port); all hosts when absent. */
  host?: string;
  /** Only paths under this prefix (`/v1`); all paths when absent. */
  pathPrefix?: string;
  /**
   * Seconds a response without explicit freshness (no s-maxage, max-age or Expires, and no
   * no-cache) stays fresh, for the statuses RFC 9110 15.1 lets a cache assign freshness
   * heuristically. It replaces the Last-Modified heuristic (10% of the time since the last
   * change); without it a response with neither is stored only to be revalidated.
   */
  ttl?: number;
}

/**
 * Sends a request to an origin. Runtimes pass their own (the Node adapter uses node:http,
 * which keeps bodies as sent: `fetch` would decode Content-Encoding).
 */
export type OriginFetch = (
  url: string,
  init: { method: string; headers: Headers; body: ReadableStream<Uint8Array> | null },
) => Promise<Response>;

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
  /** The client's address for X-Forwarded-For (the runtime knows it). */
  clientAddress?: (c: Context) => string | undefined;
  now?: () => number;
  /** Where failed origin requests are reported (console), at most once per 10 s. */
  logger?: { warn(message: string): void };
}

export interface PurgeRequest {
  tags?: string[];
  /** Paths (`/v1/users?id=1`) or absolute URLs; every host and Vary variant of each. */
  urls?: string[];
  /** A path prefix (`/v1/users`). */
  prefix?: string;
}

export interface WarmResult {
  url: string;
  status: number;
  cacheStatus: string | null;
}

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
  /** Waits for origin requests in flight (background refreshes included). */
  drain(): Promise<void>;
}

const COMPONENT = "proxy";
const DEFAULT_MAX_CACHEABLE = 8 * 1024 * 1024;
/** Longer request targets are passed through uncached: keys stay small. */
export const MAX_CACHED_TARGET = 8192;
/**
 * How long an entry with a validator is kept after it went stale, so the next request
 * revalidates it (a cheap 304) instead of fetching it whole. Never served unvalidated.
 */
const REVALIDATE_KEEP_MS = 3_600_000;
/** RFC 5861 4: the origin statuses stale-if-error covers. */
const ERROR_STATUSES = new Set([500, 502, 503, 504]);
/** RFC 9110 9.2.1: everything else is unsafe and invalidates (RFC 9111 4.4). */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);
/**
 * Request headers a client could use to make the origin answer differently without the
 * cache key showing it (web cache poisoning). The forwarding ones are set by the proxy
 * itself, from the request's host, which is part of the key; the rest are dropped.
 */
const UNKEYED_REQUEST_HEADERS = [
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-port",
  "x-forwarded-server",
  "x-forwarded-prefix",
  "x-real-ip",
  "x-host",
  "x-original-url",
  "x-rewrite-url",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
];
/** Request-specific headers a shared (coalesced) origin request must not carry. */
const PER_CLIENT_REQUEST_HEADERS = [
  "if-none-match",
  "if-modified-since",
  "if-match",
  "if-unmodified-since",
  "if-range",
  "range",
];
/** Response headers kept for the purge index, not sent to clients (as CDNs do). */
const INTERNAL_RESPONSE_HEADERS = ["cache-tag", "surrogate-key"];
const VIA = "1.1 edgecache";
const NOT_UPDATED_BY_304 = new Set([
  "content-length",
  "content-encoding",
  "content-range",
  "etag",
  "age",
  "via",
  ...INTERNAL_RESPONSE_HEADERS,
]);
/** Internal tags: URL tags for purge and invalidation, user tags, Vary records. */
const URL_TAG = "url:";
const USER_TAG = "tag:";
const VARY_RECORD = "vary-record";
/** Host header syntax the fast path takes as is (the one @hono/node-server passes through). */
const PLAIN_HOST = /^[a-z0-9._-]+(?::(?:[1-5]\d{3,4}|[6-9]\d{3}))?$/;
const KEY_MEMO_SIZE = 10_000;
const ROUTE_KEYS = ["origin", "host", "pathPrefix", "ttl"];

/** What `meta` holds for a stored response. */
interface ResponseMeta {
  /** http-cache-semantics' serialized policy, for revalidation. */
  policy: ReturnType<InstanceType<PolicyClass>["toObject"]>;
  /** stale-while-revalidate and stale-if-error windows after freshUntil, ms. */
  swr: number;
  sie: number;
  /** Vary names the response was selected by, if any. */
  vary?: string[];
}
/** What `meta` holds for a Vary record (stored under the URL's key instead of a response). */
interface VaryMeta {
  varyRecord: string[];
}

/** What one origin request came to; shared by the requests coalesced on it. */
type Loaded =
  | { kind: "entry"; entry: CacheEntry; key: string; stored: boolean; originStatus: number }
  /** Streamed through, not stored: only the request that made it may read the body. */
  | { kind: "pass"; response: Response; detail: string }
  | { kind: "down"; error: unknown };

/** Per request: what the handler knows once the route is found. */
interface Ctx {
  route: Route;
  host: string;
  target: string;
  /** The request URL as the client asked for it. */
  url: URL;
  method: string;
  headers: Headers;
  clientAddress: string | undefined;
  directives: RequestDirectives;
}

/** A validated route. */
export interface Route extends OriginRoute {
  originUrl: URL;
}

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
  const Policy = policyClass(now);
  const report = rateLimited(options.logger ?? console, now);
  const reportDown = (error: unknown) =>
    report("origin", `[edgecache] [proxy] origin request failed: ${String(error)}`);
  const inflight = new Map<string, { promise: Promise<Loaded>; since: LogPosition }>();
  const keyMemo = new Map<string, string | null>();

  const app = new Hono();
  app.all("*", async (c) => {
    const url = new URL(c.req.url);
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
    const ctx: Ctx = {
      route,
      host: url.host,
      target: url.pathname + url.search,
      url,
      method: c.req.method,
      headers: c.req.raw.headers,
      clientAddress: options.clientAddress?.(c),
      directives: requestDirectives(c.req.raw.headers),
    };
    if (ctx.method !== "GET" && ctx.method !== "HEAD") return passThrough(ctx, c.req.raw.body);
    if (ctx.target.length > MAX_CACHED_TARGET) return passThrough(ctx, null, "bypass");
    return cached(ctx);
  });

  /** GET and HEAD: from the cache when it may, else through one shared origin request. */
  async function cached(ctx: Ctx): Promise<Response> {
    const base = baseKey(ctx.target, ctx.host);
    let key = base;
    let fwd: Forward = "uri-miss";
    let found = await cache.getEntry(base, { count: false });
    if (found && isVaryRecord(found)) {
      key = base + (await variantSuffixAsync(found.meta.varyRecord, (n) => ctx.headers.get(n)));
      found = await cache.getEntry(key, { count: false });
      if (!found) fwd = "vary-miss";
    }
    const t = now();
    // What may be served if the origin fails (stale-if-error, grace).
    let fallback: CacheEntry | undefined;
    if (found) {
      const meta = found.meta as ResponseMeta;
      const d = ctx.directives;
      const age = (t - found.createdAt) / 1000;
      if (
        ctx.headers.has("authorization") &&
        !sharedWithAuthorization(found.headers["cache-control"])
      ) {
        // RFC 9111 3.5: only a response the origin marked shareable answers a request
        // that carries credentials.
        fwd = "request";
      } else {
        if (t < found.freshUntil + meta.sie) fallback = found;
        if (
          d.noCache ||
          (d.maxAge !== undefined && age > d.maxAge) ||
          (d.minFresh !== undefined && (found.freshUntil - t) / 1000 < d.minFresh)
        ) {
          fwd = "request"; // RFC 9111 5.2.1: the client asked for a fresher response
        } else if (found.freshUntil > t) {
          cache.countRead(key, "hit");
          return reply(ctx, found, { kind: "hit" });
        } else if (t < found.freshUntil + meta.swr) {
          // RFC 5861 3: serve it now, refresh it in the background (one request for all).
          cache.countRead(key, "stale");
          const refresh = coalesced(ctx, key, found);
          if (refresh.leader) void refresh.promise.then(discard, () => {});
          return reply(ctx, found, { kind: "stale" });
        } else fwd = "stale";
      }
    }
    if (ctx.directives.onlyIfCached) {
      // RFC 9111 5.2.1.7
      cache.countRead(key, "miss");
      return errorReply(
        new EdgecacheError("E_NOT_FOUND", COMPONENT, "only-if-cached: not in the cache"),
        "bypass",
        504,
      );
    }
    const shared = coalesced(ctx, key, found);
    let loaded = await shared.promise;
    let own = shared.leader;
    if (!own) {
      const usable = await sharedResult(ctx, loaded);
      if (usable) loaded = usable;
      else if (!(fallback && failed(loaded)) && loaded.kind !== "down") {
        // Not shareable (not storable, too large, another variant): ask on our own.
        loaded = await load(ctx, found);
        own = true;
      }
    }
    if (fallback && failed(loaded)) {
      if (own && loaded.kind === "pass") void loaded.response.body?.cancel().catch(() => {});
      cache.countRead(key, "stale");
      const fwdStatus = loaded.kind === "pass" ? loaded.response.status : undefined;
      return reply(ctx, fallback, { kind: "stale-if-error", fwdStatus });
    }
    cache.countRead(key, "miss");
    if (loaded.kind === "down") {
      reportDown(loaded.error);
      return downReply(loaded.error, fwd);
    }
    if (loaded.kind === "entry") return reply(ctx, loaded.entry, missOutcome(loaded, fwd));
    const headers = clientHeaders(loaded.response.headers);
    headers.set("cache-status", `edgecache; fwd=${fwd}; detail=${loaded.detail}`);
    if (ctx.method === "HEAD") {
      void loaded.response.body?.cancel().catch(() => {});
      return new Response(null, { status: loaded.response.status, headers });
    }
    return new Response(loaded.response.body, { status: loaded.response.status, headers });
  }

  /**
   * The origin request for `key`: the one in flight, unless an invalidation happened since
   * it began (it may carry pre-write data), or a new one. Requests with credentials or
   * no-store always get their own.
   */
  function coalesced(
    ctx: Ctx,
    key: string,
    held: CacheEntry | undefined,
  ): { promise: Promise<Loaded>; leader: boolean } {
    const alone = ctx.headers.has("authorization") || ctx.directives.noStore;
    if (alone) return { promise: load(ctx, held), leader: true };
    const running = inflight.get(key);
    if (running && running.since === cache.position) {
      return { promise: running.promise, leader: false };
    }
    const promise = load(ctx, held);
    inflight.set(key, { promise, since: cache.position });
    promise
      .finally(() => {
        if (inflight.get(key)?.promise === promise) inflight.delete(key);
      })
      .catch(() => {});
    return { promise, leader: true };
  }

  /** A coalesced load's result, if this request may use it: stored, and its own variant. */
  async function sharedResult(
    ctx: Ctx,
    shared: Loaded,
  ): Promise<(Loaded & { kind: "entry" }) | undefined> {
    if (shared.kind !== "entry" || !shared.stored) return undefined;
    const vary = (shared.entry.meta as ResponseMeta).vary;
    if (!vary) return shared;
    const own =
      baseKey(ctx.target, ctx.host) + (await variantSuffixAsync(vary, (n) => ctx.headers.get(n)));
    return own === shared.key ? shared : undefined;
  }

  /**
   * One origin request for `key`: conditional when a stale entry with validators is held
   * (RFC 9111 4.3.1), stored when RFC 9111 3 allows it and it fits.
   */
  async function load(ctx: Ctx, held: CacheEntry | undefined): Promise<Loaded> {
    const since = cache.position;
    const headers = originHeaders(ctx);
    for (const name of PER_CLIENT_REQUEST_HEADERS) headers.delete(name);
    const request: CacheRequest = { method: "GET", target: ctx.target, headers: ctx.headers };
    const heldMeta = held?.meta as ResponseMeta | undefined;
    const heldPolicy = heldMeta && Policy.fromObject(heldMeta.policy);
    if (held && heldPolicy) {
      const conditional = heldPolicy.revalidationHeaders(policyRequestOf(ctx.target));
      for (const name of ["if-none-match", "if-modified-since"]) {
        const v = conditional[name];
        if (typeof v === "string") headers.set(name, v);
      }
    }
    let response: Response;
    try {
      // A HEAD is fetched as a GET, so the entry it stores serves GETs too.
      response = await cache.measureLoad(() =>
        originFetch(originUrl(ctx), { method: "GET", headers, body: null }),
      );
    } catch (error) {
      return { kind: "down", error };
    }
    const resHeaders = endToEnd(response.headers);
    const record = toRecord(resHeaders);

    if (response.status === 304 && held && heldPolicy) {
      // RFC 9111 4.3.4: the 304's headers update the stored ones, and its freshness.
      void response.body?.cancel().catch(() => {});
      const { policy, matches } = heldPolicy.revalidatedPolicy(policyRequestOf(ctx.target), {
        status: 304,
        headers: record,
      });
      // RFC 9111 4.3.4: a 304 whose validator is not the stored one's selects nothing for
      // update, so the stored body cannot be vouched for: ask again, unconditionally.
      if (!matches) return load(ctx, undefined);
      const merged = policy.toObject().resh as HeaderRecord;
      // RFC 9111 3.2: the 304's fields replace or add to the stored ones, except those
      // that describe the body it did not send (and ours: Via, Age).
      const updated = { ...held.headers };
      for (const [name, value] of Object.entries(record)) {
        if (!NOT_UPDATED_BY_304.has(name)) updated[name] = value;
      }
      const fresh = freshness(policy, { status: held.status, headers: merged }, freshOptions(ctx));
      const tags = record["cache-tag"] || record["surrogate-key"] ? responseTags(record) : null;
      return store(ctx, since, {
        body: held.body,
        status: held.status,
        headers: updated,
        etag: held.etag,
        tags: tags ? entryTags(ctx.target, tags) : held.tags,
        policy,
        fresh,
        vary: heldMeta.vary,
        originStatus: 304,
      });
    }

    const vary = varyNames(record.vary);
    const policy = newPolicy(Policy, request, { status: response.status, headers: record });
    const fresh = freshness(
      policy,
      { status: response.status, headers: record },
      freshOptions(ctx),
    );
    const declared = Number(record["content-length"] ?? Number.NaN);
    let reason: string | undefined;
    if (!fresh.storable) reason = fresh.reason;
    else if (ctx.directives.noStore) reason = "no-store-request";
    else if (fresh.fresh === 0 && !fresh.validators) reason = "not-fresh";
    else if (declared > maxSize) reason = "too-large";
    if (reason !== undefined || !response.body) {
      if (reason === undefined) {
        // No body at all (a 204, say): stored with an empty one.
        return store(ctx, since, storeInit(response.status, resHeaders, new Uint8Array()));
      }
      return { kind: "pass", response, detail: reason };
    }
    const read = await readUpTo(response.body, maxSize).catch((error: unknown) => ({ error }));
    if ("error" in read) return { kind: "down", error: read.error };
    if ("stream" in read) {
      const passed = new Response(read.stream, { status: response.status, headers: resHeaders });
      return { kind: "pass", response: passed, detail: "too-large" };
    }
    return store(ctx, since, storeInit(response.status, resHeaders, read.bytes));

    function storeInit(status: number, h: Headers, body: Uint8Array): StoreInit {
      return {
        body,
        status,
        headers: storedHeaders(h),
        etag: record.etag ?? "",
        tags: entryTags(ctx.target, responseTags(record)),
        policy,
        fresh,
        vary: vary === "*" ? undefined : vary,
        originStatus: status,
      };
    }
  }

  interface StoreInit {
    body: Uint8Array;
    status: number;
    headers: HeaderRecord;
    etag: string;
    tags: string[];
    policy: InstanceType<PolicyClass>;
    fresh: Freshness;
    vary: string[] | undefined;
    originStatus: number;
  }

  /** Stores a response under its variant's key (and the URL's Vary record), fence-checked. */
  async function store(ctx: Ctx, since: LogPosition, s: StoreInit): Promise<Loaded> {
    const base = baseKey(ctx.target, ctx.host);
    const key = s.vary
      ? base + (await variantSuffixAsync(s.vary, (n) => ctx.headers.get(n)))
      : base;
    const keep = Math.max(s.fresh.swr, s.fresh.sie, s.fresh.validators ? REVALIDATE_KEEP_MS : 0);
    const meta: ResponseMeta = {
      policy: s.policy.toObject(),
      swr: s.fresh.swr,
      sie: s.fresh.sie,
      ...(s.vary && { vary: s.vary }),
    };
    const init: EntryInit = {
      body: s.body,
      status: s.status,
      headers: s.headers,
      etag: s.etag,
      tags: s.tags,
      meta,
      ttl: s.fresh.fresh,
      staleWhileRevalidate: keep,
      age: s.fresh.age,
    };
    const { entry, stored } = await cache.storeLoaded(key, init, since);
    if (stored && s.vary) {
      // The URL's key now says which request headers select its variants.
      const until = entry.staleUntil - now();
      const record = await cache.getEntry(base, { count: false });
      const recordUntil = record && isVaryRecord(record) ? record.staleUntil - now() : 0;
      await cache.storeLoaded(
        base,
        {
          body: new Uint8Array(),
          etag: "",
          tags: [URL_TAG + ctx.target, VARY_RECORD],
          meta: { varyRecord: s.vary } satisfies VaryMeta,
          ttl: Math.max(until, recordUntil),
          staleWhileRevalidate: 0,
        },
        since,
      );
    }
    return { kind: "entry", entry, key, stored, originStatus: s.originStatus };
  }

  /** Unsafe and other methods (and uncacheable targets): straight to the origin. */
  async function passThrough(
    ctx: Ctx,
    body: ReadableStream<Uint8Array> | null,
    fwd: Forward = "method",
  ): Promise<Response> {
    let response: Response;
    try {
      response = await originFetch(originUrl(ctx), {
        method: ctx.method,
        headers: originHeaders(ctx),
        body,
      });
    } catch (error) {
      reportDown(error);
      return downReply(error, fwd);
    }
    if (!SAFE_METHODS.has(ctx.method) && response.status < 400) {
      // RFC 9111 4.4: a non-error response to an unsafe method invalidates the target URI
      // and same-origin Location / Content-Location, every variant, before it is answered.
      const targets = [ctx.target];
      for (const name of ["location", "content-location"]) {
        const value = response.headers.get(name);
        const resolved = value === null ? undefined : sameOrigin(value, ctx);
        if (resolved) targets.push(resolved);
      }
      await cache.invalidate({ tags: targets.map((t) => URL_TAG + t) });
    }
    const headers = clientHeaders(response.headers);
    headers.set("cache-status", `edgecache; fwd=${fwd}; detail=not-stored`);
    return new Response(response.body, { status: response.status, headers });
  }

  function sameOrigin(value: string, ctx: Ctx): string | undefined {
    let resolved: URL;
    try {
      resolved = new URL(value, ctx.url);
    } catch {
      return undefined;
    }
    const ok = resolved.host === ctx.host || resolved.host === ctx.route.originUrl.host;
    return ok ? resolved.pathname + resolved.search : undefined;
  }

  function originUrl(ctx: Ctx): string {
    return ctx.route.originUrl.origin + ctx.target;
  }

  /** The request headers for the origin (RFC 9110 7.6: end-to-end ones, plus Via). */
  function originHeaders(ctx: Ctx): Headers {
    const headers = endToEnd(ctx.headers);
    headers.delete("host");
    for (const name of UNKEYED_REQUEST_HEADERS) headers.delete(name);
    if (ctx.clientAddress) headers.set("x-forwarded-for", ctx.clientAddress);
    headers.set("x-forwarded-host", ctx.host);
    headers.set("x-forwarded-proto", ctx.url.protocol.slice(0, -1));
    headers.append("via", VIA);
    return headers;
  }

  function freshOptions(ctx: Ctx) {
    return { defaultTtl: ctx.route.ttl, grace };
  }

  function reply(ctx: Ctx, entry: CacheEntry, outcome: CacheOutcome): Response {
    const r = entryReply(
      entry,
      outcome,
      now(),
      ctx.headers.get("if-none-match"),
      ctx.headers.get("if-modified-since"),
    );
    if (ctx.method === "HEAD" && r.body) {
      // The length the GET would have, as the fast path sends it.
      r.headers["content-length"] = String(r.body.byteLength);
      r.body = undefined;
    }
    return replyResponse(r);
  }

  function peekHit(
    method: string,
    target: string,
    host: string,
    header: (name: string) => string | undefined,
  ): CacheEntry | undefined {
    if (method !== "GET" && method !== "HEAD") return undefined;
    // Anything the request says about caching, or credentials, takes the full path.
    if (
      header("cache-control") !== undefined ||
      header("pragma") !== undefined ||
      header("authorization") !== undefined
    ) {
      return undefined;
    }
    const base = fastKey(target, host);
    if (base === null) return undefined;
    let key = base;
    let entry = cache.peek(base, { count: false });
    if (entry && isVaryRecord(entry)) {
      const suffix = variantSuffix(entry.meta.varyRecord, header);
      if (suffix === undefined) return undefined;
      key = base + suffix;
      entry = cache.peek(key, { count: false });
    }
    if (!entry) return undefined;
    cache.countRead(key, "hit");
    return entry;
  }

  /** The base key of a raw request target, as the app would compute it; null: not here. */
  function fastKey(target: string, host: string): string | null {
    const memoKey = `${host} ${target}`;
    let key = keyMemo.get(memoKey);
    if (key === undefined) {
      key = null;
      if (PLAIN_HOST.test(host)) {
        // The same normalization the app gets (WHATWG URL parsing), so keys agree.
        // Joined as @hono/node-server does, so "//x" stays a path.
        const url = new URL(`http://${host}${target}`);
        const normalized = url.pathname + url.search;
        if (
          normalized.length <= MAX_CACHED_TARGET &&
          url.host === host &&
          matchRoute(routes, host, url.pathname)
        ) {
          key = baseKey(normalized, host);
        }
      }
      if (target.length <= 2048) {
        if (keyMemo.size >= KEY_MEMO_SIZE) keyMemo.clear();
        keyMemo.set(memoKey, key);
      }
    }
    return key;
  }

  async function purge(request: PurgeRequest): Promise<number> {
    const tags = (request.tags ?? []).map((t) => USER_TAG + t);
    for (const u of request.urls ?? []) tags.push(URL_TAG + targetOf(u));
    if (request.prefix !== undefined && !request.prefix.startsWith("/")) {
      throw new EdgecacheError(
        "E_BAD_BODY",
        COMPONENT,
        `prefix: expected a path starting with "/", got ${JSON.stringify(request.prefix)}`,
      );
    }
    // Vary records go too, but are not responses: count them out.
    const keys = new Set<string>();
    for (const tag of tags) for (const k of cache.index.keysForTag(tag)) keys.add(k);
    if (request.prefix !== undefined) for (const k of cache.index.keys(request.prefix)) keys.add(k);
    let records = 0;
    for (const k of keys) if (cache.index.get(k)?.tags.includes(VARY_RECORD)) records++;
    const removed = await cache.invalidate({ tags, prefix: request.prefix });
    return Math.max(0, removed - records);
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

  async function drain(): Promise<void> {
    while (inflight.size > 0) {
      await Promise.allSettled([...inflight.values()].map((f) => f.promise));
    }
  }

  return { app, peekHit, purge, warm, drain };
}

/** `{path}?{query} {host}`: the path first, so a prefix purge is a key prefix. */
function baseKey(target: string, host: string): string {
  return `${target} ${host}`;
}

function isVaryRecord(entry: CacheEntry): entry is CacheEntry & { meta: VaryMeta } {
  return Array.isArray((entry.meta as Partial<VaryMeta> | undefined)?.varyRecord);
}

/** Tags of a stored response: its URL (for URL purges and invalidation) and the origin's. */
function entryTags(target: string, tags: string[]): string[] {
  return [URL_TAG + target, ...tags.map((t) => USER_TAG + t)];
}

/** Whether the origin failed in a way stale-if-error covers (RFC 5861 4). */
function failed(loaded: Loaded): boolean {
  return (
    loaded.kind === "down" || (loaded.kind === "pass" && ERROR_STATUSES.has(loaded.response.status))
  );
}

function missOutcome(loaded: Loaded & { kind: "entry" }, fwd: Forward): CacheOutcome {
  return {
    kind: "miss",
    stored: loaded.stored,
    fwd,
    ...(loaded.originStatus === 304 && { fwdStatus: 304 }),
  };
}

function discard(loaded: Loaded): void {
  if (loaded.kind === "pass") void loaded.response.body?.cancel().catch(() => {});
}

/**
 * The request as a stored policy is asked about it (revalidation): the same URL and host
 * it was made with, and no Vary'd values, since the cache key has already matched those.
 */
function policyRequestOf(target: string) {
  return { method: "GET", url: target, headers: { host: "edgecache" } };
}

/** Stored response headers: end-to-end, without what is recomputed or internal, plus Via. */
function storedHeaders(headers: Headers): HeaderRecord {
  const out = toRecord(headers);
  for (const name of ["age", "content-length", "etag", ...INTERNAL_RESPONSE_HEADERS]) {
    delete out[name];
  }
  out.via = out.via ? `${out.via}, ${VIA}` : VIA;
  // RFC 9110 6.6.1: a cache stores a response with a Date; the origin's, or the receipt's.
  out.date ??= new Date().toUTCString();
  return out;
}

/** Passed-through response headers: end-to-end, without internal ones, plus Via. */
function clientHeaders(headers: Headers): Headers {
  const out = endToEnd(headers);
  for (const name of INTERNAL_RESPONSE_HEADERS) out.delete(name);
  out.append("via", VIA);
  return out;
}

function errorReply(err: EdgecacheError, fwd: Forward, status?: number): Response {
  const { status: mapped, body } = errorBody(err);
  return new Response(body, {
    status: status ?? mapped,
    headers: {
      "content-type": "application/json",
      "cache-status": `edgecache; fwd=${fwd}; detail=${err.code}`,
    },
  });
}

function downReply(error: unknown, fwd: Forward): Response {
  return errorReply(
    new EdgecacheError("E_ORIGIN_UNAVAILABLE", COMPONENT, "the origin could not be reached", {
      cause: error,
    }),
    fwd,
  );
}

/** A path or absolute URL, normalized as request targets are. */
function targetOf(u: string): string {
  if (!u.startsWith("/") && !/^https?:\/\//i.test(u)) {
    throw new EdgecacheError(
      "E_BAD_BODY",
      COMPONENT,
      `urls: expected a path starting with "/" or an http(s) URL, got ${JSON.stringify(u)}`,
    );
  }
  const url = new URL(u, "http://edgecache");
  return url.pathname + url.search;
}

/** Reads a body up to `limit` bytes; past that, a stream of what was read and the rest. */
async function readUpTo(
  body: ReadableStream<Uint8Array>,
  limit: number,
): Promise<{ bytes: Uint8Array } | { stream: ReadableStream<Uint8Array> }> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      const bytes = new Uint8Array(size);
      let at = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, at);
        at += chunk.byteLength;
      }
      return { bytes };
    }
    chunks.push(value);
    size += value.byteLength;
    if (size > limit) {
      // Too large to store: what was read goes first, the rest streams as it comes.
      return {
        stream: new ReadableStream<Uint8Array>({
          start(controller) {
            for (const chunk of chunks.splice(0)) controller.enqueue(chunk);
          },
          async pull(controller) {
            const next = await reader.read();
            if (next.done) controller.close();
            else controller.enqueue(next.value);
          },
          cancel(reason) {
            return reader.cancel(reason);
          },
        }),
      };
    }
  }
}

/**
 * Checks routes in "expected X, got Y" form (`name` is what the caller calls them) and
 * orders them most specific first: with a host before without, longer prefixes first.
 */
export function validateRoutes(routes: unknown, component = COMPONENT, name = "routes"): Route[] {
  if (!Array.isArray(routes) || routes.length === 0) {
    badOption(component, name, "a non-empty array of {origin, host?, pathPrefix?, ttl?}", routes);
  }
  const out = routes.map((r: OriginRoute, i: number): Route => {
    const at = `${name}[${i}]`;
    if (typeof r !== "object" || r === null) badOption(component, at, "an object", r);
    for (const k of Object.keys(r)) {
      if (!ROUTE_KEYS.includes(k)) badOption(component, `${at}.${k}`, ROUTE_KEYS.join(", "), k);
    }
    let originUrl: URL | undefined;
    try {
      originUrl = new URL(r.origin);
    } catch {}
    if (
      !originUrl ||
      !["http:", "https:"].includes(originUrl.protocol) ||
      originUrl.pathname !== "/" ||
      originUrl.search ||
      originUrl.hash
    ) {
      badOption(
        component,
        `${at}.origin`,
        "an http(s) origin such as http://127.0.0.1:3000",
        r.origin,
      );
    }
    if (
      r.host !== undefined &&
      (typeof r.host !== "string" || !/^[a-z0-9.[\]:_-]+$/i.test(r.host))
    ) {
      badOption(component, `${at}.host`, "a host name, with a port if needed", r.host);
    }
    if (
      r.pathPrefix !== undefined &&
      (typeof r.pathPrefix !== "string" || !r.pathPrefix.startsWith("/"))
    ) {
      badOption(component, `${at}.pathPrefix`, 'a path starting with "/"', r.pathPrefix);
    }
    if (r.ttl !== undefined && !(typeof r.ttl === "number" && r.ttl >= 0)) {
      badOption(component, `${at}.ttl`, "a number of seconds >= 0", r.ttl);
    }
    return { ...r, host: r.host?.toLowerCase(), originUrl };
  });
  return out.sort(
    (a, b) =>
      Number(b.host !== undefined) - Number(a.host !== undefined) ||
      (b.pathPrefix?.length ?? 0) - (a.pathPrefix?.length ?? 0),
  );
}

/** The route for a host and path: a route's host matches with or without the port. */
function matchRoute(routes: readonly Route[], host: string, path: string): Route | undefined {
  const hostname = host.replace(/:\d+$/, "");
  return routes.find(
    (r) =>
      (r.host === undefined || r.host === host || r.host === hostname) &&
      (r.pathPrefix === undefined ||
        path === r.pathPrefix ||
        path.startsWith(r.pathPrefix.endsWith("/") ? r.pathPrefix : `${r.pathPrefix}/`)),
  );
}
