import { describe, expect, it, onTestFinished, vi } from "vitest";
import { validateConfig } from "../../../src/adapter/node/config.ts";
import { validateRoutes } from "../../../src/app/proxy/index.ts";
import { keepOnce, keepPolicy, type UrlReport } from "../../../src/app/proxy/manifest/keeper.ts";
import { expectBadOption } from "../harness.ts";
import { cacheStatusOf, counting, raw, startOrigin, startProxy } from "./harness.ts";

// A route's clientDirectives: "ignore" keeps clients' refresh directives (a browser's reload
// sends Cache-Control: max-age=0, a hard reload no-cache and Pragma: no-cache) from skipping
// or revalidating stored answers, as CDNs do; "follow", the default, is RFC 9111 5.2.1.

const REFRESH: Record<string, string>[] = [
  { "cache-control": "max-age=0" },
  { "cache-control": "no-cache", pragma: "no-cache" },
  { pragma: "no-cache" },
  { "cache-control": "min-fresh=86400" },
  { "cache-control": "max-age=0, no-cache, some-extension" },
];

async function setUp(clientDirectives?: "follow" | "ignore") {
  const origin = await startOrigin(counting({ "cache-control": "max-age=600", etag: '"v1"' }));
  onTestFinished(() => origin.close());
  const proxy = await startProxy([
    { origin: origin.url, ...(clientDirectives && { clientDirectives }) },
  ]);
  onTestFinished(() => proxy.close());
  const get = (path: string, headers: Record<string, string> = {}) =>
    raw(`${proxy.url}${path}`, { headers });
  return { origin, proxy, get };
}

describe("clientDirectives: ignore", () => {
  it("answers reloads (max-age=0, no-cache, Pragma, min-fresh) from the cache, on the fast path too", async () => {
    const { origin, proxy, get } = await setUp("ignore");
    await get("/page");
    // Old enough for max-age=0 to refuse it, were it followed.
    proxy.clock.advance(5000);
    const peek = vi.spyOn(proxy.node.proxy, "peekHit");
    for (const headers of REFRESH) {
      const reply = await get("/page", headers);
      expect(cacheStatusOf(reply), JSON.stringify(headers)).toMatch(/^edgecache; hit/);
      expect(JSON.parse(reply.text).n).toBe(1);
    }
    // The runtime's fast path made the same decision as the app: every reload a hit there.
    expect(peek.mock.results.filter((r) => r.value !== undefined)).toHaveLength(REFRESH.length);
    expect(origin.count()).toBe(1);
  });

  it("sends the origin none of a client's refresh directives when it loads", async () => {
    const { origin, get } = await setUp("ignore");
    await get("/loaded", { "cache-control": "no-cache, max-age=0", pragma: "no-cache" });
    expect(origin.requests[0]!.headers["cache-control"]).toBeUndefined();
    expect(origin.requests[0]!.headers.pragma).toBeUndefined();
    // ...so the answer stored is the one any client would get, and the next reload hits.
    expect(cacheStatusOf(await get("/loaded", { "cache-control": "max-age=0" }))).toMatch(
      /^edgecache; hit/,
    );
  });

  it("keeps no-store's meaning: that request's answer is not stored, a stored one answers it", async () => {
    const { origin, get } = await setUp("ignore");
    const first = await get("/ns", { "cache-control": "no-store, max-age=0" });
    expect(cacheStatusOf(first)).not.toMatch(/stored/);
    expect(origin.requests[0]!.headers["cache-control"]).toBe("no-store");
    expect(cacheStatusOf(await get("/ns"))).toMatch(/fwd=uri-miss; stored/);
    expect(cacheStatusOf(await get("/ns", { "cache-control": "no-store" }))).toMatch(
      /^edgecache; hit/,
    );
    expect(origin.count()).toBe(2);
  });

  it("still honours only-if-cached and max-stale, which never cost the origin a request", async () => {
    const { origin, proxy, get } = await setUp("ignore");
    const missing = await get("/oic", { "cache-control": "only-if-cached, no-cache" });
    expect(missing.status).toBe(504);
    await get("/old");
    proxy.clock.advance(700 * 1000);
    const stale = await get("/old", { "cache-control": "max-stale=200, no-cache" });
    expect(cacheStatusOf(stale)).toBe("edgecache; hit; ttl=-100");
    expect(JSON.parse(stale.text).n).toBe(1);
    expect(origin.count("/old")).toBe(1);
  });

  it("leaves a write's headers as the client sent them", async () => {
    const { origin, proxy } = await setUp("ignore");
    await raw(`${proxy.url}/w`, { method: "POST", headers: { "cache-control": "no-cache" } });
    expect(origin.requests[0]!.headers["cache-control"]).toBe("no-cache");
  });
});

describe("edgecache's own requests carry their intent, which no route setting drops", () => {
  it("the manifest keeper's refresh reaches the origin on an ignore route, and keeps the URL cached", async () => {
    for (const setting of ["ignore", "follow"] as const) {
      const { origin, proxy, get } = await setUp(setting);
      await get("/kept");
      // Half a second of freshness left: the keeper's refresh is due.
      proxy.clock.advance(599_500);
      const slot: UrlReport = { url: `${proxy.url}/kept`, state: "cached" };
      const policy = keepPolicy({ now: proxy.clock.now });
      await keepOnce(slot, (url, refresh) => proxy.node.proxy.keep(url, refresh), policy);
      expect(origin.count("/kept"), setting).toBe(2);
      // Revalidated with the validator held (RFC 9111 4.3.1), no client directive sent.
      expect(origin.requests[1]!.headers["if-none-match"], setting).toBe('"v1"');
      expect(origin.requests[1]!.headers["cache-control"], setting).toBeUndefined();
      expect(slot, setting).toMatchObject({ state: "cached", status: 200 });
      expect(slot.error, setting).toBeUndefined();
      expect(slot.freshUntil, setting).toBe(proxy.clock.now() + 600_000);
      // A client's reload on the ignore route still does not reach the origin.
      await get("/kept", { "cache-control": "no-cache" });
      expect(origin.count("/kept"), setting).toBe(setting === "ignore" ? 2 : 3);
    }
  });
});

describe("clientDirectives: follow (the default)", () => {
  it("revalidates on a client's max-age=0 and no-cache (RFC 9111 5.2.1)", async () => {
    for (const setting of [undefined, "follow"] as const) {
      const { origin, proxy, get } = await setUp(setting);
      await get("/page");
      proxy.clock.advance(5000);
      await get("/page", { "cache-control": "max-age=0" });
      await get("/page", { pragma: "no-cache" });
      expect(origin.count(), String(setting)).toBe(3);
    }
  });
});

describe("clientDirectives is checked", () => {
  it("refuses a value other than follow or ignore, naming the route", () => {
    for (const bad of ["yes", true, "Ignore", ""]) {
      expectBadOption(
        () => validateRoutes([{ origin: "http://127.0.0.1:3000", clientDirectives: bad }]),
        /routes\[0\]\.clientDirectives": expected "follow" or "ignore"/,
      );
    }
    expectBadOption(
      () =>
        validateConfig({
          proxy: { origins: [{ origin: "http://127.0.0.1:3000", clientDirectives: "never" }] },
        }),
      /proxy\.origins\[0\]\.clientDirectives/,
    );
  });
});
