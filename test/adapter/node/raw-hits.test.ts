import { createServer } from "node:http";
import { type AddressInfo, connect } from "node:net";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import {
  createNodeProxy,
  hitFinder,
  type NodeProxy,
} from "../../../src/adapter/node/modes/proxy.ts";
import { MAX_RAW_HEAD, parseHead } from "../../../src/adapter/node/server/raw-hits.ts";
import { type RunningServer, startServer } from "../../../src/adapter/node/server/server.ts";
import { startEdgecache } from "../../app/harness.ts";
import { counting, type Origin, startOrigin } from "../../app/proxy/harness.ts";
import { fakeClock } from "../../helpers/chaos-store.ts";
import { closedWithin, type Exchange, exchange } from "./raw-client.ts";

// The raw path over real sockets: hits answered before node:http parses anything must be
// the bytes node:http would send, and every other request must get node:http's own answer.

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** How many requests reached node:http's request listener (the raw path bypasses it). */
function counted(running: RunningServer): () => number {
  let n = 0;
  running.server.prependListener("request", () => n++);
  return () => n;
}

const portOf = (running: RunningServer) => Number(new URL(running.url).port);

interface ProxyPair {
  origin: Origin;
  node: NodeProxy;
  host: string;
  /** The proxy's own server: raw path on. */
  raw: RunningServer;
  /** The same app and cache on node:http alone. */
  http: RunningServer;
  rawSeen: () => number;
  httpSeen: () => number;
  /** A GET of `target` with the proxy's Host (both servers key by it) and `extra` fields. */
  get(target: string, extra?: string): string;
}

async function proxyPair(): Promise<ProxyPair> {
  const o = await startOrigin(counting({ "cache-control": "max-age=600", etag: '"e1"' }));
  cleanup.push(() => o.close());
  const clock = fakeClock(Date.now());
  const node = await createNodeProxy({
    origins: [{ origin: o.url }],
    cacheFile: false,
    port: 0,
    now: clock.now,
  });
  cleanup.push(() => node.close());
  const raw = await node.listen();
  const http = await startServer({
    app: node.app,
    findHit: hitFinder(node.proxy),
    now: clock.now,
    rawHits: false,
    port: 0,
  });
  cleanup.push(() => http.close());
  const host = new URL(raw.url).host;
  return {
    origin: o,
    node,
    host,
    raw,
    http,
    rawSeen: counted(raw),
    httpSeen: counted(http),
    get: (target, extra = "") => `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`,
  };
}

