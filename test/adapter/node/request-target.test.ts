import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "../../../src/adapter/node/server/server.ts";
import { type Harness, startEdgecache } from "../../app/harness.ts";
import {
  counting,
  type Origin,
  type ProxyHarness,
  proxied,
  startOrigin,
  startProxy,
} from "../../app/proxy/harness.ts";
import { exchange, type WireReply } from "./raw-client.ts";

// What a request names, decided once on Node's raw socket: the raw hit path, node:http's
// listener and the app refuse the same requests with the same JSON error, a hit or not.
// Raw sockets throughout: fetch and node:http's client resolve dot segments before sending.

const TOKEN = "s3cret-admin-token";

interface Target {
  name: string;
  /** The server with the raw hit path, and the same app on node:http alone. */
  ports: number[];
  host: string;
  /** A path whose GET is cached once asked for. */
  cached: string;
  /** An admin endpoint that writes: POST'ed with an empty-ish body. */
  write: { path: string; body: string };
  /** Whether anything cached is still there. */
  stillCached(): Promise<boolean>;
  close(): Promise<void>;
}

let data: Harness;
let dataServers: RunningServer[];
let origin: Origin;
let proxy: ProxyHarness;
let proxyHttp: RunningServer;
let targets: Target[];

beforeEach(async () => {
  // Names beside the loopback ones, as an operator lists them (a loopback node answers no other).
  data = await startEdgecache({ adminToken: TOKEN, allowedHosts: ["a.example", "x_y.example"] });
  dataServers = [
    await data.edgecache.listen(),
    await startServer({
      app: data.edgecache.app,
      cache: data.edgecache.cache,
      rawHits: false,
      port: 0,
    }),
  ];
  origin = await startOrigin(counting({ "cache-control": "max-age=600" }));
  proxy = await startProxy(origin.url, { adminToken: TOKEN });
  const { hitFinder } = await import("../../../src/adapter/node/modes/proxy.ts");
  proxyHttp = await startServer({
    app: proxy.node.app,
    findHit: hitFinder(proxy.node.proxy),
    now: proxy.clock.now,
    rawHits: false,
    port: 0,
  });
  const port = (s: RunningServer | string) =>
    Number(new URL(typeof s === "string" ? s : s.url).port);
  targets = [
    {
      name: "data API",
      ports: dataServers.map(port),
      host: new URL(dataServers[0]!.url).host,
      cached: "/v1/users?limit=3",
      write: { path: "/_edgecache/invalidate", body: '{"prefix":"/"}' },
      stillCached: async () => data.edgecache.cache.stats().indexedKeys > 0,
      close: async () => {
        for (const s of dataServers.slice(1)) await s.close();
        await data.close();
      },
    },
    {
      name: "proxy",
      ports: [port(proxy.url), port(proxyHttp)],
      host: proxy.host,
      cached: "/v1/users/1",
      write: { path: "/_edgecache/purge", body: '{"prefix":"/"}' },
      stillCached: async () => proxy.node.cache.stats().indexedKeys > 0,
      close: async () => {
        await proxyHttp.close();
        await proxy.close();
        await origin.close();
      },
    },
  ];
});

afterEach(async () => {
  for (const t of targets) await t.close();
});

/** A request as sent; the admin token goes only to admin paths (a cached read carries none). */
function request(method: string, target: string, host: string | undefined, extra = ""): string {
  const auth = target.includes("_edgecache") ? `Authorization: Bearer ${TOKEN}\r\n` : "";
  const hostField = host === undefined ? "" : `Host: ${host}\r\n`;
  return `${method} ${target} HTTP/1.1\r\n${hostField}${auth}${extra}\r\n`;
}

async function send(port: number, bytes: string, method = "GET"): Promise<WireReply> {
  return (await exchange(port, bytes, [method])).replies[0]!;
}

function expectJsonError(r: WireReply, status: number, code: string, what: string): void {
  expect(r.status, what).toBe(status);
  expect(r.header("content-type"), what).toMatch(/^application\/json/);
  expect(JSON.parse(r.body.toString()).error.code, what).toBe(code);
}

/** Asks for each target's cached path until it is a hit on every server. */
async function warm(t: Target): Promise<void> {
  for (const port of t.ports) {
    await send(port, request("GET", t.cached, t.host));
    expect((await send(port, request("GET", t.cached, t.host))).header("cache-status")).toMatch(
      /^edgecache; hit/,
    );
  }
}

