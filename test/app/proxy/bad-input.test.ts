import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_CACHED_TARGET } from "../../../src/app/proxy/index.ts";
import {
  counting,
  type Origin,
  type OriginHandler,
  type ProxyHarness,
  raw,
  startOrigin,
  startProxy,
} from "./harness.ts";

// Bad input never crashes the proxy nor poisons its cache: malformed cache headers, huge
// and repeated headers, odd paths and hosts, and requests that differ only in headers the
// key does not hold.

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function setup(handler: OriginHandler): Promise<{ origin: Origin; proxy: ProxyHarness }> {
  const origin = await startOrigin(handler);
  cleanup.push(() => origin.close());
  const proxy = await startProxy(origin.url);
  cleanup.push(() => proxy.close());
  return { origin, proxy };
}

const status = (r: { headers: Record<string, unknown> }) => String(r.headers["cache-status"]);

/** A raw request line and headers on a socket: for what an HTTP client would refuse to send. */
function rawSocket(url: string, text: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((done, fail) => {
    const socket = connect(Number(port), hostname, () => socket.write(text));
    let out = "";
    socket.on("data", (c) => {
      out += c;
    });
    socket.on("end", () => done(out));
    socket.on("error", fail);
  });
}

describe("malformed cache headers from the origin", () => {
  it.each([
    ["max-age=abc", "not fresh"],
    ["max-age=-5", "not fresh"],
    ["max-age=1.5", "not fresh"],
    ['max-age="60"', "fresh 60"],
    ["MAX-AGE=60", "fresh 60"],
    ["max-age=60, max-age=5", "fresh 60"],
    ["max-age=99999999999999999999999", "fresh 2147483648"],
    [",,;=, max-age=60,,", "fresh 60"],
    ["no-store=maybe, max-age=60", "not storable"],
  ])("Cache-Control: %s is %s", async (cc, expected) => {
    const { origin, proxy } = await setup(counting({ "cache-control": cc, etag: '"v"' }));
    const r = await raw(`${proxy.url}/cc`);
    expect(r.status).toBe(200);
    const s = status(r);
    if (expected.startsWith("fresh"))
      expect(s).toMatch(new RegExp(`stored; ttl=${expected.slice(6)}$`));
    else if (expected === "not fresh")
      expect(s).toMatch(/stored; ttl=0$/); // kept to revalidate
    else expect(s).toMatch(/detail=no-store$/);
    expect((await raw(`${proxy.url}/cc`)).status).toBe(200);
    expect(origin.count()).toBeGreaterThanOrEqual(1);
  });

  it.each([
    ["an invalid Expires", { expires: "tomorrow-ish" }],
    ["Expires: 0", { expires: "0" }],
    [
      "two Expires",
      { expires: [new Date(Date.now() + 60_000).toUTCString(), "Thu, 01 Jan 2099 00:00:00 GMT"] },
    ],
    ["an invalid Date", { date: "yesterday", expires: "garbage" }],
  ])("treats %s as already expired", async (_, headers) => {
    const { origin, proxy } = await setup((_, res) => {
      for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
      res.end("x");
    });
    await raw(`${proxy.url}/exp`);
    expect((await raw(`${proxy.url}/exp`)).status).toBe(200);
    expect(origin.count()).toBe(2);
  });

  it("does not let a negative or garbled Age extend freshness", async () => {
    const { proxy } = await setup((req, res) => {
      res.writeHead(200, {
        "cache-control": "max-age=60",
        age: req.url === "/neg" ? "-500" : "x1",
      });
      res.end("x");
    });
    expect(status(await raw(`${proxy.url}/neg`))).toMatch(/ttl=60$/);
    expect(status(await raw(`${proxy.url}/garbled`))).toMatch(/ttl=60$/);
  });

  it.each<[string | string[], "fresh" | "stale"]>([
    ["7200, 0", "stale"],
    ["0, 7200", "fresh"],
    [["7200", "0"], "stale"],
    [["0", "7200"], "fresh"],
  ])("counts an Age list (%j) by its first member: %s", async (age, expected) => {
    const { origin, proxy } = await setup((_, res) => {
      res.setHeader("age", age); // an array: one line each
      res.writeHead(200, { "cache-control": "max-age=3600" });
      res.end("x");
    });
    await raw(`${proxy.url}/aged`);
    await raw(`${proxy.url}/aged`);
    expect(origin.count()).toBe(expected === "fresh" ? 1 : 2);
  });

  it("takes at most 128 purge tags from a huge Cache-Tag header", async () => {
    const tags = Array.from({ length: 1000 }, (_, i) => `t${i}`).join(" ");
    const { proxy } = await setup(
      counting({ "cache-control": "max-age=60", "cache-tag": `${tags} ${"z".repeat(300)}` }),
    );
    await raw(`${proxy.url}/tags`);
    const [key] = [...proxy.node.cache.keys({ prefix: "/tags" })];
    const reg = proxy.node.cache.registration(key!)!;
    expect(reg.tags.filter((t) => t.startsWith("tag:"))).toHaveLength(128);
  });
});

