import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { NodeProxyOptions } from "../../../src/adapter/node/modes/proxy.ts";
import {
  counting,
  type Origin,
  type OriginHandler,
  type ProxyHarness,
  type RawReply,
  raw,
  SECOND,
  startOrigin,
  startProxy,
} from "./harness.ts";

// Proxy mode against a real origin server, over real sockets, one RFC 9111 rule a test.
// Time moves on a fake clock; the origin counts what reaches it.

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function setup(
  handler?: OriginHandler,
  options: Partial<NodeProxyOptions> & { ttl?: number } = {},
): Promise<{ origin: Origin; proxy: ProxyHarness; get: Get }> {
  const origin = await startOrigin(handler);
  cleanup.push(() => origin.close());
  const { ttl, ...rest } = options;
  const proxy = await startProxy([{ origin: origin.url, ...(ttl !== undefined && { ttl }) }], rest);
  cleanup.push(() => proxy.close());
  const get: Get = (path, headers = {}, method = "GET") =>
    raw(`${proxy.url}${path}`, { method, headers });
  return { origin, proxy, get };
}

type Get = (path: string, headers?: Record<string, string>, method?: string) => Promise<RawReply>;

const status = (r: { headers: Record<string, unknown> }) => String(r.headers["cache-status"]);

describe("freshness (RFC 9111 4.2)", () => {
  it("serves a max-age response from the cache until it expires, then revalidates", async () => {
    const { origin, proxy, get } = await setup(counting({ "cache-control": "max-age=60" }));
    const miss = await get("/a");
    expect(status(miss)).toBe("edgecache; fwd=uri-miss; stored; ttl=60");
    expect(miss.headers.age).toBe("0");
    proxy.clock.advance(30 * SECOND);
    const hit = await get("/a");
    expect(hit.text).toBe(miss.text);
    expect(status(hit)).toBe("edgecache; hit; ttl=30");
    expect(hit.headers.age).toBe("30");
    expect(origin.count("/a")).toBe(1);
    proxy.clock.advance(31 * SECOND);
    const refetched = await get("/a");
    expect(JSON.parse(refetched.text).n).toBe(2);
    // Without a validator nothing is kept past freshness: a plain miss.
    expect(status(refetched)).toBe("edgecache; fwd=uri-miss; stored; ttl=60");
  });

  it("takes s-maxage over max-age in a shared cache", async () => {
    const { origin, proxy, get } = await setup(
      counting({ "cache-control": "max-age=1, s-maxage=100" }),
    );
    await get("/s");
    proxy.clock.advance(50 * SECOND);
    expect(status(await get("/s"))).toBe("edgecache; hit; ttl=50");
    expect(origin.count()).toBe(1);
  });

  it("computes freshness from Expires against the origin's Date", async () => {
    const { origin, proxy, get } = await setup((_, res) => {
      const date = Date.now() - 10 * SECOND; // the origin's clock is 10 s behind ours
      res.writeHead(200, {
        date: new Date(date).toUTCString(),
        expires: new Date(date + 40 * SECOND).toUTCString(),
      });
      res.end("x");
    });
    expect(status(await get("/e"))).toMatch(/stored; ttl=(39|40)$/);
    proxy.clock.advance(35 * SECOND);
    expect(status(await get("/e"))).toMatch(/^edgecache; hit/);
    proxy.clock.advance(10 * SECOND);
    await get("/e");
    expect(origin.count()).toBe(2);
  });

  it("counts the origin's Age against freshness and in the Age it sends", async () => {
    const { proxy, get } = await setup(counting({ "cache-control": "max-age=60", age: "50" }));
    const miss = await get("/age");
    expect(status(miss)).toBe("edgecache; fwd=uri-miss; stored; ttl=10");
    expect(miss.headers.age).toBe("50");
    proxy.clock.advance(5 * SECOND);
    const hit = await get("/age");
    expect(hit.headers.age).toBe("55");
    expect(status(hit)).toBe("edgecache; hit; ttl=5");
  });

  it("uses the Last-Modified heuristic only for heuristically cacheable statuses", async () => {
    const lastModified = new Date(Date.now() - 100 * 3600 * SECOND).toUTCString();
    const { origin, proxy, get } = await setup((req, res) => {
      res.writeHead(req.url === "/found" ? 302 : 200, {
        "last-modified": lastModified,
        location: "/elsewhere",
      });
      res.end("x");
    });
    // 10% of the 100 hours since the last change: 10 hours.
    expect(status(await get("/ok"))).toMatch(/stored; ttl=(3599\d|36000)$/);
    proxy.clock.advance(9 * 3600 * SECOND);
    expect(status(await get("/ok"))).toMatch(/^edgecache; hit/);
    // A 302 without explicit freshness is not cacheable by default (RFC 9110 15.4.3).
    await get("/found");
    expect(status(await get("/found"))).toMatch(/^edgecache; fwd=uri-miss; detail=/);
    expect(origin.count("/found")).toBe(2);
  });

  it("gives responses without explicit freshness the route's TTL instead of the heuristic", async () => {
    const { origin, proxy, get } = await setup(counting({}), { ttl: 120 });
    expect(status(await get("/t"))).toBe("edgecache; fwd=uri-miss; stored; ttl=120");
    proxy.clock.advance(100 * SECOND);
    expect(status(await get("/t"))).toMatch(/^edgecache; hit/);
    expect(origin.count()).toBe(1);
  });

  it("does not store a response without freshness or validators", async () => {
    const { origin, get } = await setup(counting({}));
    await get("/n");
    expect(status(await get("/n"))).toBe("edgecache; fwd=uri-miss; detail=not-fresh");
    expect(origin.count()).toBe(2);
  });
});

