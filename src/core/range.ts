/**
 * Byte ranges (RFC 9110 14) of a complete stored representation: which part of it a
 * `Range` request gets. Pure, so the cases can be listed in a test.
 */

/** What a Range header asks of a body of `size` bytes. */
export type RangeAnswer =
  /** Send it whole (no Range, an invalid one, another unit, or several ranges). */
  | { kind: "whole" }
  /** A 206 of bytes start..end, inclusive. */
  | { kind: "part"; start: number; end: number }
  /** A 416: no range overlaps the body. */
  | { kind: "unsatisfiable" };

const WHOLE: RangeAnswer = { kind: "whole" };
/** RFC 9110 14.1.2 int-range ("0-499", "500-") or suffix-range ("-500"). */
const RANGE_SPEC = /^(?:(\d+)-(\d*)|-(\d+))$/;

/**
 * RFC 9110 14.2: a server may ignore Range, and does for a syntax it does not take. One
 * range is answered; a request for several gets the whole body (a multipart reply would
 * cost more than the bytes it saves, RFC 9110 14.6 allows either).
 */
export function selectRange(range: string | null | undefined, size: number): RangeAnswer {
  if (!range) return WHOLE;
  const eq = range.indexOf("=");
  if (eq < 0 || range.slice(0, eq).trim().toLowerCase() !== "bytes") return WHOLE;
  const specs = range
    .slice(eq + 1)
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (specs.length !== 1) return WHOLE;
  const m = RANGE_SPEC.exec(specs[0]!);
  if (!m) return WHOLE;
  if (m[3] !== undefined) {
    // A suffix: the last N bytes (all of them when N is larger); none of an empty body.
    const n = Number(m[3]);
    if (n === 0 || size === 0) return { kind: "unsatisfiable" };
    return { kind: "part", start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const last = m[2] === "" ? Number.POSITIVE_INFINITY : Number(m[2]);
  if (last < start) return WHOLE; // invalid: ignored (14.1.1)
  if (start >= size) return { kind: "unsatisfiable" };
  return { kind: "part", start, end: Math.min(last, size - 1) };
}

/**
 * RFC 9110 13.1.5 If-Range: the range applies only when the validator still names the
 * stored representation: a strong entity tag equal to its (strong) ETag, or an HTTP-date
 * equal to its Last-Modified. Otherwise the whole body is sent.
 */
export function ifRangeHolds(
  ifRange: string | null | undefined,
  etag: string,
  lastModified: string | undefined,
): boolean {
  if (ifRange === null || ifRange === undefined) return true;
  const value = ifRange.trim();
  if (value.startsWith('"') || value.startsWith("W/")) {
    // The strong comparison (13.1.2): weak tags never match.
    return !value.startsWith("W/") && etag !== "" && !etag.startsWith("W/") && value === etag;
  }
  return lastModified !== undefined && value === lastModified.trim();
}
