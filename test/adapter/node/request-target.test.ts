import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "../../../src/adapter/node/server/server.ts";
import { type Harness, startEdgecache } from "../../app/harness.ts";
import {
  counting,
  type Origin,
  type ProxyHarness,
  startOrigin,
  startProxy,
} from "../../app/proxy-harness.ts";
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
  data = await startEdgecache({ adminToken: TOKEN });
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

  it("double-encoded (%252e) is no dot segment: never the admin API", async () => {
    for (const t of targets) {
      for (const port of t.ports) {
        const r = await send(port, request("GET", "/v1/%252e%252e/_edgecache/keys", t.host));
        expect(r.body.toString(), t.name).not.toContain('"keys"');
      }
    }
    // The proxy forwards it as sent; the origin sees the path it was asked for.
    expect(origin.requests.map((r) => r.url)).toEqual(
      expect.arrayContaining(["/v1/%252e%252e/_edgecache/keys"]),
    );
  });

  it("leaves dots inside a segment alone: /v1/users/a.b and %2e.json are no dot segments", async () => {
    const t = targets[1]!;
    for (const path of ["/v1/a.b", "/v1/..x", "/v1/x%2e%2e", "/v1/%2e%2e%2e"]) {
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

  it("that names a host is served, hit or miss: names in any case, ports, IPv6 literals", async () => {
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
