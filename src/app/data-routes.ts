import { badOption } from "../core/errors.ts";

/**
 * One resource's settings in the data API's `routes`, in seconds: how long its responses
 * live in edgecache's tiers, and what a browser or CDN in front may keep (see
 * docs/guides/data-api.md, "Browser and CDN caching").
 */
export interface DataRoute {
  /** Time to live in every tier of edgecache (memory, cache file, Redis, KV, Cache API). */
  ttl?: number;
  /**
   * A stale-while-revalidate window after the TTL, in edgecache's tiers and downstream:
   * browsers and CDNs may show a response this long while they revalidate it (RFC 5861 3).
   */
  staleWhileRevalidate?: number;
  /**
   * Browsers (and, with `shared`, CDNs) may reuse a response for `maxAge` seconds without
   * asking: a write is then seen there up to that long after it is acknowledged. Without
   * it, responses are `no-cache`: downstream caches revalidate each time (a 304).
   */
  browser?: BrowserCaching;
}

export interface BrowserCaching {
  /** Seconds a browser may reuse a response without asking (`max-age`). */
  maxAge: number;
  /**
   * CDNs and other shared caches may keep it too (no `private`). Never `public`: a shared
   * cache still keeps no response to a request with Authorization (RFC 9111 3.5).
   */
  shared?: boolean;
}

/** What a route tells downstream caches: Cache-Control, and the bound it sets, seconds. */
export interface Downstream {
  cacheControl: string;
  /** Seconds a downstream cache may show a response after a write: undefined for none. */
  bound: number | undefined;
}

const ROUTE_KEYS = new Set(["ttl", "staleWhileRevalidate", "browser"]);
const BROWSER_KEYS = new Set(["maxAge", "shared"]);
/** RFC 9111 1.2.2: delta-seconds are whole; 2^31 is what a cache must take as the largest. */
const MAX_DELTA_SECONDS = 2 ** 31;

// no-cache: downstream caches may keep a copy but must revalidate it (RFC 9111 5.2.2.4),
// since only edgecache hears of writes.
const REVALIDATE: Downstream = { cacheControl: "no-cache", bound: undefined };

/**
 * Checks the data API's `routes` in "expected X, got Y" form (`component` names where they
 * were given: the config file, a Worker's options, createDataApi), refusing unknown keys:
 * a misspelt setting would otherwise do nothing. Resource names are checked against the
 * database by createDataApi.
 */
export function validateDataRoutes(routes: unknown, component: string): void {
  if (routes === undefined) return;
  if (!isObject(routes)) badOption(component, "routes", "an object of resources' settings", routes);
  for (const [name, route] of Object.entries(routes)) {
    const here = `routes.${name}`;
    if (!isObject(route))
      badOption(component, here, "an object: {ttl, staleWhileRevalidate, browser}", route);
    known(route, ROUTE_KEYS, component, `${here}.`);
    const { ttl, staleWhileRevalidate: swr, browser } = route;
    if (ttl !== undefined && !(typeof ttl === "number" && ttl >= 1)) {
      badOption(component, `${here}.ttl`, "a number >= 1", ttl);
    }
    seconds(swr, component, `${here}.staleWhileRevalidate`);
    if (browser === undefined) continue;
    if (!isObject(browser))
      badOption(component, `${here}.browser`, "an object: {maxAge, shared}", browser);
    known(browser, BROWSER_KEYS, component, `${here}.browser.`);
    if (browser.maxAge === undefined) {
      badOption(component, `${here}.browser.maxAge`, "a whole number of seconds", undefined);
    }
    seconds(browser.maxAge, component, `${here}.browser.maxAge`);
    if (browser.shared !== undefined && typeof browser.shared !== "boolean") {
      badOption(component, `${here}.browser.shared`, "true or false", browser.shared);
    }
  }
}

/**
 * What a resource's responses tell browsers and CDNs. Any reuse without asking is
 * `private` (the browser's own cache) unless the route says `shared`: a response behind an
 * application's login must not be handed to another user by a CDN.
 */
export function downstreamOf(route: DataRoute | undefined): Downstream {
  const maxAge = route?.browser?.maxAge ?? 0;
  const swr = route?.staleWhileRevalidate ?? 0;
  if (maxAge === 0 && swr === 0) return REVALIDATE;
  const directives = [
    ...(route?.browser?.shared ? [] : ["private"]),
    `max-age=${maxAge}`,
    // RFC 5861 3: servable stale for `swr` s while it is revalidated.
    ...(swr > 0 ? [`stale-while-revalidate=${swr}`] : []),
  ];
  return { cacheControl: directives.join(", "), bound: maxAge + swr };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Refuses a key not in `keys`. */
function known(o: Record<string, unknown>, keys: Set<string>, component: string, prefix: string) {
  for (const k of Object.keys(o)) {
    if (!keys.has(k)) badOption(component, prefix + k, `one of ${[...keys].join(", ")}`, k);
  }
}

function seconds(value: unknown, component: string, at: string): void {
  if (value === undefined) return;
  if (
    !(Number.isInteger(value) && (value as number) >= 0 && (value as number) <= MAX_DELTA_SECONDS)
  ) {
    badOption(component, at, "a whole number of seconds", value);
  }
}
