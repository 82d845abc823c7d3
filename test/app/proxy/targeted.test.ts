import { describe, expect, it } from "vitest";
import { counting, proxied, SECOND, cacheStatusOf as status } from "./harness.ts";

// Targeted cache-control (RFC 9213) against a real origin: CDN-Cache-Control and
// Edgecache-Cache-Control decide for edgecache in place of Cache-Control.

describe("targeted cache-control (RFC 9213 2.1)", () => {
  it("stores a CDN-style response (Cache-Control: no-store for browsers, CDN-Cache-Control: max-age=60 for the cache) and passes both on", async () => {
    const { origin, proxy, get } = await proxied(
      counting({ "cache-control": "no-store", "cdn-cache-control": "max-age=60" }),
    );
    const miss = await get("/cdn");
    expect(status(miss)).toBe("edgecache; fwd=uri-miss; stored; ttl=60");
    proxy.clock.advance(30 * SECOND);
    const hit = await get("/cdn");
    expect(status(hit)).toBe("edgecache; hit; ttl=30");
    // Browsers still get the origin's Cache-Control; CDN-Cache-Control targets every CDN,
    // so it goes on for one further down.
    expect(hit.headers["cache-control"]).toBe("no-store");
    expect(hit.headers["cdn-cache-control"]).toBe("max-age=60");
    expect(origin.count()).toBe(1);
    proxy.clock.advance(31 * SECOND);
    expect(status(await get("/cdn"))).toMatch(/^edgecache; fwd=uri-miss; stored/);
  });

  it.each(["no-store", "no-cache", "private"])(
    "lets CDN-Cache-Control: %s override a fresh Cache-Control: max-age",
    async (directive) => {
      const { origin, get } = await proxied(
        counting({ "cache-control": "max-age=600", "cdn-cache-control": directive }),
      );
      await get("/over");
      expect(status(await get("/over"))).toMatch(/^edgecache; fwd=(uri-miss|stale)/);
      expect(origin.count()).toBe(2);
    },
  );

  it("takes Edgecache-Cache-Control over CDN-Cache-Control, and never sends it to clients (it targets edgecache alone)", async () => {
    const { origin, proxy, get } = await proxied(
      counting({
        "cache-control": "no-store",
        "cdn-cache-control": "no-store",
        "edgecache-cache-control": "max-age=120",
      }),
    );
    const miss = await get("/own");
    expect(status(miss)).toBe("edgecache; fwd=uri-miss; stored; ttl=120");
    expect(miss.headers["edgecache-cache-control"]).toBeUndefined();
    proxy.clock.advance(60 * SECOND);
    const hit = await get("/own");
    expect(status(hit)).toBe("edgecache; hit; ttl=60");
    expect(hit.headers["edgecache-cache-control"]).toBeUndefined();
    expect(hit.headers["cdn-cache-control"]).toBe("no-store");
    expect(origin.count()).toBe(1);
  });

  it("ignores Expires when a targeted field is in effect", async () => {
    const { origin, get } = await proxied(
      counting({
        expires: new Date(Date.now() + 3600 * SECOND).toUTCString(),
        "cdn-cache-control": "no-cache",
      }),
    );
    await get("/exp");
    await get("/exp");
    expect(origin.count()).toBe(2);
  });

  it("ignores a targeted field that is not a valid structured Dictionary, and falls back to Cache-Control", async () => {
    const { origin, get } = await proxied(
      counting({ "cache-control": "max-age=60", "cdn-cache-control": "Max-Age=0; no-store" }),
    );
    await get("/bad");
    expect(status(await get("/bad"))).toMatch(/^edgecache; hit; ttl=60$/);
    expect(origin.count()).toBe(1);
  });

  it.each(['max-age="10000"', "max-age", "s-maxage=1.5"])(
    "ignores a targeted field whose time directive is not an Integer (%s), and falls back to Cache-Control (RFC 9213 2.1)",
    async (targeted) => {
      const { origin, get } = await proxied(
        counting({ "cache-control": "no-store", "cdn-cache-control": targeted }),
      );
      await get("/typed");
      await get("/typed");
      expect(origin.count()).toBe(2);
    },
  );

  it("keeps obeying the stored targeted field when a 304 repeats only Cache-Control: no-store (RFC 9111 4.3.4)", async () => {
    const { origin, proxy, get } = await proxied((req, res) => {
      const headers = { etag: '"t1"', "cache-control": "no-store" };
      if (req.headers["if-none-match"] === '"t1"') {
        res.writeHead(304, headers);
        res.end();
        return;
      }
      res.writeHead(200, { ...headers, "edgecache-cache-control": "max-age=10" });
      res.end("targeted body");
    });
    await get("/reval");
    proxy.clock.advance(11 * SECOND);
    const refreshed = await get("/reval");
    expect(refreshed.text).toBe("targeted body");
    expect(status(refreshed)).toBe("edgecache; fwd=stale; fwd-status=304; stored; ttl=10");
    expect(status(await get("/reval"))).toMatch(/^edgecache; hit/);
    expect(origin.count()).toBe(2);
  });

  it("answers a request with Authorization from a response whose targeted field says public (RFC 9111 3.5)", async () => {
    const { origin, get } = await proxied(
      counting({ "cache-control": "no-store", "cdn-cache-control": "public, max-age=60" }),
    );
    await get("/auth", { authorization: "Bearer a" });
    expect(status(await get("/auth", { authorization: "Bearer b" }))).toMatch(/^edgecache; hit/);
    expect(origin.count()).toBe(1);
  });
});