describe("a path with a dot segment in any spelling", () => {
  // Each resolves to /_edgecache/keys: a front proxy that allows only /v1/, or blocks
  // /_edgecache by prefix, would have let it through to the key list.
  const admin = [
    "/v1/%2e%2e/_edgecache/keys",
    "/%2e%2e/_edgecache/keys",
    "/v1/.%2e/_edgecache/keys",
    "/v1/%2e./_edgecache/keys",
    "/v1/%2E%2e/_edgecache/keys",
    "/v1/../_edgecache/keys",
    "/v1/x/%2e%2e/%2E%2E/_edgecache/keys",
    "/v1/%2e/../_edgecache/keys",
    "/v1/%2e%2e/_edgecache/keys?prefix=/",
  ];

  it("is a 400 E_BAD_QUERY on the data API and the proxy, never the admin API", async () => {
    for (const t of targets) {
      for (const port of t.ports) {
        for (const path of admin) {
          const r = await send(port, request("GET", path, t.host));
          expectJsonError(r, 400, "E_BAD_QUERY", `${t.name} :${port} ${path}`);
          expect(r.body.toString()).not.toContain('"keys"');
        }
      }
    }
    expect(origin.count()).toBe(0);
  });

  it("cannot purge or invalidate: the cache keeps what it held", async () => {
    for (const t of targets) {
      await warm(t);
      for (const port of t.ports) {
        for (const prefix of ["/v1/%2e%2e", "/%2e%2e", "/v1/.%2E"]) {
          const bytes = request(
            "POST",
            prefix + t.write.path,
            t.host,
            `Content-Type: application/json\r\nContent-Length: ${t.write.body.length}\r\n`,
          );
          const r = await send(port, bytes + t.write.body, "POST");
          expectJsonError(r, 400, "E_BAD_QUERY", `${t.name} :${port} ${prefix}`);
        }
      }
      expect(await t.stillCached(), t.name).toBe(true);
    }
  });

  it("is refused even where it resolves to a cached path: the raw hit path decides as node:http", async () => {
    for (const t of targets) {
      await warm(t);
      const [first, rest = ""] = t.cached.slice(1).split(/\/(.*)/s);
      for (const port of t.ports) {
        for (const dots of ["%2e%2e", ".%2e", ".."]) {
          const path = `/${first}/x/${dots}/${rest}`;
          const r = await send(port, request("GET", path, t.host));
          expectJsonError(r, 400, "E_BAD_QUERY", `${t.name} :${port} ${path}`);
        }
      }
    }
  });

  // What common servers behind a proxy resolve to a dot segment though the URL parser does
  // not: each would get past a front rule that allows only /v1/ (issue 70).
  const serverSpecific = [
    // Tomcat, Jetty, Spring: path parameters (`;...`) are cut from each segment.
    "/v1/..;/_edgecache/keys",
    "/v1/..;x=1/_edgecache/keys",
    "/v1/x/.;/..;/_edgecache/keys",
    "/v1/%2e%2e;/_edgecache/keys",
    "/v1/..%3bx/_edgecache/keys",
    // IIS: backslash as a separator, percent-encoded.
    "/v1/..%5c_edgecache/keys",
    "/v1/x%5C..%5C..%5c_edgecache/keys",
    // nginx and others decode %2F before resolving.
    "/v1/..%2f_edgecache/keys",
    // IIS: overlong UTF-8 of `.`, `/` and `\` (2, 3 and 4 bytes), and %u escapes.
    "/v1/%c0%ae%c0%ae/_edgecache/keys",
    "/v1/%C0%AE./_edgecache/keys",
    "/v1/%e0%80%ae%e0%80%ae/_edgecache/keys",
    "/v1/%f0%80%80%ae%f0%80%80%ae/_edgecache/keys",
    "/v1/..%c0%af_edgecache/keys",
    "/v1/..%e0%80%af_edgecache/keys",
    "/v1/..%c1%9c_edgecache/keys",
    "/v1/%u002e%u002e/_edgecache/keys",
    "/v1/%U002E./_edgecache/keys",
    // Slash look-alikes that Windows' best-fit mapping turns into `/` or `\` (the fuzzer's find).
    "/v1/..%u2215_edgecache/keys",
    "/v1/%u002e%u002e%u2216_edgecache/keys",
    "/v1/..%ef%bc%8f_edgecache/keys",
    // Unicode compatibility forms (NFKC): fullwidth full stop, two dot leader.
    "/v1/%ef%bc%8e%ef%bc%8e/_edgecache/keys",
    "/v1/%e2%80%a5/_edgecache/keys",
    // Windows drops trailing spaces; C-based stacks stop at NUL.
    "/v1/..%20/_edgecache/keys",
    "/v1/x/..%20%20/_edgecache/keys",
    "/v1/..%00/_edgecache/keys",
    // A server that decodes once and then splits off a query or fragment sees `/v1/..`.
    "/v1/..%3f/_edgecache/keys",
    "/v1/..%3F/_edgecache/keys",
    "/v1/..%23/_edgecache/keys",
    "/v1/%2e%2e%3fx=1/_edgecache/keys",
    "/v1/x/.%23/..%3f/_edgecache/keys",
    "/v1/..%253f/_edgecache/keys",
    // Double (and triple) encoded: an origin or framework that decodes twice resolves it.
    "/v1/%252e%252e/_edgecache/keys",
    "/v1/%25252e%25252e/_edgecache/keys",
    "/v1/..%255c_edgecache/keys",
  ];

  it("in a spelling some common server resolves (;params, %5c, overlong UTF-8, %u, double-encoded) is a 400 E_BAD_QUERY", async () => {
    for (const t of targets) {
      for (const port of t.ports) {
        for (const path of serverSpecific) {
          const r = await send(port, request("GET", path, t.host));
          expectJsonError(r, 400, "E_BAD_QUERY", `${t.name} :${port} ${path}`);
        }
      }
    }
    expect(origin.requests.map((r) => r.url)).toEqual([]);
  });

  it("leaves dots inside a segment alone: /v1/users/a.b and %2e.json are no dot segments", async () => {
    const t = targets[1]!;
    for (const path of [
      "/v1/a.b",
      "/v1/..x",
      "/v1/x%2e%2e",
      "/v1/%2e%2e%2e",
      "/v1/...",
      "/v1/a;b",
      "/v1/x..;y",
      "/v1/a%2fb",
      "/v1/%c0%aeb",
      "/v1/%252e%252ex",
      "/v1/caf%c3%a9",
      "/v1/%ef%bc%8ex",
      "/v1/a%3fb",
      "/v1/x..%23",
    ]) {
      const r = await send(t.ports[0]!, request("GET", path, t.host));
      expect(r.status, path).toBe(200);
    }
  });
});