/** A GET of /m with the Host `host` and `extra` fields. */
const withFields = (host: string, extra: string) =>
  `GET /m HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;

describe("the raw hit path: replies", () => {
  it("sends a proxy hit byte for byte as node:http does, for GET, HEAD and a 304", async () => {
    const p = await proxyPair();
    await exchange(portOf(p.raw), p.get("/item?x=1"), ["GET"]);
    for (const [method, extra] of [
      ["GET", ""],
      ["HEAD", ""],
      ["GET", 'If-None-Match: "e1"\r\n'],
      ["GET", "Accept: */*\r\nConnection: keep-alive\r\nContent-Length: 0\r\n"],
    ] as const) {
      const request = p.get("/item?x=1", extra).replace(/^GET/, method);
      const viaRaw = await exchange(portOf(p.raw), request, [method]);
      const viaHttp = await exchange(portOf(p.http), request, [method]);
      expect(viaRaw.replies[0]!.bytes, `${method} ${extra}`).toBe(viaHttp.replies[0]!.bytes);
      expect(viaRaw.replies[0]!.header("cache-status")).toMatch(/^edgecache; hit/);
    }
    // Only the first request (the miss) and the node:http server's went through node:http.
    expect(p.rawSeen()).toBe(1);
    expect(p.httpSeen()).toBe(4);
  });

  it("sends a data API hit as node:http does, with node:http's Date", async () => {
    const h = await startEdgecache();
    cleanup.push(() => h.close());
    // One frozen clock for both servers, so Age and ttl cannot tick between their replies.
    const frozen = Date.now();
    const now = () => frozen;
    const start = (rawHits: boolean) =>
      startServer({ app: h.edgecache.app, cache: h.edgecache.cache, now, rawHits, port: 0 });
    const raw = await start(true);
    const http = await start(false);
    cleanup.push(
      () => raw.close(),
      () => http.close(),
    );
    const rawSeen = counted(raw);
    const request = "GET /v1/users?limit=3 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    await exchange(portOf(raw), request, ["GET"]);
    for (const method of ["GET", "HEAD"]) {
      const r = request.replace(/^GET/, method);
      const viaRaw = (await exchange(portOf(raw), r, [method])).replies[0]!;
      const viaHttp = (await exchange(portOf(http), r, [method])).replies[0]!;
      expect(viaRaw.bytes).toBe(viaHttp.bytes);
      expect(viaRaw.fields.map(([name]) => name)).toContain("Date");
      expect(Date.parse(viaRaw.header("date")!)).toBeGreaterThan(frozen - 5000);
    }
    expect(rawSeen()).toBe(1);
    expect(h.edgecache.cache.stats()).toMatchObject({ hits: 4, misses: 1 });
  });

  it("counts raw hits in the stats like any other", async () => {
    const p = await proxyPair();
    const port = portOf(p.raw);
    await exchange(port, p.get("/s"), ["GET"]);
    const before = p.node.cache.stats().hits;
    await exchange(port, p.get("/s").repeat(5), Array(5).fill("GET"));
    expect(p.node.cache.stats().hits - before).toBe(5);
    expect(p.rawSeen()).toBe(1);
  });
});

describe("the raw hit path: hand-over to node:http", () => {
  /**
   * The same bytes to both servers on fresh connections (after one to warm whatever they
   * name); the replies must be equal.
   */
  async function same(p: ProxyPair, bytes: string, methods = ["GET"]): Promise<Exchange> {
    await exchange(portOf(p.http), bytes, methods);
    const viaRaw = await exchange(portOf(p.raw), bytes, methods);
    const viaHttp = await exchange(portOf(p.http), bytes, methods);
    expect(viaRaw.replies.map((r) => r.bytes)).toEqual(viaHttp.replies.map((r) => r.bytes));
    expect(viaRaw.closed).toBe(viaHttp.closed);
    return viaRaw;
  }

  it.each([
    ["a bare LF", (h: string) => `GET /m HTTP/1.1\nHost: ${h}\n\n`],
    ["a bare CR", (h: string) => `GET /m HTTP/1.1\rHost: ${h}\r\n\r\n`],
    ["obs-fold", (h: string) => `GET /m HTTP/1.1\r\nHost: ${h}\r\nX-A: 1\r\n  2\r\n\r\n`],
    ["a bad field name", (h: string) => `GET /m HTTP/1.1\r\nHost: ${h}\r\nX(A: 1\r\n\r\n`],
    ["space before the colon", (h: string) => `GET /m HTTP/1.1\r\nHost : ${h}\r\n\r\n`],
    ["a control char in the target", (h: string) => `GET /m\x01 HTTP/1.1\r\nHost: ${h}\r\n\r\n`],
    [
      "a control char in a value",
      (h: string) => `GET /m HTTP/1.1\r\nHost: ${h}\r\nX: \x7f\r\n\r\n`,
    ],
    ["no Host", () => "GET /m HTTP/1.1\r\nX-A: 1\r\n\r\n"],
    [
      "Content-Length with GET",
      (h: string) => `GET /m HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 1x\r\n\r\n`,
    ],
    [
      "two Content-Lengths",
      (h: string) =>
        `GET /m HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n`,
    ],
    [
      "TE and CL",
      (h: string) =>
        `GET /m HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n`,
    ],
    ["a bad version", (h: string) => `GET /m HTTP/1.2x\r\nHost: ${h}\r\n\r\n`],
  ])("gives a malformed request (%s) node:http's answer, never a cached body", async (_, head) => {
    const p = await proxyPair();
    await exchange(portOf(p.raw), p.get("/m"), ["GET"]);
    const before = p.node.cache.stats().hits;
    const r = await same(p, head(p.host));
    expect(r.replies[0]?.status).toBe(400);
    expect(p.node.cache.stats().hits).toBe(before);
  });

  it.each([
    ["a repeated Host", (h: string) => withFields(h, `Host: other.example\r\n`)],
    ["HTTP/1.0", (h: string) => `GET /m HTTP/1.0\r\nHost: ${h}\r\n\r\n`],
    ["Connection: close", (h: string) => withFields(h, "Connection: close\r\n")],
    ["absolute-form", (h: string) => `GET http://${h}/m HTTP/1.1\r\nHost: ${h}\r\n\r\n`],
    [
      "a target node:http takes as is",
      (h: string) => `GET /m?a[]=1| HTTP/1.1\r\nHost: ${h}\r\n\r\n`,
    ],
    [
      "a field over the raw limit",
      (h: string) => withFields(h, `X-Big: ${"b".repeat(MAX_RAW_HEAD)}\r\n`),
    ],
    ["obs-text in a value", (h: string) => withFields(h, "X-Name: caf\xe9\r\n")],
    ["Expect: 100-continue", (h: string) => withFields(h, "Expect: 100-continue\r\n")],
  ])("leaves a request with %s to node:http, which answers it as alone", async (_, head) => {
    const p = await proxyPair();
    await exchange(portOf(p.raw), p.get("/m"), ["GET"]);
    const seen = p.rawSeen();
    const r = await same(p, head(p.host));
    expect(p.rawSeen()).toBe(seen + 1);
    expect(r.replies.at(-1)!.status).toBeLessThan(500);
    expect(r.replies.at(-1)!.body.length).toBeGreaterThan(0);
  });

  it("closes after the reply to Connection: close, as node:http does", async () => {
    const p = await proxyPair();
    await exchange(portOf(p.raw), p.get("/c"), ["GET"]);
    const r = await exchange(portOf(p.raw), p.get("/c", "Connection: close\r\n"), ["GET"], {
      waitForClose: true,
    });
    expect(r.closed).toBe(true);
    expect(r.replies[0]!.header("cache-status")).toMatch(/^edgecache; hit/);
    expect(r.replies[0]!.header("connection")).toBe("close");
  });

  it("answers pipelined hit, miss, hit in order: the first raw, the rest node:http", async () => {
    const p = await proxyPair();
    await exchange(portOf(p.raw), p.get("/h"), ["GET"]);
    const seen = p.rawSeen();
    const r = await exchange(
      portOf(p.raw),
      p.get("/h") + p.get("/miss") + p.get("/h") + p.get("/h"),
      ["GET", "GET", "GET", "GET"],
    );
    expect(r.replies.map((x) => x.status)).toEqual([200, 200, 200, 200]);
    expect(r.replies.map((x) => x.header("cache-status"))).toEqual([
      expect.stringMatching(/^edgecache; hit/),
      expect.stringMatching(/stored/),
      expect.stringMatching(/^edgecache; hit/),
      expect.stringMatching(/^edgecache; hit/),
    ]);
    expect(JSON.parse(r.replies[1]!.body.toString())).toMatchObject({ url: "/miss" });
    expect(r.replies[2]!.body).toEqual(r.replies[0]!.body);
    expect(p.rawSeen()).toBe(seen + 3);
  });

  it("gives node:http a POST's body and a chunked request's chunks, then goes on", async () => {
    const p = await proxyPair();
    await exchange(portOf(p.raw), p.get("/w"), ["GET"]);
    const host = p.host;
    const post = `POST /w HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\n\r\nhello`;
    const chunked = `GET /w HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`;
    const r = await exchange(portOf(p.raw), post + chunked + p.get("/w"), ["POST", "GET", "GET"]);
    expect(r.replies.map((x) => x.status)).toEqual([200, 200, 200]);
    // The POST went to the origin with its body; no body was read as a request. The GETs
    // after it waited for it (RFC 9112 9.3.2), found /w invalidated, and shared one load.
    expect(r.replies[0]!.header("cache-status")).toMatch(/fwd=method/);
    expect(p.origin.requests.slice(-2)).toMatchObject([
      { method: "POST", url: "/w", body: "hello" },
      { method: "GET", url: "/w" },
    ]);
    expect(r.replies[1]!.body).toEqual(r.replies[2]!.body);
    expect(p.rawSeen()).toBe(1 + 3);
  });

  it("answers a burst of pipelined hits in order while the client reads slowly", async () => {
    const p = await proxyPair();
    await exchange(portOf(p.raw), p.get("/b"), ["GET"]);
    const n = 3000;
    const socket = connect(portOf(p.raw), "127.0.0.1");
    socket.pause();
    const done = exchange(
      portOf(p.raw),
      p.get("/b").repeat(n) + p.get("/other"),
      [...Array(n + 1).fill("GET")],
      { socket },
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    socket.resume();
    const r = await done;
    socket.destroy();
    expect(r.replies).toHaveLength(n + 1);
    expect(
      r.replies.slice(0, n).every((x) => x.header("cache-status")?.startsWith("edgecache; hit")),
    ).toBe(true);
    expect(r.replies[n]!.header("cache-status")).toMatch(/stored/);
    // Heads cut between reads stayed raw: only the warm-up and the miss reached node:http.
    expect(p.rawSeen()).toBe(2);
  });
});

