/**
 * A fuzzing harness for edgecache's HTTP front: fast-check generates raw HTTP/1.1 requests
 * (methods, targets, hosts, headers, bodies and their framing), sends several in one write
 * (pipelining) over a plain TCP socket, and checks the invariant after each sequence:
 *
 * - no reply is a 5xx, except those the mode states it may answer for its origin or
 *   database (`FuzzTarget.allowed`, each with why); a 500 is always a failure;
 * - the server still accepts a connection, and a well-formed request sent on a fresh one
 *   gets the right answer (`FuzzTarget.check`: a row as the database holds it now, a
 *   proxied page's body).
 *
 * The node runs in this process, so "the node never exits" is: no uncaught exception or
 * unhandled rejection (vitest fails the run on either; `bench/fuzz.ts` counts them).
 * Used by `test/fuzz/fuzz.test.ts` with a bounded count and by `npm run fuzz` for longer.
 * Only 127.0.0.1 is ever connected to.
 */
import { connect } from "node:net";
import fc from "fast-check";

/** A running server in one mode, and what its requests and answers look like. */
export interface FuzzTarget {
  name: string;
  port: number;
  /**
   * Why a 5xx reply (its status line, head and body) is one this mode may answer, or
   * undefined: any other 5xx fails the run, and a 500 always does.
   */
  allowed(reply: WireReply): string | undefined;
  /** Paths this mode serves, well-formed (the generator mixes them with junk). */
  paths: fc.Arbitrary<string>;
  /** Authorization values worth sending (valid tokens and keys among junk). */
  credentials: readonly string[];
  /** JSON bodies this mode reads (rows, admin requests). */
  bodies: fc.Arbitrary<unknown>;
  /** Throws unless a well-formed request on a fresh connection gets the right answer. */
  check(): Promise<void>;
  close(): Promise<void>;
}

/** One generated request, before it is written out. */
export interface FuzzRequest {
  method: string;
  target: string;
  version: string;
  /** undefined: no Host field; an array: that many Host fields. */
  host: string | string[] | undefined;
  headers: [string, string][];
  body: string;
  framing: Framing;
  /** Line ends: CRLF, or bare LF (RFC 9112 2.2 lets a server accept it). */
  eol: string;
}

type Framing =
  | "length"
  | "none"
  | "chunked"
  | "length+chunked"
  | "short-length"
  | "junk-length"
  | "double-length"
  | "te-junk"
  | "te-gzip-chunked"
  | "chunked-junk";

export interface FuzzStats {
  sequences: number;
  requests: number;
  /** Replies seen, by status. */
  statuses: Record<number, number>;
  /** Sequences whose connection neither closed nor finished within the idle time. */
  idle: number;
}

const METHODS = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", "TRACE"];
/** The methods of well-framed requests, weighted towards what the modes answer. */
const COMMON_METHODS = [...METHODS, "GET", "GET", "GET", "POST", "PATCH"];
const JUNK_METHODS = ["get", "CONNECT", "PROPFIND", "G ET", "", "GET\u0000", "M".repeat(300), "é"];
const TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}$/;
/**
 * How long a fuzzed connection may stay silent before the sequence is taken as answered (a
 * body the server still waits for). A check's well-formed request waits for its reply.
 */
const IDLE_MS = 250;
const CHECK_MS = 10_000;
/** Longest a sequence may take (a body the server still waits for, a 413's drain). */
const SEQUENCE_MS = 6000;

