import type { Cache } from "../../core/cache/index.ts";
import { EdgecacheError } from "../../core/errors.ts";
import { COMPONENT } from "./routes.ts";
import { URL_TAG, USER_TAG, VARY_RECORD } from "./types.ts";

export interface PurgeRequest {
  tags?: string[];
  /** Paths (`/v1/users?id=1`) or absolute URLs; every host and Vary variant of each. */
  urls?: string[];
  /** A path prefix (`/v1/users`). */
  prefix?: string;
}

/** Removes entries by tag, URL or path prefix from every tier; resolves with how many. */
export async function purge(cache: Cache, request: PurgeRequest): Promise<number> {
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
  for (const tag of tags) for (const k of cache.keys({ tag })) keys.add(k);
  if (request.prefix !== undefined)
    for (const k of cache.keys({ prefix: request.prefix })) keys.add(k);
  let records = 0;
  for (const k of keys) if (cache.registration(k)?.tags.includes(VARY_RECORD)) records++;
  const removed = await cache.invalidate({ tags, prefix: request.prefix });
  return Math.max(0, removed - records);
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