describe("the raw hit path: heads cut between reads", () => {
  /** Writes `parts` one by one, `ms` apart, on one connection. */
  async function trickle(port: number, parts: string[], ms: number): Promise<Exchange> {
    const socket = connect(port, "127.0.0.1");
    cleanup.push(() => {
      socket.destroy();
    });
    const reply = exchange(port, parts[0]!, ["GET"], { socket });
    for (const part of parts.slice(1)) {
      await new Promise((resolve) => setTimeout(resolve, ms));
      socket.write(part);
    }
    return reply;
  }

  it("answers a hit whose head came in two reads", async () => {
    const p = await proxyPair();
    await exchange(portOf(p.raw), p.get("/t"), ["GET"]);
    const head = p.get("/t");
    const r = await trickle(portOf(p.raw), [head.slice(0, 20), head.slice(20)], 50);
    expect(r.replies[0]!.header("cache-status")).toMatch(/^edgecache; hit/);
    expect(p.rawSeen()).toBe(1);
  });

  it("leaves a head that takes more reads to node:http, which answers it", async () => {
    const p = await proxyPair();
    await exchange(portOf(p.raw), p.get("/t"), ["GET"]);
    const head = p.get("/t");
    const r = await trickle(
      portOf(p.raw),
      [head.slice(0, 10), head.slice(10, 20), head.slice(20)],
      50,
    );
    expect(r.replies[0]!.header("cache-status")).toMatch(/^edgecache; hit/);
    expect(p.rawSeen()).toBe(2);
  });

  it("leaves a connection idle before its first request to node:http", async () => {
    const p = await proxyPair();
    await exchange(portOf(p.raw), p.get("/t"), ["GET"]);
    // This pair's own server: nothing to restore.
    p.raw.server.keepAliveTimeout = 50;
    // Idle past the raw path's timer (the keep-alive timeout plus a second): node:http's now.
    const r = await trickle(portOf(p.raw), ["", p.get("/t")], 1300);
    expect(r.replies[0]!.header("cache-status")).toMatch(/^edgecache; hit/);
    expect(p.rawSeen()).toBe(2);
  });
});

