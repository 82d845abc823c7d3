/**
 * The invariants the variant generator checks, each a pure function of what was sent, what
 * came back and what the echo origin recorded; each returns why it is broken, or undefined.
 */
import { ECHO_VARY, type OriginRequest } from "./echo-origin.ts";
import { dechunk } from "./http-fuzz.ts";

/** A request as the client sent it, the fields the invariants read. */
export interface SentRequest {
  method: string;
  target: string;
  /** Host fields, in order. */
  hosts: string[];
  headers: [string, string][];
}

/** A reply's status, head fields (lower-cased names) and body. */
export interface ParsedReply {
  status: number;
  headers: [string, string][];
  body: string;
}

export function parseReply(text: string): ParsedReply {
  const end = text.indexOf("\r\n\r\n");
  const head = (end < 0 ? text : text.slice(0, end)).split("\r\n");
  const status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(head[0] ?? "")?.[1] ?? 0);
  const headers = head.slice(1).map((line): [string, string] => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  });
  let body = end < 0 ? "" : text.slice(end + 4);
  if (/chunked/i.test(field(headers, "transfer-encoding") ?? "")) body = dechunk(body);
  return { status, headers, body: Buffer.from(body, "latin1").toString("utf8") };
}

export function field(headers: readonly [string, string][], name: string): string | undefined {
  return headers.find(([n]) => n.toLowerCase() === name)?.[1];
}

// --- traversal -------------------------------------------------------------------------

/** Overlong UTF-8 and %u escapes as a lenient decoder reads them. */
const LENIENT: [RegExp, string][] = [
  [/%c0%ae|%e0%80%ae|%u002e/gi, "."],
  [/%c0%af|%e0%80%af|%u002f|%u2215/gi, "/"],
  [/%c1%9c|%e0%81%9c|%u005c/gi, "\\"],
];

/** One round of percent-decoding, leaving what does not decode as it is. */
function decodeOnce(s: string): string {
  return s.replace(/(?:%[0-9a-f]{2})+/gi, (m) => {
    try {
      return decodeURIComponent(m);
    } catch {
      return m.replace(/%([0-9a-f]{2})/gi, (_, h: string) =>
        Number.parseInt(h, 16) < 0x80 ? String.fromCharCode(Number.parseInt(h, 16)) : `%${h}`,
      );
    }
  });
}

/**
 * The paths a raw target's path may mean to common servers: as sent, decoded once (nginx),
 * twice (IIS's double decode), with overlong UTF-8 and %u escapes (IIS, old decoders).
 */
export function serverReadings(target: string): string[] {
  const q = target.indexOf("?");
  let path = q < 0 ? target : target.slice(0, q);
  if (!path.startsWith("/")) path = path.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, "");
  const out = new Set<string>([path]);
  let s = path;
  for (let i = 0; i < 3; i++) {
    for (const [re, by] of LENIENT) s = s.replace(re, by);
    s = decodeOnce(s);
    out.add(s);
  }
  return [...out];
}

/**
 * Why a target the origin got holds a dot segment as some common server resolves it, or
 * undefined: each reading split at `/` and `\` (IIS), each segment without its `;params`
 * (Tomcat, Jetty), is `.` or `..`.
 */
export function traversalProblem(target: string): string | undefined {
  for (const reading of serverReadings(target)) {
    const segments = reading.split(/[/\\]/).map((s) => s.split(";")[0]!.replace(/\0.*$/, ""));
    if (segments.some((s) => s === "." || s === "..")) {
      return `the origin got ${JSON.stringify(target)}, which a server reads as ${JSON.stringify(reading)}`;
    }
  }
  return undefined;
}

// --- claims ------------------------------------------------------------------------------