/** Query strings: mostly the data API's parameters and filters with sensible values, some junk. */
function queries(): fc.Arbitrary<string> {
  const name = fc.oneof(
    {
      weight: 8,
      arbitrary: fc.constantFrom(
        "id",
        "firstName",
        "lastName",
        "email",
        "createdAt",
        "total",
        "status",
        "userId",
        "name",
        "limit",
        "offset",
        "sort",
        "firstName[gt]",
        "total[gte]",
        "createdAt[lt]",
        "email[eq]",
        "format",
        "prefix",
        "tag",
      ),
    },
    {
      weight: 1,
      arbitrary: fc.oneof(
        fc.constantFrom("limit[gt]", "a[b]", "[", "", "__proto__", "constructor"),
        fc.stringMatching(/^[A-Za-z0-9_.~%-]{1,8}$/),
      ),
    },
  );
  const value = fc.oneof(
    {
      weight: 8,
      arbitrary: fc.constantFrom(
        "1",
        "5",
        "0",
        "1000",
        "Lane",
        "L*",
        "Mary",
        "paid",
        "firstName,-id",
        "-createdAt",
        "id",
        "2020-01-01",
        "2030-01-01T00:00:00Z",
        "100",
        "prometheus",
        "GET%20%2Fv1",
        "users",
        "%C3%A9",
      ),
    },
    {
      weight: 2,
      arbitrary: fc.oneof(
        fc.constantFrom(
          "",
          "-1",
          "1001",
          "abc",
          "*",
          "%00",
          "%ZZ",
          "%",
          "1e400",
          "NaN",
          "-",
          ",,",
          "a".repeat(600),
          "%ff%fe",
        ),
        fc.stringMatching(/^[A-Za-z0-9_.~%*,-]{0,12}$/),
      ),
    },
  );
  const pair = fc.oneof(
    { weight: 9, arbitrary: fc.tuple(name, value).map(([n, v]) => `${n}=${v}`) },
    { weight: 1, arbitrary: name },
  );
  return fc.oneof(
    { weight: 2, arbitrary: fc.constant("") },
    {
      weight: 5,
      arbitrary: fc.array(pair, { minLength: 1, maxLength: 3 }).map((p) => `?${p.join("&")}`),
    },
    { weight: 1, arbitrary: fc.constantFrom("?", "?&", "?&&limit=5", "?=", "?limit=5&limit=6") },
  );
}

function targets(paths: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const segment = fc.oneof(
    fc.constantFrom(
      "v1",
      "users",
      "orders",
      "items",
      "usersWithOrders",
      "..",
      ".",
      "%2e",
      "%2E%2e",
      ".%2e",
      "%2e.",
      "%2E.",
      "%252e%252e",
      "a.b",
      "...",
      "_edgecache",
      "%5fedgecache",
      "%5Fedgecache",
      "",
      "%00",
      "%ff",
      "%",
      "a%2fb",
      "\u00e9",
      "stats",
      "keys",
      "health",
    ),
    fc.stringMatching(/^[A-Za-z0-9._~-]{1,10}$/),
  );
  return fc.oneof(
    // An item takes no query parameters: mostly none.
    {
      weight: 18,
      arbitrary: fc
        .tuple(paths, queries())
        .map(([p, q]) => (/^\/v1\/[^/]+\/[^/?]+$/.test(p) && q.length % 4 !== 0 ? p : p + q)),
    },
    {
      weight: 4,
      arbitrary: fc
        .tuple(fc.array(segment, { maxLength: 6 }), queries())
        .map(([s, q]) => `/${s.join("/")}${q}`),
    },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        "*",
        "/",
        "//",
        "///v1//users",
        "/v1/users?",
        "/v1/users#x",
        "http://127.0.0.1/v1/users",
        "http://localhost/_edgecache/stats",
        "https://a.1/",
        "v1/users",
        "/v1/users/../../_edgecache/stats",
        "/%2F_edgecache/stats",
        "/_edgecache/../v1/users",
        "/_EDGECACHE/stats",
        "/_edgecache//stats",
        "/_edgecache/%2e%2e/v1/users",
        "/_edgecache/keys/%",
        "/_edgecache/keys/%E0%A4%A",
        "/v1/users/%2e%2e",
        "/v1/%2e%2e/_edgecache/keys",
        "/v1/.%2e/_edgecache/stats",
        "/%2e%2e/_edgecache/keys?prefix=/",
        "/v1/x/%2E%2E/users",
        "/v1/%252e%252e/_edgecache/keys",
        "/v1/users/%2F",
        "/v1/users\\..\\_edgecache",
      ),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(paths, fc.integer({ min: 1000, max: 20_000 }))
        .map(([p, n]) => `${p}?firstName=${"a".repeat(n)}`),
    },
  );
}