describe("what is not stored (RFC 9111 3)", () => {
  it.each([
    ["no-store", "no-store, max-age=60"],
    ["private", "private, max-age=60"],
  ])("never stores a %s response, and says so in Cache-Status", async (reason, cc) => {
    const { origin, get } = await setup(counting({ "cache-control": cc }));
    await get("/p");
    const second = await get("/p");
    expect(JSON.parse(second.text).n).toBe(2);
    expect(status(second)).toBe(`edgecache; fwd=uri-miss; detail=${reason}`);
    expect(origin.count()).toBe(2);
  });

  it("never stores a response that sets a cookie", async () => {
    const { origin, get } = await setup(
      counting({ "cache-control": "public, max-age=60", "set-cookie": ["a=1", "b=2"] }),
    );
    const first = await get("/c");
    expect(first.headers["set-cookie"]).toEqual(["a=1", "b=2"]);
    await get("/c");
    expect(origin.count()).toBe(2);
  });

  it("stores a response to a request with Authorization only when the response allows it", async () => {
    const { origin, get } = await setup((req, res) => {
      const cc = req.url === "/shared" ? "s-maxage=60" : "max-age=60";
      res.writeHead(200, { "cache-control": cc });
      res.end(`for ${req.headers.authorization ?? "anyone"}`);
    });
    const auth = { authorization: "Bearer alice" };
    await get("/personal", auth);
    const other = await get("/personal", { authorization: "Bearer bob" });
    expect(other.text).toBe("for Bearer bob");
    expect(status(other)).toBe("edgecache; fwd=uri-miss; detail=authorization");
    expect(origin.count("/personal")).toBe(2);

    await get("/shared", auth);
    const anonymous = await get("/shared");
    expect(status(anonymous)).toMatch(/^edgecache; hit/);
    expect((await get("/shared", { authorization: "Bearer bob" })).text).toBe("for Bearer alice");
    expect(origin.count("/shared")).toBe(1);
  });

  it("does not answer a request with Authorization from an entry not marked shareable", async () => {
    const { origin, get } = await setup(counting({ "cache-control": "max-age=60" }));
    await get("/anon");
    const authorized = await get("/anon", { authorization: "Bearer x" });
    expect(status(authorized)).toMatch(/fwd=request/);
    expect(origin.count()).toBe(2);
  });
});

