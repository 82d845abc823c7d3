import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TAGS_UNCOUNTED } from "../../../src/app/proxy/purge.ts";
import { type Origin, type ProxyHarness, raw, SECOND, startOrigin, startProxy } from "./harness.ts";

// The admin API in proxy mode: purge by the origin's tags, by URL (every variant) and by
// path prefix from every tier, the key listing, and warming.

const TOKEN = "proxy-admin-token";
let origin: Origin;
let proxy: ProxyHarness;

beforeEach(async () => {
  origin = await startOrigin((req, res) => {
    const tags: Record<string, string> = {
      "/v1/users": "users",
      "/v1/users/1": "users users:1",
      "/v1/users/2": "users users:2",
      "/v1/orders": "orders",
    };
    res.writeHead(200, {
      "cache-control": "max-age=600",
      "content-type": "application/json",
      ...(tags[req.url!.split("?")[0]!] && { "surrogate-key": tags[req.url!.split("?")[0]!]! }),
      ...(req.url === "/v1/orders" && { "cache-tag": "orders,sales", vary: "accept" }),
    });
    res.end(JSON.stringify({ url: req.url, at: origin.count() }));
  });
  proxy = await startProxy(origin.url, { adminToken: TOKEN, cacheFile: "admin.db" });
});

afterEach(async () => {
  await proxy.close();
  await origin.close();
});

const get = (path: string, headers: Record<string, string> = {}) =>
  raw(`${proxy.url}${path}`, { headers });
const admin = async (method: string, path: string, body?: unknown) => {
  const r = await raw(`${proxy.url}/_edgecache${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { ...r, json: r.text ? JSON.parse(r.text) : undefined };
};
const isHit = async (path: string, headers?: Record<string, string>) =>
  /^edgecache; hit/.test(String((await get(path, headers)).headers["cache-status"]));

async function warmAll() {
  for (const p of ["/v1/users", "/v1/users/1", "/v1/users/2", "/v1/users/2?x=1"]) await get(p);
  await get("/v1/orders", { accept: "a" });
  await get("/v1/orders", { accept: "b" });
}

describe("purge", () => {
  it("by Surrogate-Key / Cache-Tag: every tagged entry, from every tier, counted", async () => {
    await warmAll();
    const r = await admin("POST", "/purge", { tags: ["users:2"] });
    // /v1/users/2 and /v1/users/2?x=1; the reply says what a tag's count leaves out.
    expect(r.json).toEqual({ purged: 2, uncounted: TAGS_UNCOUNTED });
    expect(r.json.uncounted).toMatch(/other nodes stored.*no tier indexes tags/);
    const [memory, sqlite] = proxy.node.cache.stats().tiers;
    expect([memory!.entries, sqlite!.entries]).toEqual([5, 5]);
    expect((await admin("POST", "/purge", { tags: ["users"] })).json).toMatchObject({ purged: 2 });
    // Comma-separated Cache-Tag values are tags too; both Vary variants go.
    expect((await admin("POST", "/purge", { tags: ["sales"] })).json).toMatchObject({ purged: 2 });
    expect(await isHit("/v1/users/1")).toBe(false);
    expect(await isHit("/v1/users/2")).toBe(false);
  });

  it("by URL: every Vary variant of it, and nothing else", async () => {
    await warmAll();
    const r = await admin("POST", "/purge", { urls: ["/v1/orders", `${proxy.url}/v1/users/1`] });
    expect(r.json).toStrictEqual({ purged: 3 }); // a URL's copies are counted everywhere
    expect(await isHit("/v1/orders", { accept: "a" })).toBe(false);
    expect(await isHit("/v1/users/1")).toBe(false);
    expect(await isHit("/v1/users/2?x=1")).toBe(true);
  });

  it("by path prefix, query strings included", async () => {
    await warmAll();
    const r = await admin("POST", "/purge", { prefix: "/v1/users/" });
    expect(r.json).toEqual({ purged: 3 });
    expect(await isHit("/v1/users")).toBe(true);
    expect(await isHit("/v1/users/2?x=1")).toBe(false);
  });

  it.each([
    ["{", "body"],
    [{}, "expected one of"],
    [{ tags: "users" }, "tags"],
    [{ urls: ["users"] }, "urls"],
    [{ prefix: "v1" }, "prefix"],
    // Crafted: a value whose String() throws, a nesting that overflows a recursive walk.
    [{ url: { toString: 1 } }, "url: expected a string, got an object"],
    [{ tag: { toString: 1 } }, "tag: expected a string, got an object"],
    [{ prefix: { toString: 1 } }, "prefix: expected a string, got an object"],
    [{ tag: "users", urll: "/v1/users" }, 'unknown field "urll" (did you mean "url"?)'],
  ])("refuses %j with a 400 naming the field", async (body, name) => {
    const r = await admin("POST", "/purge", body);
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe("E_BAD_BODY");
    expect(r.json.error.message).toContain(name);
  });

  it("refuses urls nested 50,000 deep with a 400, not a stack overflow's 500", async () => {
    const r = await admin("POST", "/purge", `{"urls": ${"[".repeat(50_000)}${"]".repeat(50_000)}}`);
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe("E_BAD_BODY");
  });

  it("needs the admin token", async () => {
    const r = await raw(`${proxy.url}/_edgecache/purge`, {
      method: "POST",
      body: '{"tags":["x"]}',
    });
    expect(r.status).toBe(401);
  });

  it("is never forwarded to the origin, nor is any /_edgecache path", async () => {
    await raw(`${proxy.url}/_edgecache/nothing`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(origin.count()).toBe(0);
  });
});

describe("the admin prefix percent-encoded", () => {
  it("is a 404, never the admin API, never forwarded to the origin", async () => {
    for (const path of ["/%5fedgecache/stats", "/_%65dgecache/keys", "/_edgecache%2fstats"]) {
      const r = await raw(`${proxy.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(r.status, path).toBe(404);
      expect(JSON.parse(r.text).error.code, path).toBe("E_NOT_FOUND");
    }
    expect(origin.count()).toBe(0);
  });
});

