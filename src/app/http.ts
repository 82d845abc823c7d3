import type { CacheEntry } from "../core/entries/entry.ts";
import { extend } from "../core/entries/extend.ts";
import { parseHttpDate } from "./http-caching/rules.ts";

/** RFC 9211 2.2: why a request went to the origin or source. */
export type Forward =
  | "uri-miss"
  | "vary-miss"
  | "miss"
  | "request"
  | "stale"
  | "partial"
  | "method"
  | "bypass";

/** How the cache answered, for the Cache-Status header (RFC 9211). */
export type CacheOutcome =
  | { kind: "hit" }
  | { kind: "stale" }
  | {
      kind: "miss";
      stored: boolean;
      /** Default "miss". */
      fwd?: Forward;
      /** The origin's status, when it differs from the one sent (a 304 refresh). */
      fwdStatus?: number;
      /** Why it was not stored (the cache's reason; "not-stored" when none is known). */
      detail?: string;
    }
  /** A stale entry served because the origin failed (RFC 5861 4, stale-if-error). */
  | { kind: "stale-if-error"; fwdStatus?: number };

export const CACHE_NAME = "edgecache";

/** RFC 9211 section 2: `edgecache; hit; ttl=12`, `edgecache; fwd=miss; stored`, ... */
export function cacheStatus(outcome: CacheOutcome, entry: CacheEntry, now: number): string {
  const ttl = Math.floor((entry.freshUntil - now) / 1000);
  // RFC 9211 2.8: how long a browser or CDN may go on showing this reply (a string: a
  // token cannot hold "=").
  const bound =
    entry.browserBound === undefined ? "" : `; detail="browser-bound=${entry.browserBound}"`;
  switch (outcome.kind) {
    case "hit":
    case "stale":
      // A stale entry served while it revalidates is still a hit; its ttl is negative.
      return `${CACHE_NAME}; hit; ttl=${ttl}${bound}`;
    case "miss": {
      const status = outcome.fwdStatus === undefined ? "" : `; fwd-status=${outcome.fwdStatus}`;
      const head = `${CACHE_NAME}; fwd=${outcome.fwd ?? "miss"}${status}`;
      // Not stored: the detail says why (the Cache-Control sent still states the bound).
      return outcome.stored
        ? `${head}; stored; ttl=${ttl}${bound}`
        : `${head}; detail=${outcome.detail ?? "not-stored"}`;
    }
    case "stale-if-error": {
      const status = outcome.fwdStatus === undefined ? "" : `; fwd-status=${outcome.fwdStatus}`;
      return `${CACHE_NAME}; fwd=stale${status}; ttl=${ttl}; detail=stale-if-error`;
    }
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
 * RFC 9110 13.1.3: If-Modified-Since (evaluated only without If-None-Match) holds when the
 * representation has not changed since; a value that is not an HTTP-date is ignored.
 * `modified` is the stored response's Last-Modified or, without one, its Date (RFC 9111
 * 4.3.2: a cache evaluates the condition against the Date when there is no Last-Modified).
 */
export function notModifiedSince(
  ifModifiedSince: string | null | undefined,
  modified: string | undefined,
): boolean {
  if (!ifModifiedSince || !modified) return false;
  const since = parseHttpDate(ifModifiedSince);
  const at = parseHttpDate(modified);
  return since !== undefined && at !== undefined && at <= since;
}

/**
 * The reply for a cached entry: its headers plus ETag (when it has one), Age (RFC 9111
 * 5.1) and Cache-Status, or a 304 when the client already holds it (If-None-Match, or
 * If-Modified-Since without it; RFC 9110 13.2.1: only for 2xx). Used by the Hono apps and
 * by the Node adapter's fast path, so both answer the same bytes.
 */
export function entryReply(
  entry: CacheEntry,
  outcome: CacheOutcome,
  now: number,
  ifNoneMatch: string | null | undefined,
  ifModifiedSince?: string | null,
): EntryReply {
  // A copy that takes new headers on V8's fast path (see extend).
  const headers: Record<string, string> = extend(entry.headers, {});
  if (entry.etag) headers.etag = entry.etag;
  // An entry its owner keeps current is as new as the reply (see CacheEntry.browserBound):
  // a browser counts its max-age from now, not from when the entry was loaded.
  headers.age =
    entry.browserBound === undefined
      ? String(Math.max(0, Math.floor((now - entry.createdAt) / 1000)))
      : "0";
  headers["cache-status"] = cacheStatus(outcome, entry, now);
  const unchanged = ifNoneMatch
    ? entry.etag !== "" && etagMatches(ifNoneMatch, entry.etag)
    : notModifiedSince(ifModifiedSince, entry.headers["last-modified"] ?? entry.headers.date);
  if (entry.status >= 200 && entry.status < 300 && unchanged) {
    delete headers["content-type"];
    delete headers["content-length"];
    return { status: 304, headers, body: undefined };
  }
  return { status: entry.status, headers, body: entry.body };
}

export function replyResponse(reply: EntryReply): Response {
  return new Response(reply.body ?? null, { status: reply.status, headers: reply.headers });
}