describe("no-cache and must-revalidate (RFC 9111 5.2)", () => {
  it("revalidates a request with Cache-Control: no-cache, and a 304 keeps the body", async () => {
    const { origin, get } = await setup((req, res) => {
      if (req.headers["if-none-match"] === '"v1"') {
        res.writeHead(304, { etag: '"v1"', "cache-control": "max-age=60" });
        res.end();
        return;
      }
      res.writeHead(200, { etag: '"v1"', "cache-control": "max-age=60" });
      res.end("body v1");
    });
    await get("/r");
    const revalidated = await get("/r", { "cache-control": "no-cache" });
    expect(revalidated.text).toBe("body v1");
    expect(status(revalidated)).toBe("edgecache; fwd=request; fwd-status=304; stored; ttl=60");
    expect(origin.requests[1]!.headers["if-none-match"]).toBe('"v1"');
    const pragma = await get("/r", { pragma: "no-cache" });
    expect(status(pragma)).toMatch(/fwd=request/);
  });

  it("revalidates a no-cache response on every request", async () => {
    const { origin, get } = await setup((req, res) => {
      const headers = { etag: '"e"', "cache-control": "no-cache" };
      res.writeHead(req.headers["if-none-match"] === '"e"' ? 304 : 200, headers);
      res.end(req.headers["if-none-match"] ? undefined : "stored body");
    });
    await get("/nc");
    const second = await get("/nc");
    expect(second.text).toBe("stored body");
    expect(status(second)).toMatch(/^edgecache; fwd=stale; fwd-status=304; stored; ttl=0$/);
    expect(origin.count()).toBe(2);
    expect(origin.requests[1]!.headers["if-none-match"]).toBe('"e"');
  });

  it("serves a must-revalidate response while fresh, never stale when the origin is down", async () => {
    const { origin, proxy, get } = await setup(
      counting({ "cache-control": "max-age=10, must-revalidate, stale-if-error=600" }),
      { grace: 600 },
    );
    await get("/m");
    expect(status(await get("/m"))).toMatch(/^edgecache; hit/);
    await origin.close();
    proxy.clock.advance(11 * SECOND);
    const down = await get("/m");
    expect(down.status).toBe(502);
    expect(JSON.parse(down.text).error.code).toBe("E_ORIGIN_UNAVAILABLE");
  });

  it("honours the request's max-age and min-fresh", async () => {
    const { origin, proxy, get } = await setup(counting({ "cache-control": "max-age=100" }));
    await get("/q");
    proxy.clock.advance(20 * SECOND);
    expect(status(await get("/q", { "cache-control": "max-age=30" }))).toMatch(/^edgecache; hit/);
    expect(status(await get("/q", { "cache-control": "max-age=10" }))).toMatch(/fwd=request/);
    expect(status(await get("/q", { "cache-control": "min-fresh=200" }))).toMatch(/fwd=request/);
    expect(origin.count()).toBe(3);
  });

  it("answers only-if-cached with 504 when nothing is stored", async () => {
    const { origin, get } = await setup();
    const r = await get("/none", { "cache-control": "only-if-cached" });
    expect(r.status).toBe(504);
    expect(origin.count()).toBe(0);
  });
});

