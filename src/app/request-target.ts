import type { MiddlewareHandler } from "hono";
import { EdgecacheError } from "../core/errors.ts";
import { memoize } from "../core/memo.ts";

/**
 * Which requests are refused for what they name, before any app or cache lookup sees them:
 * the one decision for every way a request comes in (Node's raw hit path, its request
 * listener, the apps on Node and on Workers, the tenants dispatchers). A front proxy that
 * allows or blocks by path prefix, and the cache's keys, see the request as sent; what
 * the runtime's URL parser would make of it must not differ from that.
 */

/** Where the admin API and the dashboard are; nothing under it is forwarded to an origin. */
export const ADMIN_PREFIX = "/_edgecache";

/** Whether a path as sent (percent-encoded) is ADMIN_PREFIX or under it, once decoded. */
export function isAdminPath(pathname: string): boolean {
  const first = pathname.split("/", 2)[1] ?? "";
  let decoded = first;
  try {
    decoded = decodeURIComponent(first);
  } catch {
    // a malformed escape: routing takes the segment as it is
  }
  return decoded.split("/", 1)[0] === ADMIN_PREFIX.slice(1);
}

/**
 * A dot segment as the WHATWG URL parser takes one (every runtime's: Node's, workerd's):
 * `.` or `..`, each dot maybe `%2e` in either case. Tabs and newlines it drops first.
 */
const DOT_SEGMENT = /(?:^|\/)(?:\.|%2e){1,2}(?:\/|$)/i;
const URL_IGNORED = /[\t\n\r]/g;
/** How many times a path is percent-decoded looking for a dot segment (`%25252e` is three). */
const DECODE_ROUNDS = 3;

/**
 * Why a request target's path is refused, or undefined. `target` is the request line's
 * (origin-form, or absolute-form), or a URL as a runtime hands it on.
 * - A dot segment in any spelling (`/v1/%2e%2e/_edgecache/keys`): the URL parser removes it
 *   with the segment before (RFC 3986 5.2.4), so the path a front proxy allowed (`/v1/`)
 *   would reach another app (the admin API) or another origin path. Clients resolve dot
 *   segments before they send (RFC 3986 5.2); only a crafted request carries one. So is one
 *   that some common server behind the proxy resolves, though the URL parser does not (see
 *   serverDotSegment).
 * - A backslash in the path, which the parser reads as `/`.
 * - The admin prefix percent-encoded (`/%5fedgecache/stats`): routing decodes it, so it
 *   would reach the admin API past a front proxy that blocks `/_edgecache` by prefix; and
 *   under it, an unreserved character percent-encoded (ENCODED_UNRESERVED), which would pass
 *   one that blocks an admin path exactly. Either is a 404, as for a path that is no route.
 */
export function pathRefusal(target: string): EdgecacheError | undefined {
  const path = pathOf(target);
  if (path.includes("\\")) return badPath(path, "has a backslash");
  const mayHaveDot = path.includes(".") || path.includes("%");
  if (mayHaveDot && DOT_SEGMENT.test(path.replace(URL_IGNORED, ""))) {
    return badPath(path, "has a dot segment (. or .., maybe percent-encoded)");
  }
  if (mayHaveDot && serverDotSegment(path)) {
    return badPath(
      path,
      "has a segment a server resolves as . or .. (;params, %5c, %u, overlong UTF-8, double encoding)",
    );
  }
  if (path.includes("%") && isAdminPath(path)) {
    if (!isPlainAdmin(path)) {
      return new EdgecacheError(
        "E_NOT_FOUND",
        "http",
        `path: ${JSON.stringify(path)} spells ${ADMIN_PREFIX} percent-encoded; no such route`,
      );
    }
    if (ENCODED_UNRESERVED.test(path)) {
      return new EdgecacheError(
        "E_NOT_FOUND",
        "http",
        `path: ${JSON.stringify(path)} percent-encodes a letter, digit or -._~ under ${ADMIN_PREFIX}; no such route`,
      );
    }
  }
  return undefined;
}

/**
 * A percent-encoded unreserved character (ALPHA, DIGIT, `-._~`): RFC 3986 2.3 says to decode
 * these (6.2.2.2), so no client's encoder makes one and a URL with one is crafted. Routing
 * decodes it: under ADMIN_PREFIX, `/_edgecache/%69nvalidate` would pass a front proxy that
 * blocks `/_edgecache/invalidate` exactly.
 */
const ENCODED_UNRESERVED = /%(?:3[0-9]|[46][1-9a-f]|[57][0-9a]|2[de]|5f|7e)/i;

