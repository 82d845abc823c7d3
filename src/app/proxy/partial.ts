/**
 * Stored 206 responses (RFC 9111 3.3): a piece of a representation, kept as an incomplete
 * entry with its status and Content-Range. It answers a GET whose single range lies within
 * it; a request that needs more completes it from the origin (RFC 9111 3.4).
 */
import type { CacheEntry } from "../../core/entries/entry.ts";
import { extend } from "../../core/entries/extend.ts";
import {
  type ByteSpan,
  contentRange,
  ifRangeHolds,
  isSingleRange,
  missingRange,
  type RangeAnswer,
  selectRange,
} from "../http-caching/ranges.ts";

/** The span a stored entry holds when it is a piece; undefined for a complete response. */
export function pieceOf(entry: CacheEntry): ByteSpan | undefined {
  return entry.status === 206 ? contentRange(entry.headers["content-range"]) : undefined;
}

/**
 * What a request gets of a stored piece: the part it names, or a 416 (the piece knows the
 * complete length); undefined when it needs more than the piece holds (RFC 9111 3.3: an
 * incomplete response answers only a range wholly within it).
 */
export function fromPiece(
  piece: ByteSpan,
  entry: CacheEntry,
  method: string,
  headers: Headers,
): Exclude<RangeAnswer, { kind: "whole" }> | undefined {
  if (method !== "GET") return undefined;
  if (!ifRangeHolds(headers.get("if-range"), entry.etag, entry.headers["last-modified"])) {
    return undefined;
  }
  const answer = selectRange(headers.get("range"), piece.size);
  if (answer.kind === "unsatisfiable") return answer;
  if (answer.kind === "part" && answer.start >= piece.start && answer.end <= piece.end) {
    return answer;
  }
  return undefined;
}

/** Whether a stored entry can answer a request: a complete one always, a piece within it. */
export function answers(entry: CacheEntry, method: string, headers: Headers): boolean {
  const piece = pieceOf(entry);
  return !piece || fromPiece(piece, entry, method, headers) !== undefined;
}

/** The Range (and If-Range) an origin request for a read carries, and whether it revalidates. */
export interface OriginRange {
  range?: string;
  ifRange?: string;
  /** Send the held entry's validators (RFC 9111 4.3.1): it is kept if they still hold. */
  conditional: boolean;
  /** The Range is the client's own: the origin's answer is the one the client asked for. */
  clientRange: boolean;
  /** The held piece this request completes (its answer is joined to it, RFC 9111 3.4). */
  completes?: ByteSpan;
}

/**
 * How an origin request for a GET or HEAD asks about ranges, given what is held for it:
 * - nothing: a single byte range the client asks for goes on, so a large body is not
 *   fetched whole for a few bytes, and the 206 is stored as a piece; else the whole;
 * - a complete response: revalidated whole (ranges come from it);
 * - a piece with the client's range in it (stale): revalidated, with the client's range;
 * - a piece the request needs more of: what it lacks (`If-Range` its strong ETag, so a
 *   changed representation comes back whole), or the whole when it lacks both ends; when
 *   its complete length is over `maxSize`, the client's own range again (a new piece).
 */
export function originRange(
  method: string,
  headers: Headers,
  held: CacheEntry | undefined,
  maxSize: number,
): OriginRange {
  const asked = headers.get("range");
  const own =
    method === "GET" && isSingleRange(asked)
      ? { range: asked!, clientRange: true }
      : { clientRange: false };
  const piece = held && pieceOf(held);
  if (!held) return extend(own, { conditional: false });
  if (!piece) return { conditional: true, clientRange: false };
  if (fromPiece(piece, held, method, headers)) return extend(own, { conditional: true });
  if (piece.size > maxSize) return extend(own, { conditional: false });
  const missing = missingRange(piece);
  if (missing === undefined) return { conditional: false, clientRange: false };
  return {
    range: missing,
    ...(isStrong(held.etag) && { ifRange: held.etag }),
    conditional: false,
    clientRange: false,
    completes: piece,
  };
}

/** RFC 9110 8.8.3.2: a strong entity tag, the only kind two pieces are joined by. */
export function isStrong(etag: string | undefined): etag is string {
  return etag?.startsWith('"') === true;
}