describe("revalidation (RFC 9111 4.3)", () => {
  it("refreshes stored headers and freshness from a 304", async () => {
    let version = 1;
    const { origin, proxy, get } = await setup((req, res) => {
      if (req.headers["if-none-match"] === '"same"') {
        res.writeHead(304, {
          etag: '"same"',
          "cache-control": "max-age=300",
          "x-version": String(version),
        });
        res.end();
        return;
      }
      res.writeHead(200, { etag: '"same"', "cache-control": "max-age=10", "x-version": "1" });
      res.end("the body");
    });
    await get("/v");
    version = 2;
    proxy.clock.advance(11 * SECOND);
    const refreshed = await get("/v");
    expect(refreshed.text).toBe("the body");
    expect(refreshed.headers["x-version"]).toBe("2");
    expect(status(refreshed)).toBe("edgecache; fwd=stale; fwd-status=304; stored; ttl=300");
    proxy.clock.advance(200 * SECOND);
    const hit = await get("/v");
    expect(status(hit)).toMatch(/^edgecache; hit; ttl=100$/);
    expect(hit.headers["x-version"]).toBe("2");
    expect(origin.count()).toBe(2);
  });

  it("does not reuse the stored body when a 304 names another validator; asks again unconditionally", async () => {
    const { origin, proxy, get } = await setup((req, res) => {
      if (req.headers["if-none-match"]) {
        res.writeHead(304, { etag: '"v2"', "cache-control": "max-age=60" });
        res.end();
        return;
      }
      const first = origin.count() === 1;
      res.writeHead(200, { etag: first ? '"v1"' : '"v2"', "cache-control": "max-age=10" });
      res.end(first ? "old body" : "new body");
    });
    expect((await get("/mismatch")).text).toBe("old body");
    proxy.clock.advance(11 * SECOND);
    const r = await get("/mismatch");
    expect(r.text).toBe("new body");
    expect(origin.requests.map((q) => q.headers["if-none-match"])).toEqual([
      undefined,
      '"v1"',
      undefined,
    ]);
    expect(status(await get("/mismatch"))).toMatch(/^edgecache; hit/);
  });

  it("revalidates with If-Modified-Since when the origin gave only Last-Modified", async () => {
    const lastModified = new Date(Date.now() - 3600 * SECOND).toUTCString();
    const { origin, proxy, get } = await setup((req, res) => {
      const unchanged = req.headers["if-modified-since"] === lastModified;
      res.writeHead(unchanged ? 304 : 200, {
        "last-modified": lastModified,
        "cache-control": "max-age=5",
      });
      res.end(unchanged ? undefined : "dated");
    });
    await get("/lm");
    proxy.clock.advance(6 * SECOND);
    const r = await get("/lm");
    expect(r.text).toBe("dated");
    expect(origin.requests[1]!.headers["if-modified-since"]).toBe(lastModified);
    expect(status(r)).toMatch(/fwd-status=304/);
  });

  it("answers a client's If-None-Match and If-Modified-Since from the cache with 304", async () => {
    const lastModified = new Date(Date.now() - 3600 * SECOND).toUTCString();
    const { get } = await setup(
      counting({ etag: '"t"', "last-modified": lastModified, "cache-control": "max-age=60" }),
    );
    await get("/cond");
    const inm = await get("/cond", { "if-none-match": 'W/"t"' });
    expect(inm.status).toBe(304);
    expect(inm.body.byteLength).toBe(0);
    const ims = await get("/cond", { "if-modified-since": new Date().toUTCString() });
    expect(ims.status).toBe(304);
    const older = await get("/cond", {
      "if-modified-since": new Date(Date.now() - 7200 * SECOND).toUTCString(),
    });
    expect(older.status).toBe(200);
  });
});

describe("stale-while-revalidate and stale-if-error (RFC 5861)", () => {
  it("serves a stale response at once and refreshes it in the background, once", async () => {
    const count = counting({ "cache-control": "max-age=10, stale-while-revalidate=60" });
    const { origin, proxy, get } = await setup(async (req, res) => {
      await sleep(50); // the refresh is still running while the stale copies go out
      await count(req, res);
    });
    await get("/swr");
    proxy.clock.advance(15 * SECOND);
    const stale = await Promise.all([get("/swr"), get("/swr"), get("/swr")]);
    for (const r of stale) {
      expect(JSON.parse(r.text).n).toBe(1);
      expect(status(r)).toBe("edgecache; hit; ttl=-5");
    }
    await proxy.node.proxy.drain();
    expect(origin.count()).toBe(2);
    const fresh = await get("/swr");
    expect(JSON.parse(fresh.text).n).toBe(2);
    expect(status(fresh)).toMatch(/^edgecache; hit; ttl=10$/);
    proxy.clock.advance(100 * SECOND);
    expect(JSON.parse((await get("/swr")).text).n).toBe(3); // past the window: a miss
  });

  it("serves stored content when the origin is down, within stale-if-error", async () => {
    const { origin, proxy, get } = await setup(
      counting({ "cache-control": "max-age=10, stale-if-error=60" }),
    );
    const first = await get("/sie");
    await origin.close();
    proxy.clock.advance(30 * SECOND);
    const stale = await get("/sie");
    expect(stale.status).toBe(200);
    expect(stale.text).toBe(first.text);
    expect(status(stale)).toBe("edgecache; fwd=stale; ttl=-20; detail=stale-if-error");
    proxy.clock.advance(60 * SECOND);
    expect((await get("/sie")).status).toBe(502);
    expect(proxy.node.cache.stats().staleHits).toBe(1);
  });

  it("serves stored content when the origin answers 5xx, and does not store the error", async () => {
    let failing = false;
    const { proxy, get } = await setup((_, res) => {
      res.writeHead(failing ? 503 : 200, {
        "cache-control": failing ? "no-store" : "max-age=10, stale-if-error=60",
      });
      res.end(failing ? "down for maintenance" : "good");
    });
    await get("/5xx");
    failing = true;
    proxy.clock.advance(20 * SECOND);
    const r = await get("/5xx");
    expect(r.text).toBe("good");
    expect(status(r)).toBe("edgecache; fwd=stale; fwd-status=503; ttl=-10; detail=stale-if-error");
    failing = false;
    expect((await get("/5xx")).text).toBe("good");
  });

  it("applies the configured grace where no directive forbids stale content", async () => {
    const { origin, proxy, get } = await setup(
      (req, res) => {
        const cc = req.url === "/smax" ? "s-maxage=10" : "max-age=10";
        res.writeHead(200, { "cache-control": cc });
        res.end("kept");
      },
      { grace: 300 },
    );
    await get("/graced");
    await get("/smax");
    await origin.close();
    proxy.clock.advance(200 * SECOND);
    expect((await get("/graced")).text).toBe("kept");
    // s-maxage carries proxy-revalidate (RFC 9111 5.2.2.10): no grace for it.
    expect((await get("/smax")).status).toBe(502);
  });

  it("passes an origin 5xx through when nothing is stored", async () => {
    const { get } = await setup((_, res) => {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end("boom");
    });
    const r = await get("/err");
    expect(r.status).toBe(500);
    expect(r.text).toBe("boom");
    // RFC 9111 3: a 500 is stored only with explicit freshness, and this one has none.
    expect(status(r)).toBe("edgecache; fwd=uri-miss; detail=uncacheable-status");
  });
});