describe("keys", () => {
  it("lists each cached entry with its size, age, TTL and tags", async () => {
    await get("/v1/users/1");
    proxy.clock.advance(10 * SECOND);
    const r = await admin("GET", "/keys?prefix=/v1/users");
    expect(r.json.keys).toEqual([
      expect.objectContaining({
        key: `/v1/users/1 ${proxy.hostname}`,
        bytes: expect.any(Number),
        ageSeconds: 10,
        ttlSeconds: 590,
        tags: ["url:/v1/users/1", "tag:users", "tag:users:1"],
      }),
    ]);
    const byTag = await admin("GET", `/keys?tag=${encodeURIComponent("tag:users:1")}`);
    expect(byTag.json.keys).toHaveLength(1);
  });
});

describe("warm", () => {
  it("fetches the URLs into the cache, so the next reads are hits", async () => {
    const r = await admin("POST", "/warm", { urls: ["/v1/users/1", "/v1/orders"] });
    expect(r.status).toBe(200);
    expect(r.json.warmed).toEqual([
      expect.objectContaining({ url: `${proxy.url}/v1/users/1`, status: 200 }),
      expect.objectContaining({ url: `${proxy.url}/v1/orders`, status: 200 }),
    ]);
    expect(r.json.warmed[0].cacheStatus).toMatch(/stored/);
    expect(await isHit("/v1/users/1")).toBe(true);
    expect(origin.count()).toBe(2);
  });

  it("refuses /_edgecache URLs however spelled, naming them, and forwards none (they are never forwarded)", async () => {
    for (const url of [
      "/_edgecache/stats",
      `${proxy.url}/_edgecache/keys`,
      "http://elsewhere.test/_edgecache",
      "/%5fedgecache/stats",
    ]) {
      const r = await admin("POST", "/warm", { urls: ["/v1/users/1", url] });
      expect(r.status, url).toBe(400);
      expect(r.json.error.code).toBe("E_BAD_BODY");
      expect(r.json.error.message).toContain(JSON.stringify(url));
    }
    expect(origin.count()).toBe(0);
  });

  it("refuses a URL a client's request could not name (dot segments in any spelling, a backslash), naming it, and forwards none", async () => {
    for (const url of [
      "/v1/..;/admin",
      "/v1/%2e%2e/admin",
      "/v1/..%5cadmin",
      "/v1/..%3f/admin",
      "/v1/%252e%252e/admin",
      "/v1/a\\b",
      `${proxy.url}/v1/..;/admin`,
    ]) {
      const r = await admin("POST", "/warm", { urls: ["/v1/users/1", url] });
      expect(r.status, url).toBe(400);
      expect(r.json.error.code).toBe("E_BAD_BODY");
      expect(r.json.error.message).toContain(JSON.stringify(url));
    }
    expect(origin.count()).toBe(0);
  });

  it("refuses an absolute URL of a host that is neither the node's nor an origin's: the origin would be told it (X-Forwarded-Host)", async () => {
    for (const url of [
      "http://evil.com/",
      "https://evil.com/v1/users/1",
      "http://127.0.0.2:1/v1/users/1",
    ]) {
      const r = await admin("POST", "/warm", { urls: [url] });
      expect(r.status, url).toBe(400);
      expect(r.json.error.code).toBe("E_BAD_BODY");
      expect(r.json.error.message).toContain(JSON.stringify(url));
    }
    expect(origin.count()).toBe(0);
    // The node's own host and the origin's are the proxy's to fetch.
    const own = await admin("POST", "/warm", {
      urls: [`${proxy.url}/v1/users/1`, `${origin.url}/v1/users/2`],
    });
    expect(own.status).toBe(200);
    expect(origin.count()).toBe(2);
  });

  it("purge refuses a URL a client's request could not name, naming it", async () => {
    for (const url of ["/v1/..;/admin", "/v1/%2e%2e/x", "/%5fedgecache/stats"]) {
      const r = await admin("POST", "/purge", { urls: [url] });
      expect(r.status, url).toBe(400);
      expect(r.json.error.code).toBe("E_BAD_BODY");
      expect(r.json.error.message).toContain(JSON.stringify(url));
    }
  });

  it("refuses an empty list and URLs that are not paths or http(s)", async () => {
    expect((await admin("POST", "/warm", { urls: [] })).status).toBe(400);
    expect((await admin("POST", "/warm", { urls: ["ftp://x/y"] })).status).toBe(400);
    const crafted = await admin("POST", "/warm", { url: { toString: 1 } });
    expect(crafted.status).toBe(400);
    expect(crafted.json.error.message).toBe("url: expected a string, got an object");
    const unparsable = await admin("POST", "/warm", { urls: ["http://[bad"] });
    expect(unparsable.status).toBe(400);
    expect(unparsable.json.error.message).toContain('"http://[bad"');
  });
});
