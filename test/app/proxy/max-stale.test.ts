import type { ServerResponse } from "node:http";
import { describe, expect, it } from "vitest";
import { proxied, SECOND, cacheStatusOf as status } from "./harness.ts";

// The request's max-stale (RFC 9111 5.2.1.2) against a real origin.

const validated = (cc: string) => (_: unknown, res: ServerResponse) => {
  res.writeHead(200, { "cache-control": cc, etag: '"m"' });
  res.end("kept");
};

describe("request max-stale (RFC 9111 5.2.1.2)", () => {
  it("serves a stale response within the staleness the client accepts, and asks the origin past it", async () => {
    const { origin, proxy, get } = await proxied(validated("max-age=10"));
    await get("/ms");
    proxy.clock.advance(40 * SECOND); // 30 s stale
    const accepted = await get("/ms", { "cache-control": "max-stale=60" });
    expect(accepted.text).toBe("kept");
    expect(status(accepted)).toBe("edgecache; hit; ttl=-30");
    expect(origin.count()).toBe(1);
    const tooStale = await get("/ms", { "cache-control": "max-stale=20" });
    expect(status(tooStale)).toMatch(/^edgecache; fwd=stale/);
    expect(origin.count()).toBe(2);
  });

  it("takes max-stale without a value as any staleness", async () => {
    const { origin, proxy, get } = await proxied(validated("max-age=10"));
    await get("/any");
    proxy.clock.advance(1000 * SECOND);
    expect(status(await get("/any", { "cache-control": "max-stale" }))).toMatch(/^edgecache; hit/);
    expect(origin.count()).toBe(1);
  });

  it.each(["max-age=10, must-revalidate", "max-age=10, proxy-revalidate", "s-maxage=10"])(
    "never serves a %s response stale, whatever the client accepts (RFC 9111 4.2.4)",
    async (cc) => {
      const { origin, proxy, get } = await proxied(validated(cc));
      await get("/strict");
      proxy.clock.advance(20 * SECOND);
      await get("/strict", { "cache-control": "max-stale" });
      expect(origin.count()).toBe(2);
    },
  );
});