describe("Vary (RFC 9111 4.1)", () => {
  it("keeps one variant per value of the Vary'd request header", async () => {
    const { origin, get } = await setup((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=60", vary: "Accept-Language" });
      res.end(`lang=${req.headers["accept-language"] ?? "none"}`);
    });
    expect((await get("/vary", { "accept-language": "en" })).text).toBe("lang=en");
    expect((await get("/vary", { "accept-language": "fr" })).text).toBe("lang=fr");
    expect((await get("/vary")).text).toBe("lang=none");
    const en = await get("/vary", { "accept-language": "en" });
    expect(en.text).toBe("lang=en");
    expect(status(en)).toMatch(/^edgecache; hit/);
    expect((await get("/vary", { "accept-language": "fr" })).text).toBe("lang=fr");
    expect(status(await get("/vary", { "accept-language": "de" }))).toMatch(/fwd=vary-miss/);
    expect(origin.count()).toBe(4);
  });

  it("never serves a Vary: * response from the cache", async () => {
    const { origin, get } = await setup(counting({ "cache-control": "max-age=60", vary: "*" }));
    await get("/star");
    await get("/star");
    expect(origin.count()).toBe(2);
  });

  it("keys Vary'd credentials by digest, never in clear", async () => {
    const { proxy, get } = await setup((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=60", vary: "Cookie" });
      res.end(`cookie=${req.headers.cookie}`);
    });
    expect((await get("/me", { cookie: "session=alice" })).text).toBe("cookie=session=alice");
    expect((await get("/me", { cookie: "session=bob" })).text).toBe("cookie=session=bob");
    expect((await get("/me", { cookie: "session=alice" })).text).toBe("cookie=session=alice");
    const keys = [...proxy.node.cache.keys({ prefix: "" })];
    expect(keys.join("\n")).not.toContain("alice");
  });
});