describe("the Host header", () => {
  const bad = [
    "evil/x",
    "u@evil",
    "evil?x",
    "evil#x",
    "[::1",
    "%",
    "",
    "host:99999",
    "a..b:",
    "127.1",
    "[::0001]",
  ];

  it("that names no host is a 400 E_BAD_HEADER, hit or miss, raw path or node:http", async () => {
    for (const t of targets) {
      await warm(t);
      for (const port of t.ports) {
        for (const host of bad) {
          for (const path of [t.cached, `${t.cached.split("?")[0]}-not-cached`]) {
            const r = await send(port, request("GET", path, host));
            expectJsonError(
              r,
              400,
              "E_BAD_HEADER",
              `${t.name} :${port} Host ${JSON.stringify(host)} ${path}`,
            );
          }
        }
      }
    }
  });

  it("given twice is a 400 E_BAD_HEADER (RFC 9112 3.2), hit or miss, raw path or node:http", async () => {
    for (const t of targets) {
      await warm(t);
      for (const port of t.ports) {
        for (const second of [t.host, "other.example"]) {
          for (const path of [t.cached, `${t.cached.split("?")[0]}-not-cached`]) {
            const r = await send(port, request("GET", path, t.host, `Host: ${second}\r\n`));
            expectJsonError(r, 400, "E_BAD_HEADER", `${t.name} :${port} Host ${second} ${path}`);
          }
        }
      }
    }
  });

  it("missing is a 400 E_BAD_HEADER", async () => {
    for (const t of targets) {
      for (const port of t.ports) {
        expectJsonError(
          await send(port, request("GET", t.cached, undefined)),
          400,
          "E_BAD_HEADER",
          t.name,
        );
      }
    }
  });

  it("that names a host it answers to is served, hit or miss: names in any case, ports, IPv6 literals", async () => {
    const t = targets[0]!;
    const port = t.ports[0]!;
    for (const host of [
      t.host,
      "LOCALHOST",
      `localhost:${port}`,
      `[::1]:${port}`,
      "a.example",
      "x_y.example:80",
    ]) {
      const r = await send(port, request("GET", t.cached, host));
      expect(r.status, host).toBe(200);
    }
  });
});

