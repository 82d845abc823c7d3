import type { Context, MiddlewareHandler } from "hono";
import { badListOption, describeValue, EdgecacheError } from "../core/errors.ts";
import { memoize } from "../core/memo.ts";
import { ADMIN_PREFIX } from "./request-target.ts";

/**
 * Who is asking, and whether to believe what a request says about it: the admin API's
 * access rules, as functions of addresses and header values, and the data API's CSRF guard.
 */

/** Host names that always reach the admin API: no DNS answer can make them someone else's. */
export const LOOPBACK_HOSTS: readonly string[] = ["localhost", "127.0.0.1", "[::1]"];

/** Headers with which a proxy says a request is not its own (RFC 7239, and the de facto ones). */
const FORWARDING_HEADERS = ["forwarded", "x-forwarded-for", "x-real-ip"];

export function isLoopbackAddress(address: string | undefined): boolean {
  return address !== undefined && (address.startsWith("127.") || address === "::1");
}

/** `::ffff:127.0.0.1`, how a dual-stack socket reports an IPv4 peer, as `127.0.0.1`. */
export function normalizeAddress(address: string): string {
  const a = address.trim().toLowerCase();
  return a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a;
}

/**
 * The client's address as far as it can be believed: from a trusted proxy, the last
 * X-Forwarded-For entry that is not a trusted proxy (each proxy appends the address it heard
 * from, so entries left of an untrusted one are the client's own claims), the first when all
 * are; undefined when a trusted proxy sends none. From anyone else, the peer.
 */
export function clientAddress(
  peer: string | undefined,
  header: (name: string) => string | undefined,
  trustedProxies: ReadonlySet<string>,
): string | undefined {
  if (peer === undefined) return undefined;
  const from = normalizeAddress(peer);
  if (!trustedProxies.has(from)) return from;
  const chain = (header("x-forwarded-for") ?? "")
    .split(",")
    .map(normalizeAddress)
    .filter((a) => a !== "");
  return chain.findLast((a) => !trustedProxies.has(a)) ?? chain[0];
}

/**
 * Whether the client is on this machine. Not when a trusted proxy does not say whom it
 * forwards for, nor when a peer that is not a trusted proxy sends a forwarding header: that
 * is a reverse proxy on this machine that nobody declared, forwarding someone unknown.
 */
export function isLoopbackClient(
  peer: string | undefined,
  header: (name: string) => string | undefined,
  trustedProxies: ReadonlySet<string>,
): boolean {
  const untrustedPeer = peer !== undefined && !trustedProxies.has(normalizeAddress(peer));
  if (untrustedPeer && FORWARDING_HEADERS.some((h) => header(h) !== undefined)) return false;
  return isLoopbackAddress(clientAddress(peer, header, trustedProxies));
}

/** The name in a Host header or URL authority, lower case, without port or final dot. */
export function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  const name = h.startsWith("[") ? h.slice(0, h.indexOf("]") + 1) : h.replace(/:\d*$/, "");
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

/** A listening address as a Host header names it (`::1` is `[::1]`). */
export function hostOf(address: string): string {
  return address.split(":").length > 2 && !address.startsWith("[") ? `[${address}]` : address;
}

/** Whether `host` (a Host header's name, see hostName) is an IP literal, not a DNS name. */
function isIpLiteral(name: string): boolean {
  return name.startsWith("[") || /^\d{1,3}(\.\d{1,3}){3}$/.test(name);
}

/** Paths answered whatever the Host: health (load balancers probe by address) and a page without data. */
const ANY_HOST: ReadonlySet<string> = new Set([
  ADMIN_PREFIX,
  `${ADMIN_PREFIX}/`,
  `${ADMIN_PREFIX}/health`,
]);

/**
 * Whether a listening address is this machine's alone (127.0.0.0/8, ::1, localhost): only
 * this machine's programs reach it, a browser on it among them.
 */
export function isLoopbackListener(hostname: string): boolean {
  const name = hostName(hostOf(hostname));
  return (
    name === "localhost" ||
    name.endsWith(".localhost") ||
    isLoopbackAddress(normalizeAddress(name.replace(/^\[|\]$/g, "")))
  );
}