describe("unsafe methods (RFC 9111 4.4)", () => {
  it("invalidates the target URI, every variant, and a same-origin Location", async () => {
    const { origin, get } = await setup((req, res) => {
      if (req.method === "POST") {
        res.writeHead(201, { location: "/items/7" });
        res.end("created");
        return;
      }
      res.writeHead(200, { "cache-control": "max-age=600", vary: "accept" });
      res.end(`${req.url} ${origin.count(req.url)}`);
    });
    await get("/items", { accept: "a" });
    await get("/items", { accept: "b" });
    await get("/items/7");
    const post = await get("/items", {}, "POST");
    expect(post.status).toBe(201);
    expect(status(post)).toBe("edgecache; fwd=method; detail=method");
    expect(status(await get("/items", { accept: "a" }))).toMatch(/fwd=(uri|vary)-miss; stored/);
    expect(status(await get("/items", { accept: "b" }))).toMatch(/fwd=(uri|vary)-miss; stored/);
    expect(status(await get("/items/7"))).toMatch(/fwd=uri-miss; stored/);
  });

  it("does not store a POST response for later GETs, Content-Location and max-age or not", async () => {
    // RFC 9110 9.3.3 allows it; a deliberate choice (docs/guides/proxy.md, cache-tests method-POST).
    const { origin, get } = await setup((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=3600", "content-location": req.url! });
      res.end(`${req.method} ${origin.count()}`);
    });
    expect((await get("/form", {}, "POST")).text).toBe("POST 1");
    const after = await get("/form");
    expect(after.text).toBe("GET 2");
    expect(status(after)).toMatch(/fwd=uri-miss; stored/);
  });

  it.each(["PUT", "PATCH", "DELETE"])("a successful %s invalidates its URI", async (method) => {
    const { get } = await setup(counting({ "cache-control": "max-age=600" }));
    await get("/thing");
    await get("/thing", {}, method);
    expect(status(await get("/thing"))).toMatch(/fwd=uri-miss; stored/);
  });

  it("a failed write invalidates nothing", async () => {
    const { get } = await setup((req, res) => {
      res.writeHead(req.method === "GET" ? 200 : 409, { "cache-control": "max-age=600" });
      res.end("x");
    });
    await get("/kept");
    expect((await get("/kept", {}, "DELETE")).status).toBe(409);
    expect(status(await get("/kept"))).toMatch(/^edgecache; hit/);
  });

  it("passes each write to the origin, with its body, never coalesced", async () => {
    const { origin, proxy } = await setup(async (req, res) => {
      await sleep(50);
      res.writeHead(200);
      res.end(req.body);
    });
    const posts = await Promise.all(
      [1, 2, 3].map((i) => raw(`${proxy.url}/w`, { method: "POST", body: `body ${i}` })),
    );
    expect(posts.map((p) => p.text)).toEqual(["body 1", "body 2", "body 3"]);
    expect(origin.count("/w")).toBe(3);
  });
});

describe("request coalescing", () => {
  it("makes one origin request for concurrent misses of one key", async () => {
    const { origin, get } = await setup(async (_, res) => {
      await sleep(100);
      res.writeHead(200, { "cache-control": "max-age=60" });
      res.end("slow");
    });
    const replies = await Promise.all(Array.from({ length: 20 }, () => get("/slow")));
    expect(replies.every((r) => r.text === "slow" && r.status === 200)).toBe(true);
    expect(origin.count("/slow")).toBe(1);
  });

  it("gives each waiting request its own origin request when the response is not shareable", async () => {
    const { origin, get } = await setup(async (req, res) => {
      await sleep(50);
      res.writeHead(200, { "cache-control": "private" });
      res.end(`for ${req.headers.cookie}`);
    });
    const replies = await Promise.all(["a", "b", "c"].map((u) => get("/private", { cookie: u })));
    expect(replies.map((r) => r.text)).toEqual(["for a", "for b", "for c"]);
    expect(origin.count()).toBe(3);
  });

  it("does not hand one Vary variant to a request for another", async () => {
    const { origin, get } = await setup(async (req, res) => {
      await sleep(50);
      res.writeHead(200, { "cache-control": "max-age=60", vary: "accept-language" });
      res.end(String(req.headers["accept-language"]));
    });
    const [en, fr] = await Promise.all([
      get("/lang", { "accept-language": "en" }),
      get("/lang", { "accept-language": "fr" }),
    ]);
    expect([en.text, fr.text]).toEqual(["en", "fr"]);
    expect(origin.count()).toBe(2);
  });
});