describe("the raw hit path: connection lifecycle", () => {
  it("closes an idle raw connection after the keep-alive timeout", async () => {
    const p = await proxyPair();
    await exchange(portOf(p.raw), p.get("/k"), ["GET"]);
    // This pair's own server: nothing to restore.
    p.raw.server.keepAliveTimeout = 100;
    const socket = connect(portOf(p.raw), "127.0.0.1");
    const r = await exchange(portOf(p.raw), p.get("/k"), ["GET"], { socket });
    expect(r.replies[0]!.header("keep-alive")).toBe("timeout=0");
    // node:http's keep-alive timer: the timeout plus a second of slack.
    expect(await closedWithin(socket, 3000)).toBeGreaterThanOrEqual(1000);
    expect(p.rawSeen()).toBe(1);
  });

  it("ends raw connections when the server closes", async () => {
    const p = await proxyPair();
    const port = portOf(p.raw);
    await exchange(port, p.get("/e"), ["GET"]);
    const socket = connect(port, "127.0.0.1");
    const r = await exchange(port, p.get("/e"), ["GET"], { socket });
    expect(r.replies[0]!.header("cache-status")).toMatch(/^edgecache; hit/);
    const gone = closedWithin(socket, 2000);
    await p.raw.close();
    await gone;
  });
});

describe("parseHead", () => {
  const head = (s: string) => parseHead(s, 0);

  it("reads a plain GET, lower-casing names and trimming values", () => {
    const text = "GET /a?b=1 HTTP/1.1\r\nHost: x.example \r\nAccept:\t*/*\r\n\r\nGET";
    const r = head(text);
    expect(r).toMatchObject({ method: "GET", url: "/a?b=1", length: text.length - 3 });
    expect({ ...r!.headers }).toEqual({ host: "x.example", accept: "*/*" });
  });

  it.each([
    "GET /a HTTP/1.1\r\nHost: x\r\n",
    "get /a HTTP/1.1\r\nHost: x\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET  /a HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /a HTTP/1.1 \r\nHost: x\r\n\r\n",
    "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: x\r\n__proto__: y\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost:\r\n\r\n",
    "GET HTTP/1.1\r\nHost: x\r\n\r\n",
    "\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
    // node:http answers 400 to a tab after Content-Length's number (found by the property).
    "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length:0\t\r\n\r\n",
  ])("refuses %j", (s) => {
    expect(head(s)).toBeUndefined();
  });
});