/**
 * The Host names a node's listener answers to, decided once for every mode (data API,
 * proxy, admin API; the raw hit path too): a checker that says why a Host is refused, or
 * undefined when any Host is answered. DNS rebinding: a page of evil.com whose name comes
 * to resolve to the node's address has the visitor's browser send `Host: evil.com`, and the
 * browser lets that page read the replies as its own. So a loopback listener answers only
 * its loopback names, `hostname` and `allowedHosts`; a listener on another address
 * (0.0.0.0, a LAN address) cannot know the names its clients use, and checks only when
 * `allowedHosts` lists them. An IP literal always passes: rebinding needs a name. `routed`:
 * names the node's own config routes by (the proxy's origins' `host`), answered too. Health
 * and the dashboard's page answer any Host, as they answer any client: they hold no data.
 */
export function listenerHosts(
  component: string,
  hostname: string,
  allowedHosts: readonly string[] | undefined,
  routed: readonly string[] = [],
): ((target: string, host: string | undefined) => EdgecacheError | undefined) | undefined {
  const allowed = hostSet(component, "allowedHosts", allowedHosts);
  if (!isLoopbackListener(hostname) && (allowedHosts ?? []).length === 0) return undefined;
  for (const name of [hostname, ...routed]) allowed.add(hostName(hostOf(name)));
  const passes = memoize(
    (host: string) => {
      const name = hostName(host);
      return allowed.has(name) || isIpLiteral(name);
    },
    { size: 1000 },
  );
  // No Host at all is request-target.ts's to refuse (a 400).
  return (target, host) =>
    host === undefined || passes(host) || ANY_HOST.has(target.split("?", 1)[0]!)
      ? undefined
      : new EdgecacheError(
          "E_FORBIDDEN",
          "http",
          `host ${JSON.stringify(host)} is not one this node answers to (allowedHosts)`,
        );
}

/**
 * An Origin header as browsers send one (RFC 6454 7): `scheme://host[:port]` and nothing
 * else. One with userinfo, a path, a query or another scheme than http(s) names no origin of
 * ours, though the URL parser would find our host in `http://evil@127.0.0.1/x`.
 */