function hosts(port: number, junk: boolean): fc.Arbitrary<string | string[] | undefined> {
  const one = fc.constantFrom(
    `127.0.0.1:${port}`,
    `127.0.0.1:${port}`,
    `localhost:${port}`,
    "127.0.0.1",
    "localhost",
    "LOCALHOST",
    "a.1",
    "x127.0.0.1",
    `[::1]:${port}`,
    "[::1]",
    "[::1",
    "::1",
    "",
    "example.com",
    "red.example",
    "127.0.0.1:abc",
    "127.0.0.1:99999",
    "127.0.0.1.",
    "evil/x",
    "u@evil",
    "evil?x",
    "evil#x",
    "%",
    "127.1",
    "[::0001]",
    "host:",
    "[fe80::1%25eth0]",
    "ex ample",
    "h\u00e9llo",
    "a".repeat(300),
  );
  if (!junk) {
    return fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(`127.0.0.1:${port}`, `localhost:${port}`) },
      { weight: 1, arbitrary: one },
    );
  }
  return fc.oneof(
    { weight: 12, arbitrary: one },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.array(one, { minLength: 2, maxLength: 3 }) },
  );
}

function headers(
  port: number,
  credentials: readonly string[],
  junk: boolean,
): fc.Arbitrary<[string, string][]> {
  const field = (name: string, ...values: string[]) =>
    fc.constantFrom(...values).map((v): [string, string] => [name, v]);
  const dates = ["Thu, 01 Jan 1970 00:00:00 GMT", "Sun, 06 Nov 2994 08:49:37 GMT", "junk", "0"];
  const one = fc.oneof(
    field(
      "Cache-Control",
      "no-cache",
      "no-store",
      "max-age=0",
      "max-age=abc",
      "max-age=99999999999999999999",
      "only-if-cached",
      "max-stale",
      "max-stale=10",
      "min-fresh=5",
      "stale-if-error=5",
      "no-cache, no-store, max-age=0",
      '"',
    ),
    field(
      "Range",
      "bytes=0-10",
      "bytes=-5",
      "bytes=5-",
      "bytes=10-1",
      "bytes=0-0,2-3,5-",
      "bytes=99999999999999999999-",
      "items=0-1",
      "bytes=",
      "bytes=-0",
    ),
    fc
      .constantFrom(
        ...credentials,
        "Bearer",
        "Bearer ",
        "bearer x",
        "Basic YTpi",
        `Bearer ${"x".repeat(5000)}`,
        "Bearer \u00e9",
      )
      .map((v): [string, string] => ["Authorization", v]),
    fc
      .constantFrom(...credentials.map((c) => c.replace(/^Bearer /i, "")), "ek_junk", "")
      .map((v): [string, string] => ["X-Edgecache-Key", v]),
    field("If-None-Match", "*", '"x"', 'W/"x"', '"', "junk", '"a", "b"'),
    field("If-Match", "*", '"x"', "junk"),
    field("If-Modified-Since", ...dates),
    field("If-Unmodified-Since", ...dates),
    field("If-Range", '"x"', ...dates),
    field(
      "Content-Type",
      "application/json",
      "application/json; charset=utf-8",
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "APPLICATION/JSON",
      "",
      "application/jsonx",
    ),
    field("Origin", "null", "http://evil.example", `http://127.0.0.1:${port}`),
    field("X-Forwarded-For", "1.2.3.4", "127.0.0.1", "junk", "::1, 1.2.3.4", ""),
    field("Forwarded", "for=1.2.3.4", "for=127.0.0.1;proto=https", "junk"),
    field("X-Real-IP", "1.2.3.4", "127.0.0.1"),
    // What only a proxy in front may claim: never to reach an origin request (issue 46).
    field("X-Forwarded-Ssl", "on", "off"),
    field("X-Forwarded-Scheme", "http", "https", "junk"),
    field("X-Forwarded-Proto", "http", "https"),
    field("X-Forwarded-Host", "evil.example", ""),
    field("X-Forwarded-Path", "/admin", "/_edgecache/keys"),
    field("X-Original-Host", "evil.example"),
    field("X-Original-Method", "DELETE", "PURGE"),
    field("X-Original-URL", "/_edgecache/keys"),
    field("X-HTTP-Method-Override", "DELETE", "PURGE"),
    field("Front-End-Https", "on", "off"),
    field("True-Client-IP", "127.0.0.1", "1.2.3.4"),
    field("X-Client-IP", "127.0.0.1"),
    field("Accept-Encoding", "gzip", "br", "identity;q=0", "*", "gzip;q=abc"),
    field("Accept", "application/json", "text/html", "*/*", "text/event-stream"),
    field("Connection", "close", "keep-alive", "upgrade", "te, close", "Keep-Alive, Upgrade"),
    field("Upgrade", "websocket", "h2c", "HTTP/2.0"),
    field("Expect", "100-continue", "junk"),
    field("Cookie", "a=b", "session=x; y=z"),
    field("Pragma", "no-cache"),
    field("TE", "trailers", "gzip"),
    field("Vary", "*"),
    fc
      .tuple(fc.stringMatching(TOKEN), fc.stringMatching(/^[\x20-\x7e]{0,40}$/))
      .map(([n, v]): [string, string] => [n, v.trim()]),
  );
  const bad = fc.oneof(
    fc
      .tuple(fc.stringMatching(TOKEN), fc.string({ maxLength: 40 }))
      .map(([n, v]): [string, string] => [n, v.replace(/[\r\n]/g, " ")]),
    field("Bad Name", "x"),
    field("X-Nul", "a\u0000b", "a\u007fb", "line\r\n folded"),
    fc.integer({ min: 1000, max: 20_000 }).map((n): [string, string] => ["X-Big", "a".repeat(n)]),
  );
  return fc.array(junk ? fc.oneof({ weight: 4, arbitrary: one }, bad) : one, { maxLength: 6 });
}

