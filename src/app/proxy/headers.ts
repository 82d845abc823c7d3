import { badOption } from "../../core/errors.ts";
import {
  endToEnd,
  type HeaderRecord,
  HOP_BY_HOP,
  OWN_TARGETED_FIELD,
  toRecord,
} from "../http-caching/rules.ts";
import type { Ctx } from "./types.ts";

/**
 * The client's request headers an origin request for an answer that may be stored carries
 * (unless the operator names more, see forwardHeaders): those whose effect on the answer
 * HTTP has the origin declare, so the cache keys by them. Content negotiation (RFC 9110
 * 12.5: the origin sends Vary), Origin (the Fetch standard's CORS protocol: Vary: Origin),
 * credentials (RFC 9111 3.5: an answer to Authorization is stored only when the origin
 * marks it shared; one for a Cookie must be marked private or vary), and the client's own
 * cache directives. Any other header could build an answer the key does not show, served
 * to every later client of the URL (web cache poisoning): `X-Forwarded-Ssl`, which Rack
 * reads, turning the cached answer into a redirect to http, is one of many.
 */
export const DEFAULT_FORWARDED_HEADERS: readonly string[] = [
  "accept",
  "accept-encoding",
  "accept-language",
  "authorization",
  "cache-control",
  "cookie",
  "origin",
  "pragma",
];
/**
 * Headers with which a client claims what only a proxy in front may say (its address, the
 * scheme, host, path or method it was asked for, who it authenticated): never passed on,
 * even when the answer is not stored; edgecache sets the standard ones itself. Recognised
 * in any spelling a CGI, WSGI, Rack or PHP stack reads as the same variable
 * (`X_Forwarded_Host` is its HTTP_X_FORWARDED_HOST): see cgiName.
 */
const CLAIMS = new Set([
  // The client's address: RFC 7239, and what nginx, Akamai, PHP (HTTP_CLIENT_IP), Express
  // and Rails, Google's frontends and older proxies put it in.
  "forwarded",
  "forwarded-for",
  "x-forwarded",
  "x-real-ip",
  "x-client-ip",
  "client-ip",
  "true-client-ip",
  "x-cluster-client-ip",
  "x-originating-ip",
  "x-proxyuser-ip",
  // The scheme: IIS's Front-End-Https, Tornado's X-Scheme, Werkzeug's X-Url-Scheme.
  "front-end-https",
  "x-scheme",
  "x-url-scheme",
  // The host, path or method asked for: IIS URL Rewrite, Symfony, Zend, method overrides.
  "x-host",
  "x-http-host-override",
  "x-rewrite-url",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  // Whom an auth proxy in front authenticated (Apache's REMOTE_USER, Grafana's auth proxy).
  "x-webauth-user",
  "x-client-cert",
  "x-ssl-client-cert",
]);
const CLAIM_PREFIXES = [
  // De facto families: X-Forwarded-(For, Host, Proto, Prefix, Server, Uri, User, Email,
  // Client-Cert...), X-Original-(URL, URI, Host, Method), read by most frameworks.
  "x-forwarded-",
  "x-original-",
  // Kubernetes' and others' auth proxies (X-Remote-User, -Group), and the address
  // (X-Remote-IP, X-Remote-Addr); Authelia's Remote-User, -Groups, -Email.
  "x-remote-",
  "remote-",
  // oauth2-proxy's identity (X-Auth-Request-User, -Email, -Access-Token).
  "x-auth-request-",
  // Set by the CDN or balancer in front, which an origin behind it believes: Cloudflare's
  // (CF-Connecting-IP, CF-Visitor's scheme, CF-Access identity), Fastly's, IIS ARR's
  // (X-ARR-SSL, X-ARR-ClientCert) and Envoy's (X-Envoy-External-Address, -Original-Path).
  "cf-",
  "fastly-",
  "x-arr-",
  "x-envoy-",
];
/**
 * httpoxy (CVE-2016-5385): CGI and the stacks that follow it read `Proxy` as HTTP_PROXY, the
 * variable their HTTP clients take the outbound proxy from. Never sent to an origin, on any
 * request, whatever forwardHeaders names.
 */
