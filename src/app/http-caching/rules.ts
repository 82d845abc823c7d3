import CachePolicy from "http-cache-semantics";
import { parseCacheDate } from "./dates.ts";
import { TOKEN, varyNames } from "./vary.ts";

export { parseCacheDate, parseHttpDate } from "./dates.ts";
export { variantSuffix, variantSuffixAsync, varyNames } from "./vary.ts";

/**
 * HTTP caching as a shared cache (RFC 9111), for the proxy. `http-cache-semantics` decides
 * storability, freshness lifetime, age, validators and 304 merging; the code here covers
 * what it leaves out or gets wrong for us, each marked where it is:
 * directive names compared case-insensitively with the first occurrence winning, clamped
 * and non-negative ages and lifetimes, stale-while-revalidate / stale-if-error windows and
 * when stale may be served at all, a default TTL in place of the Last-Modified heuristic,
 * targeted cache-control (RFC 9213, unknown to the library), strict HTTP-dates
 * (dates.ts) and Age (it takes anything `Date.parse` and `parseInt` take), the statuses it will not store although
 * RFC 9111 3 allows it, must-understand (which it ignores), the request's max-stale, Vary
 * normalization (vary.ts), Cache-Tag / Surrogate-Key, and hop-by-hop headers.
 * Portable: no Node.js API.
 */

/** Plain header records, lowercase names (what http-cache-semantics takes). */
export type HeaderRecord = Record<string, string>;

/** RFC 9110 7.6.1 hop-by-hop fields, plus the pre-standard Proxy-Connection. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authenticate",
  "proxy-authorization",
]);

/** RFC 9111 1.2.2: a delta-seconds value too large to represent counts as 2^31. */
export const MAX_DELTA_SECONDS = 2 ** 31;
/** Cache-Tag / Surrogate-Key: at most this many tags of this length; the rest are ignored. */
export const MAX_TAGS = 128;
export const MAX_TAG_LENGTH = 256;

/**
 * Headers to pass on, without the hop-by-hop ones and those the Connection field names
 * (RFC 9110 7.6.1). `set-cookie` stays a list; every other repeated field is joined with
 * ", " (RFC 9110 5.3), which is also how a repeated Expires or Date becomes invalid.
 */
export function endToEnd(headers: Headers): Headers {
  const named = new Set(HOP_BY_HOP);
  for (const token of (headers.get("connection") ?? "").split(",")) {
    const name = token.trim().toLowerCase();
    if (name) named.add(name);
  }
  const out = new Headers();
  for (const [name, value] of headers) {
    if (!named.has(name)) out.append(name, value);
  }
  return out;
}

/** A Headers object as a record (set-cookie values joined; callers never store those). */
export function toRecord(headers: Headers): HeaderRecord {
  const out: HeaderRecord = {};
  for (const [name, value] of headers) out[name] = out[name] ? `${out[name]}, ${value}` : value;
  return out;
}

/**
 * Cache-Control directives, names lowercased (RFC 9111 5.2: compared case-insensitively,
 * which http-cache-semantics does not do), the first occurrence of a repeated directive
 * winning (RFC 9111 4.2.1 allows that; the library keeps the last).
 */
export function parseCacheControl(value: string | null | undefined): Map<string, string | true> {
  const out = new Map<string, string | true>();
  if (!value) return out;
  for (const part of value.split(",")) {
    const eq = part.indexOf("=");
    const name = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (!name || !TOKEN.test(name) || out.has(name)) continue;
    const raw = eq === -1 ? true : part.slice(eq + 1).trim();
    out.set(name, raw === true ? true : raw.replace(/^"(.*)"$/, "$1"));
  }
  return out;
}

/**
 * RFC 9213 2.1: the targeted cache-control fields edgecache obeys, in precedence order: its
 * own, then the one every CDN obeys. The first with a valid, non-empty value replaces
 * Cache-Control (and Expires) for edgecache's decisions; clients still get Cache-Control.
 */
export const TARGETED_FIELDS = ["edgecache-cache-control", "cdn-cache-control"] as const;
/** The field that targets edgecache alone: no one downstream is meant to read it. */
export const OWN_TARGETED_FIELD = "edgecache-cache-control";

