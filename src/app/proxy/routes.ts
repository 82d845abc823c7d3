import { badOption } from "../../core/errors.ts";
import { memoize } from "../../core/memo.ts";

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
  /**
   * What the proxy makes of a client's `Cache-Control` and `Pragma` on a GET or HEAD:
   * `"follow"` (the default: RFC 9111 5.2.1, so a browser's reload, `max-age=0` or
   * `no-cache`, revalidates with the origin) or `"ignore"`: `no-cache`, `max-age`,
   * `min-fresh` and `Pragma: no-cache` neither skip nor revalidate a stored answer, nor
   * reach the origin, as CDNs do. `no-store` still keeps the answer to that request from
   * being stored (a stored one still answers it); `max-stale` and `only-if-cached` still
   * hold (they never cost the origin a request).
   */
  clientDirectives?: ClientDirectives;
}

/** The values of OriginRoute.clientDirectives. */
export type ClientDirectives = "follow" | "ignore";
const CLIENT_DIRECTIVES: readonly string[] = ["follow", "ignore"] satisfies ClientDirectives[];

/** A validated route. */
export interface Route extends OriginRoute {
  originUrl: URL;
}

export const COMPONENT = "proxy";
/** Longer request targets are passed through uncached: keys stay small. */
export const MAX_CACHED_TARGET = 8192;
/** Host header syntax the fast path takes as is (the one @hono/node-server passes through). */
const PLAIN_HOST = /^[a-z0-9._-]+(?::(?:[1-5]\d{3,4}|[6-9]\d{3}))?$/;
const KEY_MEMO_SIZE = 10_000;
/** Host and target: longer ones are keyed each time. */
const KEY_MEMO_MAX_LENGTH = 2304;
const ROUTE_KEYS = ["origin", "host", "pathPrefix", "ttl", "clientDirectives"];

/**
 * Checks routes in "expected X, got Y" form (`name` is what the caller calls them) and
 * orders them most specific first: with a host before without, longer prefixes first.
 */
export function validateRoutes(routes: unknown, component = COMPONENT, name = "routes"): Route[] {
  if (!Array.isArray(routes) || routes.length === 0) {
    badOption(
      component,
      name,
      "a non-empty array of {origin, host?, pathPrefix?, ttl?, clientDirectives?}",
      routes,
    );
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
    if (r.clientDirectives !== undefined && !CLIENT_DIRECTIVES.includes(r.clientDirectives)) {
      badOption(component, `${at}.clientDirectives`, '"follow" or "ignore"', r.clientDirectives);
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
export function matchRoute(
  routes: readonly Route[],
  host: string,
  path: string,
): Route | undefined {
  const hostname = host.replace(/:\d+$/, "");
  return routes.find(
    (r) =>
      (r.host === undefined || r.host === host || r.host === hostname) &&
      (r.pathPrefix === undefined ||
        path === r.pathPrefix ||
        path.startsWith(r.pathPrefix.endsWith("/") ? r.pathPrefix : `${r.pathPrefix}/`)),
  );
}

/**
 * The host the origin is told (X-Forwarded-Host): without the port the client happened to
 * put in Host, so `example.com:443` and `example.com` share entries; the origin sees only
 * what is keyed, so a port cannot poison an entry. A route that names a port keeps it: two
 * such routes may lead to different origins.
 */
export function forwardedHost(route: Route, host: string): string {
  return route.host?.includes(":") ? host : host.replace(/:\d+$/, "");
}

/**
 * The host part of a request's keys: forwardedHost, behind its scheme unless that is http
 * (`https://example.com`). The origin is told the scheme (X-Forwarded-Proto) and may build
 * another answer for it (a redirect to https), so answers for each are kept apart; http
 * keys, the only ones a Node listener makes, read as they always did.
 */
export function keyHost(route: Route, host: string, scheme = "http"): string {
  const told = forwardedHost(route, host);
  return scheme === "http" ? told : `${scheme}://${told}`;
}

/** `{path}?{query} {host}`: the path first, so a prefix purge is a key prefix. */
export function baseKey(target: string, host: string): string {
  return `${target} ${host}`;
}

/** `new URL`, or undefined where it would throw (Node 20 has no `URL.parse`). */
function parseUrl(href: string): URL | undefined {
  try {
    return new URL(href);
  } catch {
    return undefined;
  }
}

/**
 * The base key of a raw request target and its route, as the app would compute them (null:
 * not one the app caches), memoized: the runtime's fast path asks for it on every hit.
 */
export function fastKeys(
  routes: readonly Route[],
): (target: string, host: string) => { key: string; route: Route } | null {
  const keyOf = memoize(
    (memoKey) => {
      const space = memoKey.indexOf(" ");
      const host = memoKey.slice(0, space);
      const target = memoKey.slice(space + 1);
      if (!PLAIN_HOST.test(host)) return null;
      // The same normalization the app gets (WHATWG URL parsing), so keys agree. Joined as
      // @hono/node-server does, so "//x" stays a path. A host of the pattern's letters may
      // still be no host (`a.1`): the full path answers 400.
      const url = parseUrl(`http://${host}${target}`);
      if (!url || url.host !== host) return null;
      const normalized = url.pathname + url.search;
      const route = matchRoute(routes, host, url.pathname);
      return normalized.length <= MAX_CACHED_TARGET && route
        ? { key: baseKey(normalized, keyHost(route, host)), route }
        : null;
    },
    { size: KEY_MEMO_SIZE, maxLength: KEY_MEMO_MAX_LENGTH },
  );
  return (target, host) => keyOf(`${host} ${target}`);
}