describe("huge and repeated headers", () => {
  it("answers a request with a huge header with 431 and keeps serving", async () => {
    const { proxy } = await setup(counting({ "cache-control": "max-age=60" }));
    const huge = await raw(`${proxy.url}/h`, {
      headers: { "x-huge": "a".repeat(64 * 1024) },
    }).catch((err: Error) => err);
    if (!(huge instanceof Error)) expect(huge.status).toBe(431);
    expect((await raw(`${proxy.url}/h`)).status).toBe(200);
  });

  it("answers 502 for an origin header larger than Node accepts, and stores nothing", async () => {
    const { proxy } = await setup((req, res) => {
      res.writeHead(200, {
        "cache-control": "max-age=60",
        ...(req.url === "/huge" && { "x-huge": "a".repeat(64 * 1024) }),
      });
      res.end("x");
    });
    const r = await raw(`${proxy.url}/huge`);
    expect(r.status).toBe(502);
    expect(JSON.parse(r.text).error.code).toBe("E_ORIGIN_UNAVAILABLE");
    expect([...proxy.node.cache.keys({ prefix: "/huge" })]).toEqual([]);
    expect((await raw(`${proxy.url}/fine`)).status).toBe(200);
  });

  it("joins repeated Cache-Control fields, the first directive winning", async () => {
    const { proxy } = await setup((_, res) => {
      res.setHeader("cache-control", ["max-age=30", "max-age=3000"]);
      res.end("x");
    });
    expect(status(await raw(`${proxy.url}/two`))).toMatch(/ttl=30$/);
  });

  it("keeps a repeated request header's values together for Vary", async () => {
    const { origin, proxy } = await setup((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=60", vary: "x-variant" });
      res.end(String(req.headers["x-variant"]));
    });
    const both = await raw(`${proxy.url}/rep`, { headers: { "x-variant": ["a", "b"] } });
    expect(both.text).toBe("a, b");
    expect((await raw(`${proxy.url}/rep`, { headers: { "x-variant": "a" } })).text).toBe("a");
    expect((await raw(`${proxy.url}/rep`, { headers: { "x-variant": "a,b" } })).text).toBe("a, b");
    // The first asked twice: X-Variant reaches the origin once its Vary says it keys by it.
    expect(origin.count()).toBe(3);
  });
});