const ORIGIN_SYNTAX = /^https?:\/\/[^/?#@\\\s]+$/i;

/**
 * Whether a request's Origin, when it sends one, is the origin it was sent to: its host,
 * by http or https (a TLS-terminating front proxy has a browser's https meet our http).
 */
export function sameOrigin(origin: string | undefined, host: string): boolean {
  if (origin === undefined) return true;
  if (!ORIGIN_SYNTAX.test(origin)) return false; // "null" (a sandboxed page) too
  try {
    const from = new URL(origin);
    // Both through the URL parser: default ports and case compare equal.
    return from.host === new URL(`${from.protocol}//${host}`).host;
  } catch {
    return false; // "null" (a sandboxed page, a redirect) and malformed origins
  }
}

/** The Host a request was sent to (in-process requests have only their URL). */
export function requestHost(c: Context): string {
  return c.req.header("host") ?? new URL(c.req.url).host;
}

/** RFC 9110 9.2.1. */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

/**
 * Refuses a write that a page of another origin had a browser send (CSRF): browsers send
 * Origin with every cross-origin request, and a form or text/plain POST goes out without a
 * CORS preflight. Clients that are not browsers send no Origin and are not concerned.
 * `allowedOrigins` (checked by originSet) are origins whose writes the operator accepts:
 * the site's own public origin when a front proxy rewrites Host (nginx's default).
 */
export function sameOriginWrites(
  allowedOrigins: ReadonlySet<string> = new Set(),
): MiddlewareHandler {
  return async (c, next) => {
    if (!SAFE_METHODS.has(c.req.method)) {
      const origin = c.req.header("origin");
      const listed = ORIGIN_SYNTAX.test(origin!) && allowedOrigins.has(originOf(origin!) ?? "");
      if (!sameOrigin(origin, requestHost(c)) && !listed) {
        throw new EdgecacheError(
          "E_FORBIDDEN",
          "http",
          "origin: cross-origin writes are refused (allowedOrigins lists the others)",
        );
      }
    }
    await next();
  };
}

/** An Origin as the URL parser serializes it (`http://a.example` for `HTTP://A.example:80`). */
function originOf(text: string): string | undefined {
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.origin : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks a list of origins option (allowedOrigins): `scheme://host[:port]` each, http or
 * https, without a path (an Origin header has none); returns them serialized.
 */
export function originSet(component: string, name: string, value: unknown): Set<string> {
  const list = stringList(
    component,
    name,
    value,
    "origins (such as https://app.example.com)",
    (o) => {
      const origin = originOf(o.trim());
      return origin !== undefined && origin === o.trim().toLowerCase().replace(/\/$/, "");
    },
  );
  return new Set(list.map((o) => originOf(o.trim())!));
}

/**
 * The token of `Authorization: Bearer <token>`; the scheme is case-insensitive
 * (RFC 9110 11.1) and followed by one or more spaces (11.4).
 */
export function bearerToken(authorization: string | undefined): string | undefined {
  const m = /^bearer +(\S+) *$/i.exec(authorization ?? "");
  return m?.[1];
}

/**
 * What a bearer token may hold: visible ASCII without spaces (RFC 6750 2.1's b64token and
 * more). A header value is ASCII on the wire (RFC 9110 5.5; fetch and node:http refuse
 * other characters), so a token with `é` could never be sent, and one with a space never
 * parsed: refused when it is set, not found out at the first request.
 */
const TOKEN = /^[\x21-\x7e]+$/;

/** The words of the refusal, for each place a token is set. */
export const TOKEN_EXPECTED = "visible ASCII without spaces (a bearer token, RFC 6750 2.1)";

/**
 * Why an empty token is refused: every runtime's environment reads an unset variable and an
 * empty one alike, and no token leaves the admin API open to loopback clients, which the
 * operator who set the variable did not ask for.
 */
export const TOKEN_EMPTY = "set but empty: unset it for loopback-only access, or give a token";

/** Whether a configured secret can travel in `Authorization: Bearer`. */
export function isBearerToken(value: string): boolean {
  return TOKEN.test(value);
}

/**
 * Refuses a configured token that no request could carry (see isBearerToken), naming the
 * setting (`setting`: where an operator sets it) and never showing the secret.
 */
export function checkToken(component: string, setting: string, value: unknown): void {
  if (value === undefined) return;
  if (value === "")
    throw new EdgecacheError("E_BAD_OPTION", component, `${setting}: ${TOKEN_EMPTY}`);
  if (typeof value !== "string" || !isBearerToken(value)) {
    throw new EdgecacheError(
      "E_BAD_OPTION",
      component,
      `${setting}: expected ${TOKEN_EXPECTED}, got ${typeof value === "string" ? "(hidden)" : describeValue(value)}`,
    );
  }
}

/** Compares secrets without an early exit, so timing does not reveal a prefix. */
export function constantTimeEqual(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    diff |= (a.charCodeAt(i) || 0) ^ (b.charCodeAt(i) || 0);
  }
  return diff === 0;
}

/** IPv4 dotted quad, or IPv6 (hex groups and colons, maybe an IPv4 tail); not a name. */
const IP_ADDRESS = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-f]*:[0-9a-f:.]*)$/i;

/** Checks an address list option (trustedProxies) and returns it as a set. */
export function addressSet(component: string, name: string, value: unknown): Set<string> {
  const list = stringList(component, name, value, "IP addresses", (a) => IP_ADDRESS.test(a.trim()));
  return new Set(list.map(normalizeAddress));
}

/**
 * A host name as a Host header carries it, a port allowed (`api.example.com`,
 * `localhost:8787`, `[::1]`): not a URL, a path or a list.
 */
const HOST_NAME =
  /^(\[[0-9a-f:.]+\]|[0-9a-f:]*:[0-9a-f:.]*|[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?\.?)(:\d{1,5})?$/i;

/** Whether `text` is a host name (see HOST_NAME). */
export function isHostName(text: string): boolean {
  return HOST_NAME.test(text.trim());
}

/** Checks a list of names option (allowedHosts); names as a Host header carries them. */
export function hostSet(component: string, name: string, value: unknown): Set<string> {
  const list = stringList(
    component,
    name,
    value,
    "host names (such as api.example.com)",
    isHostName,
  );
  return new Set([...LOOPBACK_HOSTS, ...list.map((h) => hostName(hostOf(h)))]);
}

function stringList(
  component: string,
  name: string,
  value: unknown,
  what: string,
  accepts: (text: string) => boolean,
): string[] {
  if (value === undefined) return [];
  const ok = (v: unknown) => typeof v === "string" && v.trim() !== "" && accepts(v);
  if (!Array.isArray(value) || !value.every(ok)) {
    badListOption(component, name, `an array of ${what}`, value, ok);
  }
  return value as string[];
}