// RFC 8941 3.2 Dictionary (the syntax RFC 9213 2.1 gives targeted fields), without inner
// lists, which no cache directive takes.
const SF_KEY = "[a-z*][a-z0-9_.*-]*";
const SF_ITEM =
  '(?:-?\\d{1,15}(?:\\.\\d{1,3})?|"(?:[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]|\\\\["\\\\])*"|' +
  "[A-Za-z*][!#$%&'*+.^_`|~0-9A-Za-z:/-]*|:[A-Za-z0-9+/=]*:|\\?[01])";
const SF_PARAMS = `(?:; *${SF_KEY}(?:=${SF_ITEM})?)*`;
const SF_MEMBER = `${SF_KEY}(?:=${SF_ITEM})?${SF_PARAMS}`;
const SF_DICTIONARY = new RegExp(`^${SF_MEMBER}(?:[ \\t]*,[ \\t]*${SF_MEMBER})*$`);

/**
 * The targeted cache-control value edgecache obeys (RFC 9213 2.1), or undefined when no
 * targeted field has a valid, non-empty value: one that does not parse as a structured
 * Dictionary (upper-case names, say) is ignored, and the next field or Cache-Control applies.
 */
export function targetedCacheControl(headers: HeaderRecord): string | undefined {
  for (const name of TARGETED_FIELDS) {
    const value = headers[name]?.trim();
    if (value && SF_DICTIONARY.test(value) && wellTyped(value)) return value;
  }
  return undefined;
}

/** Directives whose value RFC 9213 2.1 types as an Integer (delta-seconds). */
const INTEGER_DIRECTIVES = new Set([
  "max-age",
  "s-maxage",
  "stale-while-revalidate",
  "stale-if-error",
]);

/**
 * Whether a targeted field's time directives are Integers: `max-age="10000"` is a valid
 * Dictionary with a String in it, and RFC 9213 2.1 has a field of the wrong type ignored
 * whole (Cache-Control then applies), not read as if it were Cache-Control's quoted form.
 */
function wellTyped(value: string): boolean {
  for (const [name, raw] of parseDictionaryValues(value)) {
    if (INTEGER_DIRECTIVES.has(name) && (raw === true || !/^\d+$/.test(raw))) return false;
  }
  return true;
}

/** A Dictionary's members as written (parameters dropped), for `wellTyped`. */
function parseDictionaryValues(value: string): [string, string | true][] {
  return value.split(",").map((member) => {
    const bare = member.split(";")[0]!.trim();
    const eq = bare.indexOf("=");
    return eq === -1 ? [bare, true] : [bare.slice(0, eq), bare.slice(eq + 1)];
  });
}

/**
 * The response headers edgecache's caching decisions read: with a targeted field in
 * effect, its directives are the Cache-Control and Expires is ignored (RFC 9213 2.1).
 */
export function cachingHeaders(headers: HeaderRecord): HeaderRecord {
  const targeted = targetedCacheControl(headers);
  if (targeted === undefined) return headers;
  const out: HeaderRecord = { ...headers, "cache-control": targeted };
  delete out.expires;
  return out;
}

function formatCacheControl(cc: Map<string, string | true>): string {
  return [...cc].map(([k, v]) => (v === true ? k : `${k}=${v}`)).join(", ");
}

/**
 * RFC 9111 1.2.2 delta-seconds: digits only; anything else is invalid (undefined), and a
 * value beyond 2^31 counts as 2^31.
 */
export function deltaSeconds(value: string | true | undefined): number | undefined {
  if (typeof value !== "string" || !/^\d+$/.test(value)) return undefined;
  return Math.min(Number(value), MAX_DELTA_SECONDS);
}

/** What the proxy knows of a request for caching: its method, target and relevant headers. */
export interface CacheRequest {
  method: string;
  /** Path and query, normalized. */
  target: string;
  headers: Headers;
}

/** A CachePolicy whose clock is ours (the library reads `this.now()`, for tests' fake clocks). */
export type PolicyClass = typeof CachePolicy;

export function policyClass(now: () => number): PolicyClass {
  return class ClockedPolicy extends CachePolicy {
    now(): number {
      return now();
    }
  };
}

/**
 * The request as the policy sees it: only what it needs (cache directives, and whether
 * there was an Authorization), so a stored policy never holds a client's credentials or
 * cookies. Vary matching is done by the cache key instead (see `variantSuffix`).
 */
function policyRequest(request: CacheRequest): CachePolicy.HttpRequest {
  const headers: HeaderRecord = { host: "edgecache" };
  for (const name of ["cache-control", "pragma"]) {
    const v = request.headers.get(name);
    if (v !== null) headers[name] = name === "cache-control" ? normalizedCc(v) : v;
  }
  if (request.headers.has("authorization")) headers.authorization = "present";
  return { method: request.method, url: request.target, headers };
}