describe("odd paths and hosts", () => {
  it("refuses a dot segment (400 E_BAD_QUERY) rather than forward the path it resolves to", async () => {
    // /public/%2e%2e/secret would reach /secret past a front proxy that allows /public/.
    const { origin, proxy } = await setup((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=60" });
      res.end(`path ${req.url}`);
    });
    const sneaky = await rawSocket(
      proxy.url,
      `GET /public/%2e%2e/secret HTTP/1.1\r\nHost: ${proxy.host}\r\nConnection: close\r\n\r\n`,
    );
    expect(sneaky).toMatch(/^HTTP\/1.1 400 /);
    expect(sneaky).toContain('"E_BAD_QUERY"');
    expect(origin.count()).toBe(0);
  });

  it.each([
    ["a double slash", "//double//slash"],
    ["invalid percent-encoding", "/bad%zz%"],
    ["encoded slashes", "/a%2Fb"],
    ["unicode", "/caf%C3%A9?q=%E2%9C%93"],
  ])("forwards and caches a path with %s as is", async (_, path) => {
    const { origin, proxy } = await setup((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=60" });
      res.end(`path ${req.url}`);
    });
    const first = await raw(`${proxy.url}${path}`);
    expect(first.text).toBe(`path ${path}`);
    expect(status(await raw(`${proxy.url}${path}`))).toMatch(/^edgecache; hit/);
    expect(origin.count()).toBe(1);
  });

  it("passes a very long target through without caching it", async () => {
    const { origin, proxy } = await setup(counting({ "cache-control": "max-age=60" }));
    const path = `/long/${"x".repeat(MAX_CACHED_TARGET)}`;
    const r = await raw(`${proxy.url}${path}`);
    expect(r.status).toBe(200);
    expect(status(r)).toBe("edgecache; fwd=bypass; detail=target-too-long");
    await raw(`${proxy.url}${path}`);
    expect(origin.count()).toBe(2);
  });

  it("refuses a backslash in the path and an invalid Host with 400, as the app does", async () => {
    const { origin, proxy } = await setup(counting({ "cache-control": "max-age=60" }));
    const slash = await rawSocket(
      proxy.url,
      `GET /a\\b HTTP/1.1\r\nHost: ${proxy.host}\r\nConnection: close\r\n\r\n`,
    );
    expect(slash).toMatch(/^HTTP\/1.1 400/);
    const host = await raw(`${proxy.url}/x`, { headers: { host: "bad host/../" } });
    expect(host.status).toBe(400);
    expect(origin.count()).toBe(0);
  });

  it.each(["a.1", "x127.0.0.1", "1.2.3.4.5", "1.2.3.256"])(
    "answers a Host the fast path's pattern takes but URL refuses (%s) with 400, and keeps serving",
    async (badHost) => {
      const { origin, proxy } = await setup(counting({ "cache-control": "max-age=60" }));
      await raw(`${proxy.url}/x`);
      // Both paths: over the raw keep-alive path and through node:http (Connection: close).
      for (const connection of ["keep-alive", "close"]) {
        const reply = await rawSocket(
          proxy.url,
          `GET /x HTTP/1.1\r\nHost: ${badHost}\r\nConnection: ${connection}\r\n\r\n` +
            (connection === "keep-alive"
              ? `GET /x HTTP/1.1\r\nHost: ${proxy.host}\r\nConnection: close\r\n\r\n`
              : ""),
        );
        expect(reply).toMatch(/^HTTP\/1.1 400/);
      }
      const after = await raw(`${proxy.url}/x`);
      expect(after.status).toBe(200);
      expect(after.headers["cache-status"]).toMatch(/hit/);
      expect(origin.count()).toBe(1);
    },
  );

  it("a loopback proxy refuses a Host it does not answer to (DNS rebinding) before the origin sees it", async () => {
    const { origin, proxy } = await setup(counting({ "cache-control": "max-age=60" }));
    await raw(`${proxy.url}/page`); // a hit for the raw path to decide on
    for (const method of ["GET", "POST"]) {
      const r = await raw(`${proxy.url}/page`, {
        method,
        headers: { host: "evil.example", origin: "http://evil.example" },
        ...(method === "POST" && { body: "{}" }),
      });
      expect(r.status, method).toBe(403);
      expect(JSON.parse(r.text).error, method).toMatchObject({ code: "E_FORBIDDEN" });
    }
    expect(origin.count()).toBe(1);
    // The hosts its origins are routed by are its own names.
    const routed = await startProxy([{ origin: origin.url, host: "shop.example" }]);
    cleanup.push(() => routed.close());
    expect((await raw(`${routed.url}/page`, { headers: { host: "shop.example" } })).status).toBe(
      200,
    );
    expect((await raw(`${routed.url}/page`, { headers: { host: "evil.example" } })).status).toBe(
      403,
    );
  });

  it("keeps entries apart per Host, so a spoofed Host cannot fill another's entry", async () => {
    const { proxy } = await setup((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=60" });
      res.end(`for ${req.headers["x-forwarded-host"]}`);
    });
    await raw(`${proxy.url}/page`, { headers: { host: "evil.example" } });
    expect((await raw(`${proxy.url}/page`)).text).toBe(`for ${proxy.hostname}`);
  });
});