/** Request bodies: the mode's JSON, any JSON, junk, and large ones now and then. */
function bodies(json: fc.Arbitrary<unknown>): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 6, arbitrary: json.map((v) => JSON.stringify(v) ?? "") },
    { weight: 2, arbitrary: fc.json({ maxDepth: 3 }) },
    { weight: 2, arbitrary: fc.string({ maxLength: 60 }) },
    { weight: 3, arbitrary: fc.constant("") },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 1000, max: 1_100_000 })
        .map((n) => JSON.stringify({ firstName: "x".repeat(n) })),
    },
  );
}

/** JSON rows for the data API: known columns with values of every type. */
export function rowBodies(columns: readonly string[]): fc.Arbitrary<unknown> {
  const value = fc.oneof(
    fc.string({ maxLength: 20 }),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.constantFrom(".", "..", "", "a@b.c", "paid"),
    fc.array(fc.integer(), { maxLength: 2 }),
  );
  return fc.dictionary(
    fc.oneof(fc.constantFrom(...columns), fc.stringMatching(/^[a-z]{1,6}$/)),
    value,
    {
      maxKeys: 5,
    },
  );
}

/** The fields the admin API's POST routes read. */
export const ADMIN_FIELDS = [
  "key",
  "keys",
  "tag",
  "tags",
  "table",
  "row",
  "prefix",
  "url",
  "urls",
  "write",
  "read",
  "state",
] as const;

/** JSON bodies of the admin API's POST routes. */
export function adminBodies(port: number): fc.Arbitrary<unknown> {
  const value = fc.oneof(
    fc.string({ maxLength: 20 }),
    fc.constantFrom("", "/", "/v1", "GET /v1/users", "users", "users#1", "pinned", "forget"),
    fc.integer(),
    fc.constant(null),
    fc.array(
      fc.constantFrom("/page/a", "/page/b", "", "users", `http://127.0.0.1:${port}/page/c`, "/"),
      { maxLength: 3 },
    ),
    fc.record({ table: fc.constantFrom("users", "x"), id: fc.oneof(fc.string(), fc.integer()) }),
  );
  return fc.dictionary(fc.constantFrom(...ADMIN_FIELDS), value, { maxKeys: 3 });
}

