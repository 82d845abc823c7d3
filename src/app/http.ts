import type { CacheEntry } from "../core/entry.ts";

/** How the cache answered, for the Cache-Status header (RFC 9211). */
export type CacheOutcome = { kind: "hit" } | { kind: "stale" } | { kind: "miss"; stored: boolean };

export const CACHE_NAME = "edgecache";

/** RFC 9211 section 2: `edgecache; hit; ttl=12`, `edgecache; fwd=miss; stored`, ... */
export function cacheStatus(outcome: CacheOutcome, entry: CacheEntry, now: number): string {
  const ttl = Math.floor((entry.freshUntil - now) / 1000);
  switch (outcome.kind) {
    case "hit":
    case "stale":
      // A stale entry served while it revalidates is still a hit; its ttl is negative.
      return `${CACHE_NAME}; hit; ttl=${ttl}`;
    case "miss":
      return outcome.stored
        ? `${CACHE_NAME}; fwd=miss; stored; ttl=${ttl}`
        : `${CACHE_NAME}; fwd=miss; detail=not-stored`;
  }
}

/**
 * RFC 9110 13.1.2: If-None-Match uses the weak comparison, so `W/"x"` matches `"x"`;
 * `*` matches any current representation.
 */
export function etagMatches(ifNoneMatch: string | null | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  if (ifNoneMatch.trim() === "*") return true;
  const bare = etag.replace(/^W\//, "");
  return ifNoneMatch.split(",").some((t) => t.trim().replace(/^W\//, "") === bare);
}

export interface EntryReply {
  status: number;
  headers: Record<string, string>;
  /** Undefined for a 304. */
  body: Uint8Array | undefined;
}

/**
 * The reply for a cached entry: its headers plus ETag, Age (RFC 9111 5.1) and
 * Cache-Status, or a 304 when the client already holds this ETag. Used by the Hono apps
 * and by the Node adapter's fast path, so both answer the same bytes.
 */
export function entryReply(
  entry: CacheEntry,
  outcome: CacheOutcome,
  now: number,
  ifNoneMatch: string | null | undefined,
): EntryReply {
  const headers: Record<string, string> = {
    ...entry.headers,
    etag: entry.etag,
    age: String(Math.max(0, Math.floor((now - entry.createdAt) / 1000))),
    "cache-status": cacheStatus(outcome, entry, now),
  };
  if (entry.status === 200 && etagMatches(ifNoneMatch, entry.etag)) {
    delete headers["content-type"];
    delete headers["content-length"];
    return { status: 304, headers, body: undefined };
  }
  return { status: entry.status, headers, body: entry.body };
}

export function replyResponse(reply: EntryReply): Response {
  return new Response(reply.body ?? null, { status: reply.status, headers: reply.headers });
}