/** Kept apart from the proxy's own list (headers.ts) on purpose: a name it misses is caught. */
const CLAIMS = new Set([
  "forwarded",
  "x-real-ip",
  "x-client-ip",
  "true-client-ip",
  "cf-connecting-ip",
  "fastly-client-ip",
  "x-cluster-client-ip",
  "front-end-https",
  "x-host",
  "x-rewrite-url",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  "proxy",
  "client-ip",
  "x-scheme",
  "x-url-scheme",
  "x-originating-ip",
  "x-forwarded",
  "forwarded-for",
  "x-http-host-override",
  "x-proxyuser-ip",
  "remote-user",
]);
const CLAIM_PREFIXES = [
  "x-forwarded-",
  "x-original-",
  "x-remote-",
  "x-auth-request-",
  "x-arr-",
  "x-envoy-",
  "cf-",
  "fastly-",
];
/** What the proxy says itself, in exactly this spelling (checked against the listener). */
export const SET_BY_PROXY = ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"];

/** A header name as a CGI-style server reads it: any case, `_` as `-`. */
export const cgiName = (name: string) => name.toLowerCase().replace(/_/g, "-");

export function isClaim(name: string): boolean {
  const n = cgiName(name);
  return CLAIMS.has(n) || CLAIM_PREFIXES.some((p) => n.startsWith(p));
}

/**
 * Why the origin request carries a claim a client made, or undefined: a claim header in any
 * spelling that the proxy does not set itself, or one it sets but not once, in its own
 * spelling, with the listener's value (`expected`).
 */
export function claimProblem(
  seen: OriginRequest,
  expected: { proto: string; for: string; host?: string },
): string | undefined {
  const counts = new Map<string, number>();
  for (const [name, value] of seen.headers) {
    if (!isClaim(name)) continue;
    const lower = name.toLowerCase();
    if (!SET_BY_PROXY.includes(lower)) {
      return `origin request ${seen.id} carries ${name}: ${value}`;
    }
    counts.set(lower, (counts.get(lower) ?? 0) + 1);
    const want =
      lower === "x-forwarded-proto"
        ? expected.proto
        : lower === "x-forwarded-for"
          ? expected.for
          : expected.host;
    if (want !== undefined && value.toLowerCase() !== want.toLowerCase()) {
      return `origin request ${seen.id} carries ${name}: ${value}, the listener would say ${want}`;
    }
  }
  for (const [name, n] of counts) {
    if (n > 1) return `origin request ${seen.id} carries ${name} ${n} times`;
  }
  return undefined;
}

// --- what a request names ----------------------------------------------------------------