/**
 * Requests for `target`: three in four well-framed (a valid method, HTTP/1.1, Content-Length,
 * CRLF; junk only where the app reads it: targets, hosts, header values, bodies), so that
 * pipelined requests reach the app; the rest with junk in every part, which the parser
 * refuses and the connection ends on.
 */
export function requests(target: FuzzTarget): fc.Arbitrary<FuzzRequest> {
  const common = {
    target: targets(target.paths),
    body: bodies(target.bodies),
  };
  const framed = fc.record({
    ...common,
    method: fc.constantFrom(...COMMON_METHODS),
    version: fc.constant("HTTP/1.1"),
    host: hosts(target.port, false),
    headers: headers(target.port, target.credentials, false),
    framing: fc.constant<Framing>("length"),
    eol: fc.constant("\r\n"),
  });
  const junk = fc.record({
    ...common,
    method: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(...METHODS) },
      { weight: 1, arbitrary: fc.constantFrom(...JUNK_METHODS) },
      { weight: 1, arbitrary: fc.stringMatching(TOKEN) },
    ),
    version: fc.oneof(
      { weight: 6, arbitrary: fc.constant("HTTP/1.1") },
      { weight: 1, arbitrary: fc.constantFrom("HTTP/1.0", "HTTP/2.0", "HTTP/1.2", "http/1.1", "") },
    ),
    host: hosts(target.port, true),
    headers: headers(target.port, target.credentials, true),
    framing: fc.constantFrom<Framing>(
      "length",
      "none",
      "chunked",
      "length+chunked",
      "short-length",
      "junk-length",
      "double-length",
      "te-junk",
      "te-gzip-chunked",
      "chunked-junk",
    ),
    eol: fc.constantFrom("\r\n", "\n"),
  });
  // Most well-framed requests carry one of the mode's credentials, so keyed routes are reached.
  const keyed = fc
    .tuple(framed, fc.option(fc.constantFrom(...target.credentials), { freq: 2 }))
    .map(
      ([r, auth]): FuzzRequest =>
        auth === null ? r : { ...r, headers: [["Authorization", auth], ...r.headers] },
    );
  return fc.oneof(
    { weight: 3, arbitrary: keyed.map(bodilessMostly) },
    { weight: 1, arbitrary: junk },
  );
}

/** Methods without a body's meaning get one now and then only (it ends the connection). */
function bodilessMostly(r: FuzzRequest): FuzzRequest {
  const keep = ["POST", "PUT", "PATCH"].includes(r.method) || r.body.length % 5 === 0;
  return keep ? r : { ...r, body: "" };
}

/** A sequence: 1 to 4 requests written at once. */
export function sequences(target: FuzzTarget): fc.Arbitrary<FuzzRequest[]> {
  return fc.array(requests(target), { minLength: 1, maxLength: 4 });
}

/** The request's bytes as they go on the wire. */
export function render(r: FuzzRequest): Buffer {
  const { eol } = r;
  const lines = [r.version ? `${r.method} ${r.target} ${r.version}` : `${r.method} ${r.target}`];
  for (const h of r.host === undefined ? [] : Array.isArray(r.host) ? r.host : [r.host]) {
    lines.push(`Host: ${h}`);
  }
  for (const [n, v] of r.headers) lines.push(`${n}: ${v}`);
  let body = Buffer.from(r.body);
  const chunked = () => {
    const parts = body.length === 0 ? [] : [`${body.length.toString(16)}\r\n`, body, "\r\n"];
    return Buffer.concat(
      [...parts, "0\r\n\r\n"].map((p) => (typeof p === "string" ? Buffer.from(p) : p)),
    );
  };
  switch (r.framing) {
    case "length":
      if (body.length > 0 || r.method === "POST" || r.method === "PUT")
        lines.push(`Content-Length: ${body.length}`);
      break;
    case "none":
      break;
    case "chunked":
      lines.push("Transfer-Encoding: chunked");
      body = chunked();
      break;
    case "length+chunked":
      lines.push(`Content-Length: ${body.length}`, "Transfer-Encoding: chunked");
      break;
    case "short-length":
      lines.push(`Content-Length: ${Math.floor(body.length / 2)}`);
      break;
    case "junk-length":
      lines.push(
        `Content-Length: ${["abc", "-1", "1.5", " 5", "0x10", "+5", ""][body.length % 7]}`,
      );
      break;
    case "double-length":
      lines.push(`Content-Length: ${body.length}`, `Content-Length: ${body.length + 1}`);
      break;
    case "te-junk":
      lines.push("Transfer-Encoding: junk");
      break;
    case "te-gzip-chunked":
      lines.push("Transfer-Encoding: gzip, chunked");
      body = chunked();
      break;
    case "chunked-junk":
      lines.push("Transfer-Encoding: chunked");
      body = Buffer.from(`zz\r\n${r.body}\r\n`);
      break;
  }
  return Buffer.concat([Buffer.from(`${lines.join(eol)}${eol}${eol}`, "latin1"), body]);
}

