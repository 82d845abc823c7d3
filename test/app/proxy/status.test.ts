import { describe, expect, it } from "vitest";
import { counting, proxied, SECOND, cacheStatusOf as status } from "./harness.ts";

// RFC 9111 3: a shared cache may store any final response it understands when it has
// explicit freshness; must-understand (5.2.2.3). Against a real origin.

describe("reusable statuses (RFC 9111 3)", () => {
  it.each([400, 500, 502, 503, 504, 299, 599])(
    "reuses a %i with explicit freshness (max-age)",
    async (code) => {
      const { origin, proxy, get } = await proxied(
        counting({ "cache-control": "max-age=60" }, code),
      );
      const miss = await get("/status");
      expect(miss.status).toBe(code);
      expect(status(miss)).toBe("edgecache; fwd=uri-miss; stored; ttl=60");
      proxy.clock.advance(30 * SECOND);
      const hit = await get("/status");
      expect(hit.status).toBe(code);
      expect(hit.text).toBe(miss.text);
      expect(status(hit)).toBe("edgecache; hit; ttl=30");
      expect(origin.count()).toBe(1);
    },
  );

  it("reuses a 404 with s-maxage, and a 500 with Expires", async () => {
    const { origin, get } = await proxied((req, res) => {
      if (req.url === "/s") res.writeHead(404, { "cache-control": "s-maxage=60" });
      else res.writeHead(500, { expires: new Date(Date.now() + 60 * SECOND).toUTCString() });
      res.end("x");
    });
    for (const path of ["/s", "/e"]) {
      await get(path);
      expect(status(await get(path))).toMatch(/^edgecache; hit/);
    }
    expect(origin.count()).toBe(2);
  });

  it("gives an unknown status marked public heuristic freshness (RFC 9111 4.2.2): the route's ttl", async () => {
    const { origin, get } = await proxied(counting({ "cache-control": "public" }, 299), {
      ttl: 30,
    });
    expect(status(await get("/pub"))).toBe("edgecache; fwd=uri-miss; stored; ttl=30");
    expect(status(await get("/pub"))).toMatch(/^edgecache; hit/);
    expect(origin.count()).toBe(1);
  });

  it("still does not store an error without explicit freshness", async () => {
    const { origin, get } = await proxied(counting({}, 503), { ttl: 30 });
    await get("/plain-error");
    expect(status(await get("/plain-error"))).toBe(
      "edgecache; fwd=uri-miss; detail=uncacheable-status",
    );
    expect(origin.count()).toBe(2);
  });

  it("keeps serving a stored good response within stale-if-error when the origin answers a cacheable 503 (RFC 5861 4)", async () => {
    let failing = false;
    const { proxy, get } = await proxied((_, res) => {
      res.writeHead(failing ? 503 : 200, {
        "cache-control": failing ? "max-age=600" : "max-age=10, stale-if-error=60",
      });
      res.end(failing ? "down" : "good");
    });
    await get("/sie-cacheable");
    failing = true;
    proxy.clock.advance(20 * SECOND);
    const r = await get("/sie-cacheable");
    expect(r.text).toBe("good");
    expect(status(r)).toMatch(/fwd-status=503; ttl=-10; detail=stale-if-error$/);
    expect((await get("/sie-cacheable")).text).toBe("good");
  });
});

describe("must-understand (RFC 9111 5.2.2.3)", () => {
  it("stores a known status despite no-store when must-understand is there", async () => {
    const { origin, get } = await proxied(
      counting({ "cache-control": "must-understand, no-store, max-age=60" }),
    );
    await get("/mu");
    expect(status(await get("/mu"))).toMatch(/^edgecache; hit/);
    expect(origin.count()).toBe(1);
  });

  it("does not store an unknown status with must-understand", async () => {
    const { origin, get } = await proxied(
      counting({ "cache-control": "must-understand, max-age=60" }, 299),
    );
    await get("/mu-unknown");
    expect(status(await get("/mu-unknown"))).toBe(
      "edgecache; fwd=uri-miss; detail=must-understand",
    );
    expect(origin.count()).toBe(2);
  });

  it("does not store a must-understand, no-store 206 (partial responses are not stored)", async () => {
    const { origin, get } = await proxied(
      counting({ "cache-control": "must-understand, no-store, max-age=60" }, 206),
    );
    await get("/mu-206");
    await get("/mu-206");
    expect(origin.count()).toBe(2);
  });
});