const normalizedCc = (v: string) => formatCacheControl(parseCacheControl(v));

/** What `storable` and `freshness` work from: a response's status and end-to-end headers. */
export interface OriginReply {
  status: number;
  headers: HeaderRecord;
}

/** Any valid HTTP-date in the past: what an invalid Expires means (RFC 9111 5.3). */
const EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT";

/**
 * The response as the library sees it. It reads Expires and Date with `Date.parse`, which
 * takes far more than HTTP-dates (and "UTC", one-digit hours...), and Age with `parseInt`,
 * which rounds "50.5" down to 50; so both are decided here first (dates as a cache reads
 * them: `parseCacheDate`).
 */
function policyResponse(reply: OriginReply): CachePolicy.HttpResponse {
  const headers = { ...reply.headers };
  const cc = parseCacheControl(headers["cache-control"]);
  if (cc.has("must-understand") && UNDERSTOOD_STATUSES.has(reply.status)) {
    // RFC 9111 5.2.2.3: a cache that understands the status ignores no-store (the library
    // knows nothing of must-understand; `freshness` refuses the statuses we do not know).
    cc.delete("no-store");
  }
  if (headers["cache-control"] !== undefined) headers["cache-control"] = formatCacheControl(cc);
  if (headers.expires !== undefined) {
    // RFC 9111 5.3: an invalid Expires (an empty one included) means already expired.
    const expires = parseCacheDate(headers.expires);
    headers.expires = expires === undefined ? EXPIRED : new Date(expires).toUTCString();
  }
  if (headers.date !== undefined) {
    // An invalid Date is no Date: the library then takes the time the response came in.
    const date = parseCacheDate(headers.date);
    if (date === undefined) delete headers.date;
    else headers.date = new Date(date).toUTCString();
  }
  // RFC 9111 5.1: Age is one delta-seconds. A list (one line `7200, 0`, or several lines,
  // joined) counts by its first member, as a singleton field's first line does (RFC 9110
  // 5.3); a value that is not a non-negative integer (a fraction, a sign) is ignored.
  if (headers.age !== undefined) {
    const first = deltaSeconds(headers.age.split(",")[0]!.trim());
    if (first === undefined) delete headers.age;
    else headers.age = String(first);
  }
  return { status: policyStatus(reply.status, cc, headers), headers };
}

/**
 * Statuses edgecache understands (RFC 9110 15): stored with must-understand, and reusable
 * like any final status. Not 206 (partial content is not stored) nor 304 (it only ever
 * revalidates a stored response).
 */
const UNDERSTOOD_STATUSES = new Set([
  200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 307, 308, 400, 401, 402, 403, 404, 405, 406,
  407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426, 500, 501, 502, 503, 504,
  505,
]);
/** The statuses http-cache-semantics will store at all. */
const LIBRARY_STATUSES = new Set([
  200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
]);

/**
 * RFC 9111 3: any final response may be stored when it has explicit freshness or says
 * `public` (then heuristic freshness applies too, 4.2.2), whatever its status, 400, 500 and
 * unknown ones such as 299 or 599 included. The library stores only the statuses it lists,
 * so it is shown a 200 for the others; `freshness` still reads the real status.
 */
function policyStatus(
  status: number,
  cc: Map<string, string | true>,
  headers: HeaderRecord,
): number {
  if (LIBRARY_STATUSES.has(status) || status < 200 || status === 206 || status === 304) {
    return status;
  }
  const explicit =
    cc.has("max-age") || cc.has("s-maxage") || cc.has("public") || headers.expires !== undefined;
  return explicit ? 200 : status;
}

export function newPolicy(
  Policy: PolicyClass,
  request: CacheRequest,
  reply: OriginReply,
): CachePolicy {
  return new Policy(policyRequest(request), policyResponse(reply), { shared: true });
}

/** RFC 9110 15.1: statuses cacheable by default (heuristic freshness allowed). */
const HEURISTIC_STATUSES = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]);