/** One reply as it came off the wire: its status, and its text up to the next reply. */
export interface WireReply {
  status: number;
  text: string;
}

/** What came back on one connection. */
export interface RawExchange {
  /** Status codes of the replies, in order. */
  statuses: number[];
  replies: WireReply[];
  /** Everything read, as latin1. */
  text: string;
  /** Whether the exchange ended on silence rather than a close or a closing reply. */
  idle: boolean;
}

/**
 * Sends `bytes` in one write to 127.0.0.1:`port` and reads until the server closes, sends
 * a complete reply saying `Connection: close`, or stays silent for `idleMs`.
 */
export function sendRaw(port: number, bytes: Buffer, idleMs = IDLE_MS): Promise<RawExchange> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let idleTimer: NodeJS.Timeout | undefined;
    const finish = (idle: boolean) => {
      clearTimeout(idleTimer);
      clearTimeout(cap);
      socket.destroy();
      const text = Buffer.concat(chunks).toString("latin1");
      const replies = repliesOf(text);
      resolve({ statuses: replies.map((r) => r.status), replies, text, idle });
    };
    const cap = setTimeout(() => finish(true), Math.max(SEQUENCE_MS, idleMs));
    const rearm = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => finish(true), idleMs);
    };
    socket.on("data", (chunk) => {
      chunks.push(chunk);
      if (endsClosing(Buffer.concat(chunks).toString("latin1"))) finish(false);
      else rearm();
    });
    socket.once("close", () => finish(false));
    socket.on("error", () => finish(false));
    socket.write(bytes, () => rearm());
  });
}

const STATUS_LINE = /(?:^|\r\n)HTTP\/\d\.\d (\d{3})[^\r\n]*\r\n/g;

function repliesOf(text: string): WireReply[] {
  const starts = [...text.matchAll(STATUS_LINE)];
  return starts.map((m, i) => ({
    status: Number(m[1]),
    text: text.slice(m.index, starts[i + 1]?.index ?? text.length).replace(/^\r\n/, ""),
  }));
}

/** Whether the last reply in `text` is complete and says Connection: close. */
function endsClosing(text: string): boolean {
  const starts = [...text.matchAll(STATUS_LINE)];
  const last = starts.at(-1);
  if (!last) return false;
  const from = last.index + (last[0].startsWith("\r\n") ? 2 : 0);
  const headEnd = text.indexOf("\r\n\r\n", from);
  if (headEnd < 0) return false;
  const head = text.slice(from, headEnd).toLowerCase();
  if (!/\r\nconnection: *close/.test(head)) return false;
  const length = /\r\ncontent-length: *(\d+)/.exec(head);
  if (length) return text.length - headEnd - 4 >= Number(length[1]);
  if (/\r\ntransfer-encoding: *chunked/.test(head)) return text.endsWith("\r\n0\r\n\r\n");
  return true;
}