/**
 * Whether some common server resolves a segment of `path` as `.` or `..` where the URL
 * parser sees a name; one that allows only `/v1/` in front would be passed. Each decoding
 * round (up to DECODE_ROUNDS: an origin or framework that decodes again resolves
 * `%252e%252e`) splits the path at `/`, `\` and their encodings, and tests each segment:
 * - cut at `;` (Tomcat, Jetty, Spring drop path parameters: `..;x=1`), at NUL (C stacks),
 *   and at `?` and `#` (a server that decodes `..%3f` once and then splits off the query or
 *   fragment sees `..`);
 * - trailing spaces dropped (IIS, Windows: `..%20`);
 * - Unicode compatibility forms folded (NFKC: `%ef%bc%8e`, fullwidth `.`; `‥`, two dots).
 * Decoding is IIS's: `%uXXXX`, and overlong UTF-8 (`%c0%ae`, `%e0%80%ae`) as the ASCII it
 * spells. A dot inside a name (`a.b`, `..x`, `...`) passes.
 */
function serverDotSegment(path: string): boolean {
  // Without either, the URL parser's own dot segments (DOT_SEGMENT) are all there are.
  if (!path.includes("%") && !path.includes(";")) return false;
  let text = path;
  for (let round = 0; round <= DECODE_ROUNDS; round++) {
    for (const segment of text.split(SEPARATORS)) {
      if (isServerDots(segment)) return true;
    }
    if (!text.includes("%")) return false;
    const decoded = looseDecode(text);
    if (decoded === text) return false;
    text = decoded;
  }
  return false;
}

/**
 * What servers split a path at: `/`, `\`, and the look-alikes Windows' best-fit mapping
 * turns into one of them when IIS reads a path in the system's code page (`%u2215`, the
 * division slash, is `/` there), fullwidth forms included.
 */
const SEPARATORS = /[/\\\u2044\u2215\u2216\u29f5\ufe68\uff0f\uff3c]/;

function isServerDots(segment: string): boolean {
  let s = segment;
  const cut = s.search(/[;\0?#]/);
  if (cut >= 0) s = s.slice(0, cut);
  if (!/^[\x20-\x7e]*$/.test(s)) s = s.normalize("NFKC");
  s = s.replace(/ +$/, "");
  return s === "." || s === "..";
}

const UTF8_LEAD = [
  [0xc0, 0xe0, 1, 0x1f],
  [0xe0, 0xf0, 2, 0x0f],
  [0xf0, 0xf8, 3, 0x07],
] as const;

/**
 * One round of percent-decoding as lenient servers do it: `%XX` bytes read as UTF-8 where an
 * overlong sequence is the character it spells (IIS), `%uXXXX` as that code unit, and what
 * decodes to nothing valid as U+FFFD. Never throws.
 */
function looseDecode(text: string): string {
  const bytes: number[] = [];
  let out = "";
  const flush = () => {
    for (let i = 0; i < bytes.length; ) {
      const b = bytes[i]!;
      const lead = UTF8_LEAD.find(([lo, hi]) => b >= lo && b < hi);
      if (b < 0x80 || !lead || i + lead[2] >= bytes.length) {
        out += b < 0x80 ? String.fromCharCode(b) : "\ufffd";
        i++;
        continue;
      }
      // Continuation bytes lend their low six bits, valid or not, as IIS took them.
      let cp = b & lead[3];
      for (let k = 1; k <= lead[2]; k++) cp = (cp << 6) | (bytes[i + k]! & 0x3f);
      const valid = cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff);
      out += valid ? String.fromCodePoint(cp) : "\ufffd";
      i += lead[2] + 1;
    }
    bytes.length = 0;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "%") {
      const u = /^[uU]([0-9a-fA-F]{4})/.exec(text.slice(i + 1, i + 6));
      if (u) {
        flush();
        out += String.fromCharCode(Number.parseInt(u[1]!, 16));
        i += 5;
        continue;
      }
      const hex = text.slice(i + 1, i + 3);
      if (/^[0-9a-fA-F]{2}$/.test(hex)) {
        bytes.push(Number.parseInt(hex, 16));
        i += 2;
        continue;
      }
    }
    flush();
    out += c;
  }
  flush();
  return out;
}

function isPlainAdmin(path: string): boolean {
  return path === ADMIN_PREFIX || path.startsWith(`${ADMIN_PREFIX}/`);
}

function badPath(path: string, why: string): EdgecacheError {
  return new EdgecacheError("E_BAD_QUERY", "http", `path: ${JSON.stringify(path)} ${why}`);
}