const NEVER_SENT = "proxy";
/** Fields edgecache sets on every origin request; an operator cannot name them. */
const SET_BY_PROXY = ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "via"];

/**
 * A field name as CGI (RFC 3875 4.1.18) and the stacks that follow it (WSGI, Rack, PHP)
 * see it: case folded, `_` and `-` alike; spelled here with `-`.
 */
export function cgiName(name: string): string {
  return name.toLowerCase().replaceAll("_", "-");
}

function isClaim(name: string): boolean {
  const cgi = cgiName(name);
  return CLAIMS.has(cgi) || CLAIM_PREFIXES.some((p) => cgi.startsWith(p));
}

/**
 * Checks the forwardHeaders option: field names (RFC 9110 5.1 tokens), lower-cased; not
 * hop-by-hop, Host, or one edgecache sets itself.
 */
export function forwardedHeaders(
  value: unknown,
  component: string,
  name = "forwardHeaders",
): string[] {
  if (value === undefined) return [];
  const expected = "an array of request header names";
  if (!Array.isArray(value)) badOption(component, name, expected, value);
  const names = (value as unknown[]).map((n) => {
    if (typeof n !== "string" || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/i.test(n)) {
      badOption(component, name, expected, n);
    }
    const field = (n as string).toLowerCase();
    const cgi = cgiName(field);
    const own = cgi === "host" || cgi === NEVER_SENT || SET_BY_PROXY.includes(cgi);
    if (own || HOP_BY_HOP.has(cgi)) {
      badOption(component, name, "a header the client sends end to end", n);
    }
    return field;
  });
  return [...new Set(names)].sort();
}

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
 * The request headers of an origin request whose answer may be stored (a GET or HEAD the
 * cache loads): the client's DEFAULT_FORWARDED_HEADERS and the `named` ones (which the
 * cache keys by, see load.ts), nothing else, plus edgecache's own (forwardingFields).
 */
export function loadHeaders(ctx: Ctx, named: readonly string[]): Headers {
  const headers = new Headers();
  for (const names of [DEFAULT_FORWARDED_HEADERS, named]) {
    for (const name of names) {
      const value = ctx.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
  }
  return forwardingFields(headers, ctx);
}

/**
 * The request headers of an origin request whose answer is never stored (other methods,
 * and reads the cache does not take): the client's end-to-end ones (RFC 9110 7.6), without
 * what only a proxy may claim unless the operator named it, plus edgecache's own. Without
 * a body to send, no Content-Length either: the client's would keep the origin waiting
 * for bytes that never come (Transfer-Encoding is hop-by-hop, gone already).
 */
export function passHeaders(ctx: Ctx, withBody: boolean, named: readonly string[]): Headers {
  const headers = endToEnd(ctx.headers);
  headers.delete("host");
  if (!withBody) headers.delete("content-length");
  // A claim passes only as the operator spelled it; its other spellings are the client's.
  for (const name of [...headers.keys()]) {
    const never = cgiName(name) === NEVER_SENT;
    if (never || (isClaim(name) && !named.includes(name))) headers.delete(name);
  }
  return forwardingFields(headers, ctx);
}

/** What edgecache says of the request it forwards: whom for, the host and scheme, Via. */
function forwardingFields(headers: Headers, ctx: Ctx): Headers {
  if (ctx.clientAddress) headers.set("x-forwarded-for", ctx.clientAddress);
  headers.set("x-forwarded-host", ctx.forwardedHost);
  // The scheme the request's keys hold (keyHost): a stored answer built for it is served
  // only to requests by the same scheme.
  headers.set("x-forwarded-proto", ctx.scheme);
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