/** A well-formed request, for checks: `GET path` on a fresh connection. */
export async function wellFormed(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: string; body: string }> {
  const head = [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    "Connection: close",
    ...Object.entries(headers).map(([n, v]) => `${n}: ${v}`),
  ];
  const { text, statuses } = await sendRaw(
    port,
    Buffer.from(`${head.join("\r\n")}\r\n\r\n`),
    CHECK_MS,
  );
  const end = text.indexOf("\r\n\r\n");
  if (statuses.length !== 1 || end < 0) {
    throw new Error(`GET ${path}: expected one reply, got ${JSON.stringify(text.slice(0, 300))}`);
  }
  let body = text.slice(end + 4);
  if (/\r\ntransfer-encoding: *chunked/i.test(text.slice(0, end))) body = dechunk(body);
  return {
    status: statuses[0]!,
    headers: text.slice(0, end),
    body: Buffer.from(body, "latin1").toString("utf8"),
  };
}

export function dechunk(text: string): string {
  let out = "";
  for (let pos = 0; ; ) {
    const eol = text.indexOf("\r\n", pos);
    const size = Number.parseInt(text.slice(pos, eol), 16);
    if (eol < 0 || !(size > 0)) return out;
    out += text.slice(eol + 2, eol + 2 + size);
    pos = eol + 2 + size + 2;
  }
}

/** Describes a sequence for a failure message: each request's head, its body's size. */
export function describe(seq: readonly FuzzRequest[]): string {
  return seq
    .map((r) => {
      const head = render({ ...r, body: "" }).toString("latin1");
      const short = head.length > 400 ? `${head.slice(0, 400)}...` : head;
      return `${JSON.stringify(short)} + body ${Buffer.byteLength(r.body)} bytes (${r.framing})`;
    })
    .join("\n");
}

/** Sends one sequence and checks the invariant; throws on a violation. */
export async function runSequence(
  target: FuzzTarget,
  seq: readonly FuzzRequest[],
  stats: FuzzStats,
): Promise<void> {
  // A well-formed request closes the write: a server that parsed the rest answers it and
  // closes, so the exchange ends without waiting for silence.
  const closing = Buffer.from(
    `GET / HTTP/1.1\r\nHost: 127.0.0.1:${target.port}\r\nConnection: close\r\n\r\n`,
  );
  const { replies, idle } = await sendRaw(
    target.port,
    Buffer.concat([...seq.map(render), closing]),
  );
  stats.sequences++;
  stats.requests += seq.length;
  if (idle) stats.idle++;
  for (const { status } of replies) stats.statuses[status] = (stats.statuses[status] ?? 0) + 1;
  const bad = replies.find(
    (r) => r.status >= 500 && (r.status === 500 || target.allowed(r) === undefined),
  );
  if (bad) {
    throw new Error(
      `[${target.name}] answered ${bad.status} to:\n${describe(seq)}\nthe reply:\n${bad.text.slice(0, 1500)}`,
    );
  }
  try {
    await target.check();
  } catch (err) {
    throw new Error(
      `[${target.name}] after:\n${describe(seq)}\nthe check failed: ${(err as Error).message}`,
    );
  }
}

export interface FuzzOptions {
  runs?: number;
  seed?: number;
  /** Replays a failure: the path fast-check printed with its seed. */
  path?: string;
  /** Stops after this long, whatever `runs` says. */
  timeLimitMs?: number;
}

/** Runs sequences against `target` until `runs` passed or one fails (fast-check then shrinks it). */
export async function fuzz(target: FuzzTarget, options: FuzzOptions = {}): Promise<FuzzStats> {
  const stats: FuzzStats = { sequences: 0, requests: 0, statuses: {}, idle: 0 };
  await fc.assert(
    fc.asyncProperty(sequences(target), (seq) => runSequence(target, seq, stats)),
    {
      numRuns: options.runs ?? 100,
      ...(options.seed !== undefined && { seed: options.seed }),
      ...(options.path !== undefined && { path: options.path }),
      ...(options.timeLimitMs !== undefined && { interruptAfterTimeLimit: options.timeLimitMs }),
      // Shrinking re-runs sequences against a server whose state they changed; a short
      // counterexample is still worth it, within bounds.
      endOnFailure: false,
    },
  );
  return stats;
}
