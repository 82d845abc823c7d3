/**
 * The grammar of encodings the variant generator draws from: every spelling a common
 * server (Tomcat, IIS, nginx, Rack, Django...) reads as something else than the bytes say.
 * A defect closed for one spelling comes back in the next (issue 70): `..;` for Tomcat,
 * `\` and `%u002e` for IIS, overlong UTF-8 for decoders that accept it, `_` for a header
 * name that CGI-style servers turn into `-`. Each arbitrary here yields text to put in a
 * request line or a header; `variants.ts` builds requests from them.
 */
import fc from "fast-check";

/** Spellings of `.` (one dot), from plain to what only a lenient decoder reads as a dot. */
export const DOT_SPELLINGS = [
  ".",
  "%2e",
  "%2E",
  "%252e", // double percent: a server that decodes twice
  "%c0%ae", // 2-byte overlong UTF-8
  "%e0%80%ae", // 3-byte overlong UTF-8
  "%u002e", // IIS %u escapes
] as const;

/** Spellings of a path separator other than `/` itself. */
export const SLASH_SPELLINGS = [
  "\\",
  "%5c",
  "%5C",
  "%255c",
  "%2f",
  "%252f",
  "%c0%af", // overlong `/`
  "%e0%80%af",
  "%c1%9c", // overlong `\`
  "%u005c",
  "%u2215", // division slash, which some normalizers fold to `/`
] as const;

/** `;params` a segment may carry: Tomcat and Jetty strip them before resolving. */
const PARAMS = [";", ";x=1", ";jsessionid=a", ";/"];

/** A dot segment (`..` or `.`) in one spelling, maybe with params or a trailing separator. */
export function dotSegments(): fc.Arbitrary<string> {
  const dot = fc.constantFrom(...DOT_SPELLINGS);
  const dots = fc.oneof(
    fc.tuple(dot, dot).map(([a, b]) => a + b),
    { weight: 1, arbitrary: dot },
    fc.constantFrom("%2e%2e", "..", "%%32%65%%32%65", "..%00", ".%2e"),
  );
  return fc
    .tuple(
      dots,
      fc.option(fc.constantFrom(...PARAMS), { freq: 3 }),
      fc.option(fc.constantFrom(...SLASH_SPELLINGS), { freq: 3 }),
    )
    .map(([d, p, s]) => d + (p ?? "") + (s ?? ""));
}

/** A path segment: an ordinary name, or one in an encoding a server may resolve. */
export function segments(): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom("v1", "page", "a", "users", "admin", "x") },
    { weight: 3, arbitrary: dotSegments() },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        "_edgecache",
        "%5fedgecache",
        "_EDGECACHE",
        "%5F%65dgecache",
        "a;b=1",
        "A",
        "%41",
        "%61",
        "é",
        "%c3%a9",
      ),
    },
  );
}

/** A path built from segments: the mode's paths with encoded segments spliced in. */
export function variantPaths(paths: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 2, arbitrary: paths },
    {
      weight: 3,
      arbitrary: fc
        .tuple(paths, fc.array(segments(), { minLength: 1, maxLength: 3 }), fc.nat())
        .map(([p, extra, at]) => {
          const [path, query] = splitQuery(p);
          const parts = path.split("/");
          const i = 1 + (at % Math.max(1, parts.length - 1));
          parts.splice(i, 0, ...extra);
          return parts.join("/") + query;
        }),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(paths, fc.constantFrom(...SLASH_SPELLINGS), fc.boolean())
        .map(([p, s, upper]) => {
          const [path, query] = splitQuery(p);
          const spelled = path.replace(/\/(?=[^/]*$)/, s);
          return (upper ? spelled.toUpperCase() : spelled) + query;
        }),
    },
  );
}

function splitQuery(p: string): [string, string] {
  const q = p.indexOf("?");
  return q < 0 ? [p, ""] : [p.slice(0, q), p.slice(q)];
}

/**
 * A request target for `path`: origin-form, or absolute-form (RFC 9112 3.2.2) with http or
 * https, this host or another, another port, userinfo.
 */
export function targetForms(path: string, port: number): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 5, arbitrary: fc.constant(path) },
    {
      weight: 3,
      arbitrary: fc
        .constantFrom(
          `http://127.0.0.1:${port}`,
          `https://127.0.0.1:${port}`,
          "https://127.0.0.1",
          "http://127.0.0.1",
          `HTTPS://127.0.0.1:${port}`,
          `http://localhost:${port}`,
          "http://evil.example",
          "https://evil.example:8443",
          `http://user:pw@127.0.0.1:${port}`,
          "http://evil.example@127.0.0.1",
          `http://127.0.0.1:${port + 1}`,
        )
        .map((origin) => origin + path),
    },
  );
}