/** How long a stored response is fresh and how long it may be served stale, in ms. */
export interface Freshness {
  /** Whether a shared cache may store it (RFC 9111 3), and why not. */
  storable: boolean;
  reason?: string;
  /** Freshness left when received (lifetime minus age), >= 0. */
  fresh: number;
  /** Age when received (RFC 9111 4.2.3, as the library computes it), >= 0. */
  age: number;
  /** stale-while-revalidate window after freshness (RFC 5861 3). */
  swr: number;
  /** stale-if-error window after freshness (RFC 5861 4), including the configured grace. */
  sie: number;
  /** Whether it has an ETag or Last-Modified, so a stale copy can be revalidated. */
  validators: boolean;
}

export interface FreshnessOptions {
  /** Freshness (s) for storable responses without explicit expiration, instead of the heuristic. */
  defaultTtl?: number;
  /** Seconds stale content may be served when the origin fails, where no directive forbids it. */
  grace?: number;
}

/**
 * Decides whether a response may be stored and for how long it is fresh and servable stale.
 * The library decides storability (method, status, no-store, private, Authorization) and
 * the lifetime (s-maxage, max-age, Expires with Date, Last-Modified heuristic); our own
 * code adds the rest, said where.
 */
export function freshness(
  policy: CachePolicy,
  reply: OriginReply,
  options: FreshnessOptions = {},
): Freshness {
  const cc = parseCacheControl(reply.headers["cache-control"]);
  const validators = !!(reply.headers.etag || reply.headers["last-modified"]);
  const none = { fresh: 0, age: 0, swr: 0, sie: 0, validators };
  if (!policy.storable()) return { storable: false, reason: unstorable(policy), ...none };
  // RFC 9111 5.2.2.3: must-understand limits storing to the statuses the cache knows.
  if (cc.has("must-understand") && !UNDERSTOOD_STATUSES.has(reply.status)) {
    return { storable: false, reason: "must-understand", ...none };
  }
  // A stored Set-Cookie would hand one client's cookie to the next: such responses pass
  // through. (The library stores them with a lifetime of 0 unless `public`.)
  if (reply.headers["set-cookie"] !== undefined) {
    return { storable: false, reason: "set-cookie", ...none };
  }
  const vary = varyNames(reply.headers.vary);
  if (vary === "*") return { storable: false, reason: "vary-star", ...none };
  // RFC 9111 4.2.1: an invalid max-age or s-maxage makes the response stale, where the
  // library would fall through to Expires or the heuristic.
  for (const name of ["s-maxage", "max-age"]) {
    if (cc.has(name) && deltaSeconds(cc.get(name)) === undefined) {
      return { storable: true, ...none, age: 0 };
    }
  }
  const explicit = cc.has("s-maxage") || cc.has("max-age") || reply.headers.expires !== undefined;
  let lifetime = policy.maxAge();
  if (
    options.defaultTtl !== undefined &&
    !explicit &&
    !cc.has("no-cache") &&
    (HEURISTIC_STATUSES.has(reply.status) || cc.has("public"))
  ) {
    // The operator's TTL is the heuristic freshness RFC 9111 4.2.2 lets a cache choose.
    lifetime = options.defaultTtl;
  }
  lifetime = Math.max(0, Math.min(lifetime, MAX_DELTA_SECONDS));
  // A negative or garbled Age must not extend freshness (the library would add it).
  const age = Math.max(0, Math.min(policy.age(), MAX_DELTA_SECONDS));
  const fresh = Math.max(0, lifetime - age) * 1000;
  // RFC 9111 4.2.4: no stale response where must-revalidate, proxy-revalidate or no-cache
  // say so. s-maxage implies proxy-revalidate for a shared cache (5.2.2.10), so the
  // configured grace does not apply to it; the explicit RFC 5861 directives still do.
  const noStale = cc.has("must-revalidate") || cc.has("proxy-revalidate") || cc.has("no-cache");
  const swr = noStale ? 0 : (deltaSeconds(cc.get("stale-while-revalidate")) ?? 0) * 1000;
  const grace = noStale || cc.has("s-maxage") ? 0 : (options.grace ?? 0) * 1000;
  const sie = noStale ? 0 : Math.max((deltaSeconds(cc.get("stale-if-error")) ?? 0) * 1000, grace);
  return { storable: true, fresh, age: age * 1000, swr, sie, validators };
}

/**
 * Why the library refused to store a response (RFC 9111 3), checked in its order, so that a
 * client and an operator see the cause (`no-store`, `private`...), not only that it was not
 * stored: the request's no-store, a method other than GET or HEAD, a status stored only with
 * explicit freshness (and there is none: `uncacheable-status`), the response's no-store or
 * private, a request with Authorization the response does not allow storing (3.5).
 */