describe("unkeyed request headers", () => {
  it("does not pass a client's X-Forwarded-Host (or kin) on, so a reflecting origin cannot be poisoned", async () => {
    const { origin, proxy } = await setup((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=60" });
      res.end(`<a href="http://${req.headers["x-forwarded-host"]}/next">`);
    });
    const attack = await raw(`${proxy.url}/home`, {
      headers: {
        "x-forwarded-host": "evil.example",
        forwarded: "host=evil.example",
        "x-original-url": "/admin",
        "x-http-method-override": "DELETE",
      },
    });
    expect(attack.text).not.toContain("evil");
    const victim = await raw(`${proxy.url}/home`);
    expect(victim.text).toBe(`<a href="http://${proxy.hostname}/next">`);
    const seen = origin.requests[0]!.headers;
    expect(seen.forwarded).toBeUndefined();
    expect(seen["x-original-url"]).toBeUndefined();
    expect(seen["x-http-method-override"]).toBeUndefined();
  });

  it("keeps variants apart when the origin names a reflected header in Vary", async () => {
    const { proxy } = await setup((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=60", vary: "X-Theme" });
      res.end(`theme ${req.headers["x-theme"]}`);
    });
    await raw(`${proxy.url}/t`, { headers: { "x-theme": "<script>" } });
    expect((await raw(`${proxy.url}/t`, { headers: { "x-theme": "dark" } })).text).toBe(
      "theme dark",
    );
    expect((await raw(`${proxy.url}/t`)).text).toBe("theme undefined");
  });

  it("serves one entry to requests that differ only in headers outside the key", async () => {
    const { origin, proxy } = await setup(counting({ "cache-control": "max-age=60" }));
    await raw(`${proxy.url}/same`, { headers: { "user-agent": "a", "x-anything": "1" } });
    const other = await raw(`${proxy.url}/same`, { headers: { "user-agent": "b" } });
    expect(status(other)).toMatch(/^edgecache; hit/);
    expect(origin.count()).toBe(1);
  });
});

describe("a broken origin", () => {
  it("answers 502 when the origin cuts a cacheable body short, and stores nothing", async () => {
    const { proxy } = await setup((_, res) => {
      res.writeHead(200, { "cache-control": "max-age=60", "content-length": "1000" });
      res.write("only part");
      setTimeout(() => res.destroy(), 10);
    });
    const r = await raw(`${proxy.url}/cut`);
    expect(r.status).toBe(502);
    expect([...proxy.node.cache.keys({ prefix: "/cut" })]).toEqual([]);
  });

  it("survives an origin that closes the connection without answering", async () => {
    const { proxy } = await setup((req) => {
      req.socket.destroy();
    });
    expect((await raw(`${proxy.url}/x`)).status).toBe(502);
    expect((await raw(`${proxy.url}/x`)).status).toBe(502);
  });

  // An odd final status with explicit freshness is reusable (RFC 9111 3): proxy-status.test.ts.
  it("does not store a 206 (partial responses are not stored)", async () => {
    const { origin, proxy } = await setup((_, res) => {
      res.writeHead(206, { "cache-control": "max-age=60" });
      res.end("x");
    });
    for (const p of ["/partial", "/partial"]) await raw(`${proxy.url}${p}`);
    expect(origin.count()).toBe(2);
  });
});

describe("a request body on a method that takes none", () => {
  // A GET, HEAD or TRACE body has no meaning (RFC 9110 9.3.1, 9.3.2, 9.3.8); forwarding its
  // framing without it kept the origin waiting, and every client of that URL with it.
  it.each([
    ["GET", { "content-length": "1" }],
    ["GET", { "transfer-encoding": "chunked" }],
    ["HEAD", { "content-length": "1" }],
    ["TRACE", { "content-length": "1" }],
  ])(
    "%s with %o reaches the origin without a body, and a plain GET of that URL meanwhile is answered",
    async (method, framing) => {
      const { origin, proxy } = await setup(counting({ "cache-control": "max-age=60" }));
      const [withBody, plain] = await Promise.all([
        raw(`${proxy.url}/victim`, { method, headers: framing, body: "x" }),
        raw(`${proxy.url}/victim`),
      ]);
      expect(withBody.status).toBe(200);
      expect(plain.status).toBe(200);
      for (const r of origin.requests) {
        expect(r.headers["content-length"]).toBeUndefined();
        expect(r.headers["transfer-encoding"]).toBeUndefined();
        expect(r.body).toBe("");
      }
    },
    10_000,
  );
});
