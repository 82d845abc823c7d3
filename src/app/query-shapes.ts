import type { Context } from "hono";
import { badOption, EdgecacheError } from "../core/errors.ts";
import type { QueryCacheStats } from "../query-cache/stats.ts";

/**
 * A query cache whose shapes the admin API reports: the Drizzle adapter's `drizzleCache`,
 * raw SQL's `sqlCache`, Kysely's `dialect.cache`. Only its stats are read.
 */
export interface QueryCacheView {
  getStats(): QueryCacheStats;
}

/** What `GET /_edgecache/queries` says of one query cache. */
export interface QueryCacheReport
  extends Pick<
    QueryCacheStats,
    "hits" | "misses" | "hitRate" | "stored" | "writes" | "registrations" | "shapes"
  > {
  name: string;
}

const COMPONENT = "admin";

/** `queryCaches` as given to createAdminApi, checked: an object of named query caches. */
export function queryCachesOption(
  given: unknown,
): Readonly<Record<string, QueryCacheView>> | undefined {
  if (given === undefined) return undefined;
  const expected = "an object of query caches by name ({ kysely: dialect.cache })";
  if (typeof given !== "object" || given === null || Array.isArray(given)) {
    badOption(COMPONENT, "queryCaches", expected, given);
  }
  for (const [name, view] of Object.entries(given)) {
    if (typeof (view as Partial<QueryCacheView>)?.getStats !== "function") {
      badOption(COMPONENT, `queryCaches.${name}`, "a query cache with getStats()", view);
    }
  }
  return given as Record<string, QueryCacheView>;
}

/**
 * `GET /queries`: each query cache's counts and its query shapes (the last 200 stored, the
 * most stored first), each with how exactly it is followed and why not finer. A 404 when
 * the node was given none: the data API and the proxy cache no SQL of an application's.
 */
export function queryShapesHandler(caches: Readonly<Record<string, QueryCacheView>> | undefined) {
  return (c: Context) => {
    if (!caches) {
      throw new EdgecacheError(
        "E_NOT_FOUND",
        COMPONENT,
        "no query caches: give createAdminApi the application's as queryCaches ({ drizzle: cache, kysely: dialect.cache, sql })",
      );
    }
    const reports: QueryCacheReport[] = Object.entries(caches).map(([name, cache]) => {
      const { hits, misses, hitRate, stored, writes, registrations, shapes } = cache.getStats();
      return { name, hits, misses, hitRate, stored, writes, registrations, shapes };
    });
    return c.json({ caches: reports });
  };
}
