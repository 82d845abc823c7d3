import type { Cache } from "../../core/cache/index.ts";
import { describeValue, EdgecacheError } from "../../core/errors.ts";
import { COMPONENT } from "./routes.ts";
import { URL_TAG, USER_TAG, VARY_RECORD } from "./types.ts";

export interface PurgeRequest {
  tags?: string[];
  /** Paths (`/v1/users?id=1`) or absolute URLs; every host and Vary variant of each. */
  urls?: string[];
  /** A path prefix (`/v1/users`). */
  prefix?: string;
}

/**
 * What a purge's count leaves out when it names tags, said in its reply (`uncounted`): the
 * tiers index keys, not tags, so another node's copies under a tag are found by no lookup
 * short of reading every entry. They are refused on read all the same (the purge's record).
 */
export const TAGS_UNCOUNTED =
  "copies under the tags that other nodes stored and this node never read: no tier indexes tags, so they are not counted, but are refused on read all the same";

/**
 * Removes entries by tag, URL or path prefix from every tier; resolves with how many
 * responses were removed: those this node registered, and copies it never did that the tiers
 * it can list hold under the URLs and the prefix (another node's, the manifest object's on
 * Workers). A copy in a tier that cannot list (the Cache API) is refused on read all the
 * same, by the purge's record in the log.
 */
export async function purge(cache: Cache, request: PurgeRequest): Promise<number> {
  const tags = (request.tags ?? []).map((t) => USER_TAG + t);
  const targets = (request.urls ?? []).map(targetOf);
  for (const t of targets) tags.push(URL_TAG + t);
  if (request.prefix !== undefined && !request.prefix.startsWith("/")) {
    throw new EdgecacheError(
      "E_BAD_BODY",
      COMPONENT,
      `prefix: expected a path starting with "/", got ${describeValue(request.prefix)}`,
    );
  }
  // Vary records go too, but are not responses: count them out.
  const keys = new Set<string>();
  for (const tag of tags) for (const k of cache.keys({ tag })) keys.add(k);
  if (request.prefix !== undefined)
    for (const k of cache.keys({ prefix: request.prefix })) keys.add(k);
  let records = 0;
  for (const k of keys) if (cache.registration(k)?.tags.includes(VARY_RECORD)) records++;
  // A URL's keys all start with its target and a space (see baseKey): every host, every variant.
  const under = targets.map((t) => `${t} `);
  if (request.prefix !== undefined) under.push(request.prefix);
  const unindexed = new Set<string>();
  for (const prefix of under) {
    for await (const k of cache.held(prefix)) {
      if (keys.has(k) || unindexed.has(k)) continue;
      const entry = (await cache.inspect(k)).find((t) => t.entry)?.entry;
      if (!entry) continue;
      unindexed.add(k);
      if (entry.tags.includes(VARY_RECORD)) records++;
    }
  }
  const removed = await cache.invalidate({
    tags,
    prefix: request.prefix,
    ...(unindexed.size > 0 && { keys: [...unindexed] }),
  });
  return Math.max(0, removed - records);
}

/** A path or absolute URL, normalized as request targets are. */
function targetOf(u: string): string {
  if (!u.startsWith("/") && !/^https?:\/\//i.test(u)) {
    throw new EdgecacheError(
      "E_BAD_BODY",
      COMPONENT,
      `urls: expected a path starting with "/" or an http(s) URL, got ${describeValue(u)}`,
    );
  }
  const url = new URL(u, "http://edgecache");
  return url.pathname + url.search;
}