/** Headers with which a client claims what only a proxy in front may say. */
export const CLAIM_NAMES = [
  "X-Forwarded-Host",
  "X-Forwarded-Proto",
  "X-Forwarded-For",
  "X-Forwarded-Ssl",
  "X-Forwarded-Scheme",
  "X-Forwarded-Prefix",
  "X-Forwarded-Port",
  "X-Forwarded-Server",
  "Forwarded",
  "X-Original-URL",
  "X-Original-Host",
  "X-Original-Method",
  "X-Real-IP",
  "True-Client-IP",
  "X-Client-IP",
  "CF-Connecting-IP",
  "Fastly-Client-IP",
  "X-Cluster-Client-IP",
  "X-Host",
  "X-Rewrite-URL",
  "X-HTTP-Method-Override",
  "Front-End-Https",
  // httpoxy (CVE-2016-5385): HTTP_PROXY to a CGI stack.
  "Proxy",
  "Client-IP",
  "X-Scheme",
  "X-Url-Scheme",
  "X-ARR-SSL",
  "X-ARR-ClientCert",
  "X-Originating-IP",
  "X-Remote-IP",
  "X-Remote-Addr",
  "X-Forwarded",
  "Forwarded-For",
  "X-Envoy-External-Address",
  "X-Envoy-Original-Path",
  "X-HTTP-Host-Override",
  "Remote-User",
  "X-Remote-User",
  "X-Forwarded-User",
  "X-Auth-Request-User",
  "X-Auth-Request-Email",
  "X-Original-URI",
  "X-ProxyUser-Ip",
  "CF-Visitor",
  "X-Forwarded-Uri",
] as const;

/** A header name in another spelling: case, `_` for `-`, both. */
export function nameSpellings(name: string): fc.Arbitrary<string> {
  const alternating = [...name]
    .map((c, i) => (i % 2 === 0 ? c.toUpperCase() : c.toLowerCase()))
    .join("");
  return fc.constantFrom(
    name,
    name.toLowerCase(),
    name.toUpperCase(),
    alternating,
    name.replace(/-/g, "_"),
    name.toLowerCase().replace(/-/g, "_"),
    name.replace(/-(?=[^-]*$)/, "_"),
  );
}

/** Values a claim header carries: another host, scheme, address, path or method. */
const CLAIM_VALUES = [
  "evil.example",
  "https",
  "on",
  "1.2.3.4",
  "for=1.2.3.4;proto=https;host=evil.example",
  "/_edgecache/keys",
  "DELETE",
  "443",
];

/** A claim header in any spelling, with a value a client has no business claiming. */
export function claimHeaders(): fc.Arbitrary<[string, string]> {
  return fc
    .tuple(fc.constantFrom(...CLAIM_NAMES).chain(nameSpellings), fc.constantFrom(...CLAIM_VALUES))
    .map(([n, v]): [string, string] => [n, v]);
}

/**
 * Other headers: ordinary ones in odd spellings, duplicated framing and forwarding headers,
 * and obs-fold (a value continued on the next line after a space, RFC 9112 5.2: a server
 * must refuse it or replace the fold with spaces).
 */
export function otherHeaders(credentials: readonly string[]): fc.Arbitrary<[string, string][]> {
  const one: fc.Arbitrary<[string, string][]> = fc.oneof(
    claimHeaders().map((h) => [h]),
    fc
      .tuple(fc.constantFrom("Accept", "Accept-Language", "User-Agent", "X-Custom"), fc.nat(3))
      .chain(([n, i]) =>
        nameSpellings(n).map((name): [string, string][] => [
          [name, ["text/html", "fr", "curl/8", "1"][i] ?? "1"],
        ]),
      ),
    fc
      .constantFrom(...credentials, "Bearer other")
      .chain((c) => nameSpellings("Authorization").map((name): [string, string][] => [[name, c]])),
    fc
      .constantFrom("X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Forwarded-For")
      .map((n): [string, string][] => [
        [n, "127.0.0.1"],
        [n, "evil.example"],
      ]),
    // An interim 100 is sent once at most (RFC 9110 15.2.1), an origin's not relayed twice.
    fc.constant<[string, string][]>([["Expect", "100-continue"]]),
    // obs-fold: the continuation is written as part of the value, after the line end.
    fc
      .constantFrom("X-Forwarded-Host", "Accept", "X-Custom", "Authorization")
      .map((n): [string, string][] => [[n, "a\r\n evil.example"]]),
  );
  return fc.array(one, { maxLength: 3 }).map((groups) => groups.flat());
}

/** Host fields: none, one (loopback, another name, junk), or several (RFC 9112 3.2: 400). */
export function hostFields(port: number): fc.Arbitrary<string[]> {
  const one = fc.constantFrom(
    `127.0.0.1:${port}`,
    `localhost:${port}`,
    "127.0.0.1",
    `[::1]:${port}`,
    "evil.example",
    `evil.example:${port}`,
    "EVIL.example",
    "127.0.0.1.evil.example",
    "localhost.evil.example",
    "127.0.0.2",
    "2130706433",
    "0x7f000001",
    "0",
  );
  return fc.oneof(
    { weight: 8, arbitrary: one.map((h) => [h]) },
    { weight: 1, arbitrary: fc.constant<string[]>([]) },
    { weight: 2, arbitrary: fc.array(one, { minLength: 2, maxLength: 3 }) },
  );
}