export function unstorable(policy: CachePolicy): string {
  const p = policy.toObject() as {
    st: number;
    m: string;
    a: boolean;
    resh: HeaderRecord;
    rescc: Record<string, string | true>;
    reqcc: Record<string, string | true>;
  };
  const cc = p.rescc;
  if (p.reqcc["no-store"] !== undefined) return "no-store-request";
  if (p.m !== "GET" && p.m !== "HEAD") return "method";
  if (cc["no-store"] !== undefined) return "no-store";
  if (cc.private !== undefined) return "private";
  if (!p.a && !(cc["must-revalidate"] || cc.public || cc["s-maxage"])) return "authorization";
  return "uncacheable-status";
}

/**
 * Purge tags from `Cache-Tag` and `Surrogate-Key` (space or comma separated, as CDNs take
 * them). Capped in number and length, so a huge header cannot bloat the index.
 */
export function responseTags(headers: HeaderRecord): string[] {
  const tags = new Set<string>();
  for (const name of ["cache-tag", "surrogate-key"]) {
    for (const tag of (headers[name] ?? "").split(/[\s,]+/)) {
      if (tag && tag.length <= MAX_TAG_LENGTH && tags.size < MAX_TAGS) tags.add(tag);
    }
  }
  return [...tags];
}

/** The request's own cache directives (RFC 9111 5.2.1), `Pragma: no-cache` included (5.4). */
export interface RequestDirectives {
  noCache: boolean;
  noStore: boolean;
  onlyIfCached: boolean;
  /** Seconds. */
  maxAge?: number;
  minFresh?: number;
  /** Seconds of staleness the client accepts (RFC 9111 5.2.1.2); Infinity without a value. */
  maxStale?: number;
}

export function requestDirectives(headers: Headers): RequestDirectives {
  const value = headers.get("cache-control");
  const cc = parseCacheControl(value);
  const maxStale = cc.get("max-stale");
  return {
    noCache:
      cc.has("no-cache") ||
      (value === null && /(^|,)\s*no-cache\s*(,|$)/i.test(headers.get("pragma") ?? "")),
    noStore: cc.has("no-store"),
    onlyIfCached: cc.has("only-if-cached"),
    maxAge: deltaSeconds(cc.get("max-age")),
    minFresh: deltaSeconds(cc.get("min-fresh")),
    maxStale: maxStale === true ? Number.POSITIVE_INFINITY : deltaSeconds(maxStale),
  };
}

/** Request directives that never send a request past a stored answer the cache may use. */
const KEPT_WHEN_IGNORING = ["no-store", "max-stale", "only-if-cached"];

/**
 * A read's request headers as a proxy that ignores clients' refresh directives sees them
 * (OriginRoute.clientDirectives "ignore"; a deviation from RFC 9111 5.2.1 that CDNs make
 * too): `Pragma` gone, and of `Cache-Control` only `no-store`, `max-stale` and
 * `only-if-cached`, which ask less of the origin, never more. The same object when there is
 * nothing to drop.
 */
export function ignoringClientRefresh(headers: Headers): Headers {
  const value = headers.get("cache-control");
  if (value === null && !headers.has("pragma")) return headers;
  const out = new Headers(headers);
  out.delete("pragma");
  out.delete("cache-control");
  const cc = parseCacheControl(value);
  const kept = new Map([...cc].filter(([name]) => KEPT_WHEN_IGNORING.includes(name)));
  if (kept.size > 0) out.set("cache-control", formatCacheControl(kept));
  return out;
}

/**
 * RFC 9111 4.2.4: whether a shared cache may serve the response stale at all (a client's
 * max-stale, say): not with must-revalidate, proxy-revalidate, no-cache, or s-maxage
 * (which implies proxy-revalidate in a shared cache, 5.2.2.10).
 */
export function mayServeStale(cacheControl: string | undefined): boolean {
  const cc = parseCacheControl(cacheControl);
  return !["must-revalidate", "proxy-revalidate", "no-cache", "s-maxage"].some((d) => cc.has(d));
}

/** Whether a response explicitly lets a shared cache reuse it for authenticated requests (RFC 9111 3.5). */
export function sharedWithAuthorization(cacheControl: string | undefined): boolean {
  const cc = parseCacheControl(cacheControl);
  return cc.has("public") || cc.has("s-maxage") || cc.has("must-revalidate");
}