describe("parseHead against node:http's parser", () => {
  it("reads every head it accepts as llhttp does: method, target, fields and where it ends", async () => {
    const echo = createServer((req, res) => {
      // In a field, so a HEAD's reply carries it too.
      const seen = JSON.stringify({ method: req.method, url: req.url, headers: req.headers });
      res.setHeader("x-echo", encodeURIComponent(seen));
      res.end();
    });
    await new Promise<void>((done) => echo.listen(0, "127.0.0.1", done));
    cleanup.push(() => {
      echo.closeAllConnections();
      echo.close();
    });
    const port = (echo.address() as AddressInfo).port;
    const pick = <T>(...xs: T[]) => fc.constantFrom(...xs);
    const chars = (set: string, max: number) =>
      fc.array(fc.constantFrom(...set), { maxLength: max }).map((a) => a.join(""));
    const eol = fc.oneof({ weight: 8, arbitrary: pick("\r\n") }, pick("\n", "\r", " \r\n"));
    const field = fc.tuple(
      fc.oneof(
        { weight: 6, arbitrary: pick("Host", "Accept", "X-A", "Connection", "Content-Length") },
        chars("aZ-_!(: \t", 6),
      ),
      fc.oneof(pick(":", ": ", " :", ":\t"), pick(":")),
      fc.oneof({ weight: 6, arbitrary: chars("ab, */=", 8) }, chars("a \t\x7f\xe9\r\n0", 6)),
      eol,
    );
    const head = fc
      .tuple(
        pick("GET", "HEAD", "get", "POST"),
        pick(" "),
        fc.oneof(
          { weight: 4, arbitrary: chars("abc/?=&%", 10).map((t) => `/${t}`) },
          chars("/a\x01 #|", 6),
        ),
        fc.oneof(
          { weight: 6, arbitrary: pick(" HTTP/1.1") },
          pick(" HTTP/1.0", "  HTTP/1.1", " HTTP/1.1 "),
        ),
        eol,
        fc.oneof(
          { weight: 6, arbitrary: pick("Host: h.example\r\n") },
          pick("", "Host: a\r\nHost: b\r\n"),
        ),
        fc.array(field, { maxLength: 4 }),
        eol,
      )
      .map(
        ([m, sp, t, v, e, host, fields, end]) =>
          m + sp + t + v + e + host + fields.flat().join("") + end,
      );
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(head, async (text) => {
        const parsed = parseHead(text, 0);
        if (!parsed) return;
        accepted++;
        const next = "GET /next HTTP/1.1\r\nHost: n\r\n\r\n";
        const bytes = Buffer.from(text.slice(0, parsed.length) + next, "latin1");
        const r = await exchange(port, bytes, [parsed.method, "GET"]);
        const [first, second] = r.replies.map(
          (x) => x.status === 200 && JSON.parse(decodeURIComponent(x.header("x-echo")!)),
        );
        expect(first).toEqual({
          method: parsed.method,
          url: parsed.url,
          headers: { ...parsed.headers },
        });
        expect(second).toMatchObject({ url: "/next" });
      }),
      { numRuns: 2000 },
    );
    // The generator reaches the accepting side often enough to mean something.
    expect(accepted).toBeGreaterThan(60);
  });
});

describe("parseHead's memo of heads", () => {
  it("reads a head seen before, at any offset, as the same frozen request", () => {
    const one = "GET /m?x=1 HTTP/1.1\r\nHost: memo.example\r\nAccept: */*\r\n\r\n";
    const first = parseHead(one, 0)!;
    const again = parseHead(`${one}${one}`, one.length)!;
    expect(again).toBe(first);
    expect(again).toMatchObject({ method: "GET", url: "/m?x=1", length: one.length });
    expect(Object.isFrozen(again) && Object.isFrozen(again.headers)).toBe(true);
    expect(() => {
      (again.headers as Record<string, string>).host = "other.example";
    }).toThrow(TypeError);
    expect(parseHead(one, 0)!.headers.host).toBe("memo.example");
    // A head differing in one byte is read on its own.
    expect(parseHead(one.replace("x=1", "x=2"), 0)).toMatchObject({ url: "/m?x=2" });
  });
});
