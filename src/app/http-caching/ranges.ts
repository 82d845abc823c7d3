/**
 * Byte ranges (RFC 9110 14): which part of a stored representation a `Range` request gets,
 * and how two parts of one join into the whole (RFC 9111 3.4). Pure, so the cases can be
 * listed in a test.
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

/** Bytes start..end (inclusive) of a representation of `size` bytes. */
export interface ByteSpan {
  start: number;
  end: number;
  size: number;
}

/** RFC 9110 14.4: `bytes 0-499/1234`; a complete length of `*` or a multipart body is none. */
const CONTENT_RANGE = /^bytes\s+(\d+)-(\d+)\/(\d+)$/i;

/** The span a 206's Content-Range names, if it is one range of a known length. */
export function contentRange(value: string | null | undefined): ByteSpan | undefined {
  const m = value ? CONTENT_RANGE.exec(value.trim()) : null;
  if (!m) return undefined;
  const [start, end, size] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return start <= end && end < size ? { start, end, size } : undefined;
}

/** Whether a Range header asks for one byte range in a form selectRange answers. */
export function isSingleRange(range: string | null | undefined): boolean {
  if (!range) return false;
  const eq = range.indexOf("=");
  if (eq < 0 || range.slice(0, eq).trim().toLowerCase() !== "bytes") return false;
  const m = RANGE_SPEC.exec(range.slice(eq + 1).trim());
  return m !== null && (m[2] === undefined || m[2] === "" || Number(m[2]) >= Number(m[1]));
}

/**
 * The one Range that asks for what `held` lacks of its representation (its head or its
 * tail); undefined when it lacks both, which takes the whole.
 */
export function missingRange(held: ByteSpan): string | undefined {
  if (held.start === 0) return `bytes=${held.end + 1}-`;
  if (held.end === held.size - 1) return `bytes=0-${held.start - 1}`;
  return undefined;
}

/**
 * RFC 9110 15.3.7.3, RFC 9111 3.4: two spans of one representation (same strong validator,
 * checked by the caller) joined into the whole of it, when together they cover it; each
 * body must be its span's length.
 */
export function joinSpans(
  a: { span: ByteSpan; body: Uint8Array },
  b: { span: ByteSpan; body: Uint8Array },
): Uint8Array | undefined {
  const size = a.span.size;
  if (b.span.size !== size) return undefined;
  for (const { span, body } of [a, b]) {
    if (body.byteLength !== span.end - span.start + 1) return undefined;
  }
  const [first, second] = a.span.start <= b.span.start ? [a, b] : [b, a];
  if (first.span.start !== 0 || second.span.start > first.span.end + 1) return undefined;
  if (Math.max(first.span.end, second.span.end) !== size - 1) return undefined;
  const whole = new Uint8Array(size);
  whole.set(first.body, 0);
  whole.set(second.body, second.span.start);
  return whole;
}