/** The host a request names (RFC 9112 3.2.2: an absolute-form target's wins), lower-cased. */
export function requestHost(r: SentRequest): string | undefined {
  const abs = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?([^/?#]*)/i.exec(r.target);
  if (abs) return abs[1]!.toLowerCase();
  return r.hosts.length === 1 ? r.hosts[0]!.toLowerCase() : undefined;
}

const withoutPort = (host: string) => host.replace(/:\d*$/, "");

/**
 * Whether a host names this machine's loopback as a browser would send it (what a
 * DNS-rebinding page cannot): 127/8, localhost, [::1], and the numeric spellings the URL
 * parser turns into them (`2130706433`); 0.0.0.0 too, which reaches loopback on Linux.
 */
export function isLoopbackHost(host: string): boolean {
  let h = withoutPort(host);
  try {
    h = new URL(`http://${h}`).hostname;
  } catch {
    return false;
  }
  return /^127\.\d+\.\d+\.\d+$/.test(h) || h === "localhost" || h === "[::1]" || h === "0.0.0.0";
}

/** An IP address: no DNS name, so no rebinding (a page's origin is never one it could rebind). */
function isIpLiteral(host: string): boolean {
  try {
    const h = new URL(`http://${withoutPort(host)}`).hostname;
    return /^\d+\.\d+\.\d+\.\d+$/.test(h) || h.startsWith("[");
  } catch {
    return false;
  }
}

/** A target's path and query as the WHATWG URL parser (the proxy's) normalizes them. */
export function canonicalTarget(target: string): string {
  const path = target.startsWith("/") ? target : target.replace(/^[^:]*:\/\/[^/?#]*/, "") || "/";
  try {
    const url = new URL(`http://h${path.startsWith("/") ? path : `/${path}`}`);
    return url.pathname + url.search;
  } catch {
    return path;
  }
}

/**
 * The credential a request carries, as the tokens it names (Authorization's bearer token or
 * whole value, X-Edgecache-Key's key), sorted; undefined: none.
 */
export function credentialOf(headers: readonly [string, string][]): string | undefined {
  const tokens: string[] = [];
  for (const [n, v] of headers) {
    const name = n.toLowerCase();
    // Two Authorization fields may reach the origin joined (RFC 9110 5.3).
    if (name === "authorization")
      tokens.push(...v.split(/, */).map((t) => t.replace(/^bearer +/i, "")));
    else if (name === "x-edgecache-key") tokens.push(v);
  }
  return tokens.length === 0 ? undefined : [...new Set(tokens)].sort().join(" | ");
}

// --- stored answers ----------------------------------------------------------------------

/**
 * Request headers that cannot change a stored answer unseen: the origin must declare their
 * effect (Vary, RFC 9110 12.5.5; Cookie and Origin likewise, RFC 9111 3.5 and Fetch's CORS
 * protocol), the connection's own, what the proxy sets (checked apart), and what fetch adds.
 */
const DECLARED = new Set([
  "host",
  "connection",
  "content-length",
  "transfer-encoding",
  "keep-alive",
  "via",
  "accept",
  "accept-encoding",
  "accept-language",
  "cache-control",
  "pragma",
  "cookie",
  "origin",
  "authorization",
  "user-agent",
  "sec-fetch-mode",
  ...SET_BY_PROXY,
]);

/**
 * Why an answer the origin built for `seen` (first served to `first`) may not be served to
 * `now`, or undefined: the path and query differ, the scheme or host the origin was told is
 * not what the listener says for `now`, another header the origin saw (not keyed) has
 * another value, or another credential.
 */
export function storedAnswerProblem(
  seen: OriginRequest,
  first: SentRequest,
  now: SentRequest,
): string | undefined {
  const at = (s: string) => `origin request ${seen.id} (for ${JSON.stringify(first.target)}) ${s}`;
  if (canonicalTarget(seen.target) !== canonicalTarget(now.target)) {
    return at(
      `got ${JSON.stringify(seen.target)}; its answer went to ${JSON.stringify(now.target)}`,
    );
  }
  const proto = field(seen.headers, "x-forwarded-proto");
  if (proto !== undefined && proto !== "http") {
    return at(`was told X-Forwarded-Proto: ${proto} on a plain listener`);
  }
  const host = requestHost(now);
  const told = field(seen.headers, "x-forwarded-host");
  if (told !== undefined && host !== undefined && withoutPort(told) !== withoutPort(host)) {
    return at(`was told X-Forwarded-Host: ${told}; its answer went to a request for ${host}`);
  }
  // A 304 freshens a body built for an earlier request (RFC 9111 4.3.4): what the origin
  // saw of this one did not build it; the scheme and host it was told still must agree.
  if (seen.status === 304) return undefined;
  const seenCredential = credentialOf(seen.headers);
  if (seenCredential !== undefined && seenCredential !== credentialOf(now.headers)) {
    return at(`got credential ${seenCredential}; its answer went to ${credentialOf(now.headers)}`);
  }
  if (credentialOf(first.headers) !== credentialOf(now.headers) && first !== now) {
    return at(
      `was asked for credential ${credentialOf(first.headers)}; its answer went to ${credentialOf(now.headers)}`,
    );
  }
  for (const [name, value] of seen.headers) {
    const lower = name.toLowerCase();
    if (DECLARED.has(lower) || ECHO_VARY.includes(lower)) continue;
    // Only what came from the client: the first request sent this header with this value.
    const sent = first.headers.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v);
    if (!sent.includes(value)) continue;
    const nowSent = now.headers.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v);
    if (nowSent.join(", ") !== sent.join(", ")) {
      return at(
        `saw ${name}: ${value} (not keyed); its answer went to a request with ${JSON.stringify(nowSent)}`,
      );
    }
  }
  return undefined;
}

// --- the admin API and the data API ------------------------------------------------------

/**
 * Whether a 2xx reply's body is one of the admin API's answers (the dashboard's page holds
 * no data and is served to anyone: not one).
 */
export function isAdminAnswer(reply: ParsedReply): boolean {
  if (/text\/plain; version=0\.0\.4/.test(field(reply.headers, "content-type") ?? "")) return true;
  let json: unknown;
  try {
    json = JSON.parse(reply.body);
  } catch {
    return false;
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return false;
  const keys = Object.keys(json);
  const shapes = [
    ["hits"],
    ["keys", "truncated"],
    ["invalidated"],
    ["changes"],
    ["purged"],
    ["warmed"],
    ["rules"],
    ["rule"],
    ["forgotten"],
    ["key", "tiers"],
  ];
  return shapes.some((s) => s.every((k) => keys.includes(k)));
}

/**
 * Why a reply that is the admin API's should not have come, or undefined: the target's path
 * as sent is not `/_edgecache` or under it, or a token is set and the request did not carry
 * it (one Authorization field, `Bearer <token>`).
 */
export function adminReachProblem(
  r: SentRequest,
  reply: ParsedReply,
  token: string | undefined,
): string | undefined {
  if (reply.status < 200 || reply.status >= 300 || !isAdminAnswer(reply)) return undefined;
  const path = r.target.startsWith("/")
    ? r.target
    : r.target.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, "");
  const plain = path.split("?")[0]!;
  if (plain !== "/_edgecache" && !plain.startsWith("/_edgecache/")) {
    return `the admin API answered ${reply.status} to ${JSON.stringify(r.target)}`;
  }
  if (token !== undefined) {
    const auth = r.headers.filter(([n]) => n.toLowerCase() === "authorization");
    if (
      auth.length !== 1 ||
      !/^bearer$/i.test(auth[0]![1].split(" ")[0]!) ||
      auth[0]![1].split(" ")[1] !== token
    ) {
      return `the admin API answered ${reply.status} without its token (${JSON.stringify(auth)})`;
    }
  }
  return undefined;
}

/**
 * RFC 9112 3.2: a request without Host, or with several, is answered 400. Why the reply
 * breaks it, or undefined.
 */
export function hostCountProblem(r: SentRequest, reply: ParsedReply): string | undefined {
  if (r.hosts.length === 1 || reply.status >= 400) return undefined;
  return `${r.hosts.length} Host fields answered ${reply.status}, expected 400 (RFC 9112 3.2)`;
}

/**
 * DNS rebinding: a loopback listener's data answers go only to requests that name a
 * loopback host. Why the reply breaks it, or undefined.
 */
export function rebindingProblem(r: SentRequest, reply: ParsedReply): string | undefined {
  if (reply.status < 200 || reply.status >= 300) return undefined;
  // The dashboard's page is static and holds no data, and health is a load balancer's probe
  // answered by address (admin.ts): nothing a rebinding page could read.
  if (/^\/_edgecache\/?(?:\?|$)/.test(r.target)) return undefined; // the dashboard, HEAD too
  if (/^\/_edgecache\/health(?:\?|$)/.test(r.target)) return undefined;
  const host = requestHost(r);
  if (host === undefined || isLoopbackHost(host) || isIpLiteral(host)) return undefined;
  return `a request for host ${host} got ${reply.status} from a loopback listener (DNS rebinding)`;
}
