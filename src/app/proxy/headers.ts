import {
  endToEnd,
  type HeaderRecord,
  OWN_TARGETED_FIELD,
  toRecord,
} from "../../core/http-cache.ts";
import type { Ctx } from "./types.ts";

/**
 * Request headers a client could use to make the origin answer differently without the
 * cache key showing it (web cache poisoning). The forwarding ones are set by the proxy
 * itself, from the request's host, which is part of the key; the rest are dropped.
 */
const UNKEYED_REQUEST_HEADERS = [
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-port",
  "x-forwarded-server",
  "x-forwarded-prefix",
  "x-real-ip",
  "x-host",
  "x-original-url",
  "x-rewrite-url",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
];
/** Request-specific headers a shared (coalesced) origin request must not carry. */
export const PER_CLIENT_REQUEST_HEADERS = [
  "if-none-match",
  "if-modified-since",
  "if-match",
  "if-unmodified-since",
  "if-range",
  "range",
];
/**
 * Response headers for edgecache alone, never sent to clients: purge tags (kept for the
 * index, as CDNs do) and the cache control targeted at edgecache alone (RFC 9213 2.1).
 */
export const INTERNAL_RESPONSE_HEADERS = ["cache-tag", "surrogate-key", OWN_TARGETED_FIELD];
export const VIA = "1.1 edgecache";

/**
 * The request headers for the origin (RFC 9110 7.6: end-to-end ones, plus Via). Without a
 * body to send, no Content-Length either: the client's would keep the origin waiting for
 * bytes that never come (Transfer-Encoding is hop-by-hop, gone already).
 */
export function originHeaders(ctx: Ctx, withBody: boolean): Headers {
  const headers = endToEnd(ctx.headers);
  headers.delete("host");
  if (!withBody) headers.delete("content-length");
  for (const name of UNKEYED_REQUEST_HEADERS) headers.delete(name);
  if (ctx.clientAddress) headers.set("x-forwarded-for", ctx.clientAddress);
  headers.set("x-forwarded-host", ctx.host);
  headers.set("x-forwarded-proto", ctx.url.protocol.slice(0, -1));
  headers.append("via", VIA);
  return headers;
}

/** Stored response headers: end-to-end, without what is recomputed or internal, plus Via. */
export function storedHeaders(headers: Headers): HeaderRecord {
  const out = toRecord(headers);
  for (const name of ["age", "content-length", "etag", ...INTERNAL_RESPONSE_HEADERS]) {
    delete out[name];
  }
  out.via = out.via ? `${out.via}, ${VIA}` : VIA;
  // RFC 9110 6.6.1: a cache stores a response with a Date; the origin's, or the receipt's.
  out.date ??= new Date().toUTCString();
  return out;
}

/** Passed-through response headers: end-to-end, without internal ones, plus Via. */
export function clientHeaders(headers: Headers): Headers {
  const out = endToEnd(headers);
  for (const name of INTERNAL_RESPONSE_HEADERS) out.delete(name);
  out.append("via", VIA);
  return out;
}