/** The path of an origin-form target or of an absolute URL, as sent (not decoded). */
function pathOf(target: string): string {
  let start = 0;
  if (!target.startsWith("/")) {
    const scheme = target.indexOf("://");
    if (scheme < 0) return target;
    start = target.indexOf("/", scheme + 3);
    if (start < 0) return "/";
  }
  let end = target.length;
  for (const mark of ["?", "#"]) {
    const at = target.indexOf(mark, start);
    if (at >= 0 && at < end) end = at;
  }
  return start === 0 && end === target.length ? target : target.slice(start, end);
}

/**
 * RFC 9110 7.2 Host: uri-host [":" port], in RFC 3986's ASCII: a reg-name (no
 * percent-encoding) or an IP literal in brackets, and a port of digits.
 */
const HOST_SYNTAX = /^(?:[a-z0-9\-._~!$&'()*+,;=]+|\[[0-9a-f:.]+\])(?::(\d{1,5}))?$/i;

/**
 * Whether a Host header names a host the URL parser keeps as sent (lower-cased): no path,
 * query, userinfo or other delimiter in it, a port up to 65535, and no name it would
 * rewrite (`127.1`, `[::0001]`). What @hono/node-server's Request refuses with an empty
 * 400 is refused here too, with the JSON one.
 */
export const validHost = memoize(
  (host: string) => {
    const m = HOST_SYNTAX.exec(host);
    if (!m || (m[1] !== undefined && Number(m[1]) > 65535)) return false;
    const name = m[1] === undefined ? host : host.slice(0, -m[1].length - 1);
    try {
      return new URL(`http://${host}/`).hostname === name.toLowerCase();
    } catch {
      return false;
    }
  },
  { size: 1000 },
);

/** Why a Host header is refused, or undefined. */
export function hostRefusal(host: string | undefined): EdgecacheError | undefined {
  if (host === undefined) {
    return new EdgecacheError("E_BAD_HEADER", "http", "host: the request has no Host header");
  }
  if (!validHost(host)) {
    return new EdgecacheError("E_BAD_HEADER", "http", "host: the Host header is not a valid host");
  }
  return undefined;
}

/**
 * Why a request is refused for its target or Host, or undefined. An absolute-form target
 * names its own host; the Host header is then not read (RFC 9112 3.2.2).
 */
export function requestRefusal(
  target: string,
  host: string | undefined,
): EdgecacheError | undefined {
  return pathRefusal(target) ?? (target.startsWith("/") ? hostRefusal(host) : undefined);
}

const ABSOLUTE_FORM = /^https?:\/\//i;

/**
 * What a Node listener makes of a request head before anything else reads it: the
 * origin-form target it is answered as, or why it is refused (a 400).
 * - More than one Host field (RFC 9112 3.2: a server MUST answer 400).
 * - An absolute-form target (RFC 9112 3.2.2) whose authority is not the one Host names, or
 *   that carries userinfo (RFC 9110 4.2.4). Otherwise it is answered as its origin-form, so
 *   the scheme and host the app sees, keys by and tells an origin (X-Forwarded-Proto) are
 *   the listener's and Host's, as for every other request, never the client's `https://`.
 */
export function requestHead(
  target: string,
  hosts: readonly string[] | undefined,
): string | EdgecacheError {
  if (hosts && hosts.length > 1) {
    return new EdgecacheError("E_BAD_HEADER", "http", "host: the request has more than one Host");
  }
  const scheme = ABSOLUTE_FORM.exec(target);
  if (!scheme) return target;
  const start = scheme[0].length;
  let end = target.slice(start).search(/[/?#]/);
  end = end < 0 ? target.length : start + end;
  const authority = target.slice(start, end);
  if (authority.includes("@")) {
    return new EdgecacheError("E_BAD_HEADER", "http", "host: the target carries userinfo");
  }
  if (authority.toLowerCase() !== hosts?.[0]?.toLowerCase()) {
    return new EdgecacheError(
      "E_BAD_HEADER",
      "http",
      "host: the target's authority is not the one the Host header names",
    );
  }
  const rest = target.slice(end);
  return rest.startsWith("/") ? rest : `/${rest}`;
}

/**
 * The apps' first middleware: requestRefusal on the request as the runtime hands it on
 * (on Node the server has decided on the request line already, before the runtime's URL
 * parsing), and a URL that does not parse. On Node the runtime joins Host and the target
 * without checking a Host of plain letters (`a.1`, `x127.0.0.1`), so every later
 * `new URL(c.req.url)` would throw: a 500 at best.
 */
export const validUrl: MiddlewareHandler = async (c, next) => {
  const url = c.req.url;
  if (!URL.canParse(url)) {
    throw new EdgecacheError("E_BAD_HEADER", "http", "host: the Host header is not a valid host");
  }
  const refused = pathRefusal(url);
  if (refused) throw refused;
  await next();
};