describe("headers on the way through", () => {
  it("strips hop-by-hop headers both ways and adds Via (RFC 9110 7.6)", async () => {
    const { origin, get } = await setup((_, res) => {
      res.setHeader("connection", "x-origin-private");
      res.setHeader("x-origin-private", "secret");
      res.setHeader("keep-alive", "timeout=5");
      res.setHeader("cache-control", "max-age=60");
      res.end("hop");
    });
    const r = await get("/hop", {
      connection: "x-client-private",
      "x-client-private": "1",
      te: "trailers",
      "proxy-authorization": "Basic abc",
      // End to end, and one a read's origin request carries (see proxy-forwarded-headers).
      "accept-language": "kept",
    });
    const seen = origin.requests[0]!.headers;
    expect(seen["x-client-private"]).toBeUndefined();
    expect(seen.te).toBeUndefined();
    expect(seen["proxy-authorization"]).toBeUndefined();
    expect(seen["accept-language"]).toBe("kept");
    expect(seen.via).toBe("1.1 edgecache");
    expect(r.headers["x-origin-private"]).toBeUndefined();
    expect(r.headers.via).toBe("1.1 edgecache");
    const hit = await get("/hop");
    expect(hit.headers["x-origin-private"]).toBeUndefined();
    expect(status(hit)).toMatch(/^edgecache; hit/);
  });

  it("puts Age and Cache-Status on every response, errors and writes included", async () => {
    const { get } = await setup(counting({ "cache-control": "max-age=60" }));
    for (const r of [await get("/x"), await get("/x"), await get("/x", {}, "POST")]) {
      expect(status(r)).toMatch(/^edgecache; /);
    }
    expect((await get("/x")).headers.age).toMatch(/^\d+$/);
  });

  it("answers HEAD from a stored GET, and fetches a GET to store on a HEAD miss", async () => {
    const { origin, get } = await setup(counting({ "cache-control": "max-age=60" }));
    const head = await get("/h", {}, "HEAD");
    expect(head.status).toBe(200);
    expect(head.body.byteLength).toBe(0);
    expect(origin.requests[0]!.method).toBe("GET");
    const body = await get("/h");
    expect(status(body)).toMatch(/^edgecache; hit/);
    expect(Number((await get("/h", {}, "HEAD")).headers["content-length"])).toBe(
      body.body.byteLength,
    );
  });
});

describe("large bodies", () => {
  const big = "0123456789abcdef".repeat(8 * 1024); // 128 KiB

  it.each([
    ["with a Content-Length", true],
    ["chunked, length unknown", false],
  ])("streams a body over maxCacheableSize without storing it (%s)", async (_, sized) => {
    const { origin, proxy, get } = await setup(
      (_, res) => {
        res.writeHead(200, {
          "cache-control": "max-age=60",
          ...(sized && { "content-length": String(big.length) }),
        });
        // In pieces, so the proxy reads it as it comes.
        for (let i = 0; i < big.length; i += 16 * 1024) res.write(big.slice(i, i + 16 * 1024));
        res.end();
      },
      { maxCacheableSize: 32 * 1024 },
    );
    const first = await get("/big");
    expect(first.text).toBe(big);
    expect(status(first)).toBe("edgecache; fwd=uri-miss; detail=too-large");
    expect((await get("/big")).text).toBe(big);
    expect(origin.count()).toBe(2);
    expect(proxy.node.cache.stats().tiers[0]!.entries).toBe(0);
  });

  it("stores a body up to maxCacheableSize", async () => {
    const { origin, get } = await setup(
      (_, res) => {
        res.writeHead(200, { "cache-control": "max-age=60" });
        res.end(big.slice(0, 32 * 1024));
      },
      { maxCacheableSize: 32 * 1024 },
    );
    await get("/fits");
    expect((await get("/fits")).text).toBe(big.slice(0, 32 * 1024));
    expect(origin.count()).toBe(1);
  });
});

describe("routes", () => {
  it("routes by host and path prefix, each origin with its own entries and TTL", async () => {
    const a = await startOrigin(counting({}));
    const b = await startOrigin(counting({}));
    cleanup.push(
      () => a.close(),
      () => b.close(),
    );
    const proxy = await startProxy([
      { origin: a.url, pathPrefix: "/api", ttl: 10 },
      { origin: b.url, host: "b.example", ttl: 100 },
    ]);
    cleanup.push(() => proxy.close());
    const onA = await raw(`${proxy.url}/api/x`);
    const onB = await raw(`${proxy.url}/api/x`, { headers: { host: "b.example" } });
    expect(status(onA)).toMatch(/ttl=10$/);
    expect(status(onB)).toMatch(/ttl=100$/);
    expect([a.count(), b.count()]).toEqual([1, 1]);
    const none = await raw(`${proxy.url}/other`);
    expect(none.status).toBe(404);
    expect(JSON.parse(none.text).error.code).toBe("E_NOT_FOUND");
  });
});