describe("an absolute-form target (RFC 9112 3.2.2)", () => {
  /** An origin that builds its answer from X-Forwarded-Proto, as Rails' force_ssl does. */
  const byScheme = async () =>
    proxied((req, res) => {
      res.writeHead(200, { "content-type": "text/plain", "cache-control": "max-age=600" });
      res.end(`built for ${req.headers["x-forwarded-proto"]}`);
    });

  it("cannot store an answer built for another scheme: the origin is told the listener's, http", async () => {
    const { origin, proxy } = await byScheme();
    const port = Number(new URL(proxy.url).port);
    const absolute = await send(port, request("GET", `https://${proxy.host}/p`, proxy.host));
    expect(absolute.status).toBe(200);
    expect(absolute.body.toString()).toBe("built for http");
    // A plain client of the URL next: whatever it gets was built for its own scheme.
    const plain = await send(port, request("GET", "/p", proxy.host));
    expect(plain.body.toString()).toBe("built for http");
    expect(origin.requests.every((r) => r.headers["x-forwarded-proto"] === "http")).toBe(true);
  });

  it("whose authority is not Host, or that carries userinfo, is a 400 E_BAD_HEADER", async () => {
    const { origin, proxy } = await byScheme();
    const port = Number(new URL(proxy.url).port);
    for (const target of [
      "http://other.example/p",
      `http://${proxy.hostname}:1/p`,
      `http://user:pw@${proxy.host}/p`,
      `http://user@${proxy.host}/p`,
    ]) {
      const r = await send(port, request("GET", target, proxy.host));
      expectJsonError(r, 400, "E_BAD_HEADER", target);
    }
    expect(origin.count()).toBe(0);
  });

  it("naming the Host it is sent with is served as its origin-form: the same key, the same answer", async () => {
    const { origin, proxy } = await byScheme();
    const port = Number(new URL(proxy.url).port);
    const first = await send(port, request("GET", `http://${proxy.host}/q?a=1`, proxy.host));
    expect(first.status).toBe(200);
    const second = await send(port, request("GET", "/q?a=1", proxy.host));
    expect(second.header("cache-status")).toMatch(/^edgecache; hit/);
    expect(origin.count()).toBe(1);
  });
});

describe("an admin path with a percent-encoded unreserved character (RFC 3986 2.3)", () => {
  // No client's encoder writes one (RFC 3986 6.2.2.2 decodes them); routing decodes it, so
  // a front proxy that blocks /_edgecache/invalidate exactly would be passed.
  const reads = [
    "/_edgecache/%6beys",
    "/_edgecache/k%65ys?prefix=/",
    "/_edgecache/stat%73",
    "/_edgecache/%4Beys",
    "/_edgecache/keys/%41",
    "/_edgecache/keys/a%2db",
    "/_edgecache/keys/a%2Eb",
    "/_edgecache/keys/a%5fb",
    "/_edgecache/keys/a%7eb",
    "/_edgecache/keys/a%30",
  ];

  it("is a 404 E_NOT_FOUND, read or write, token or not, and changes nothing", async () => {
    for (const t of targets) {
      await warm(t);
      const [, name] = t.write.path.split("/_edgecache/");
      const writes = [
        `/_edgecache/%${name!.charCodeAt(0).toString(16)}${name!.slice(1)}`,
        `/_edgecache/${name!.slice(0, -1)}%${name!
          .charCodeAt(name!.length - 1)
          .toString(16)
          .toUpperCase()}`,
      ];
      for (const port of t.ports) {
        for (const path of reads) {
          const r = await send(port, request("GET", path, t.host));
          expectJsonError(r, 404, "E_NOT_FOUND", `${t.name} :${port} ${path}`);
        }
        for (const path of writes) {
          const extra = `Content-Type: application/json\r\nContent-Length: ${t.write.body.length}\r\n`;
          const bytes = request("POST", path, t.host, extra) + t.write.body;
          const r = await send(port, bytes, "POST");
          expectJsonError(r, 404, "E_NOT_FOUND", `${t.name} :${port} ${path}`);
        }
      }
      expect(await t.stillCached(), t.name).toBe(true);
    }
  });

  it("leaves the encodings a client makes alone: a key with a space, a slash or a %", async () => {
    for (const t of targets) {
      for (const path of ["/_edgecache/keys/GET%20%2Fv1%2Fusers", "/_edgecache/keys/a%2541"]) {
        const r = await send(t.ports[0]!, request("GET", path, t.host));
        expect(r.body.toString(), `${t.name} ${path}`).not.toMatch(/percent-encoded/);
      }
    }
  });
});
