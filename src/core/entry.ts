import type { LogPosition } from "./change-log.ts";
import type { ListDependency } from "./deps/planner.ts";

/**
 * What every tier stores under a key: the response bytes ready to send, and what the
 * engine needs to decide freshness and invalidation. Times are epoch milliseconds.
 */
export interface CacheEntry {
  /** Payload bytes (a JSON body for the data API, any bytes for the library). */
  body: Uint8Array;
  /** Response headers to send with the body (content-type and the like). */
  headers: Record<string, string>;
  status: number;
  createdAt: number;
  /** Fresh until this time; served as a hit. */
  freshUntil: number;
  /** After freshUntil and until this time the entry may be served stale while revalidating. */
  staleUntil: number;
  /** Strong ETag, quoted: `"abc"`. */
  etag: string;
  /** What the entry depends on: row tags (`users#123-abc`), table tags, user tags. */
  tags: string[];
  /** Predicates and windows of the lists the entry holds (data API); see the planner. */
  lists?: ListDependency[];
  /** Opaque metadata the owner of the entry needs later (the data API keeps its query here). */
  meta?: unknown;
  /**
   * The change log position its load began at: a node that reads the entry from a shared
   * tier checks it against every change since. Without one it is served from memory only.
   */
  position?: LogPosition;
}

/** Bytes an entry occupies, roughly: body plus a fixed allowance for headers and tags. */
export function entrySize(entry: CacheEntry): number {
  let size = entry.body.byteLength + 64;
  for (const k in entry.headers) size += k.length + (entry.headers[k]?.length ?? 0);
  for (const t of entry.tags) size += t.length;
  return size;
}
