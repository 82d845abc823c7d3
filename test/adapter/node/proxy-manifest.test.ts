import { spawn } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { validateConfig } from "../../../src/adapter/node/config.ts";
import { createNodeProxy, type NodeProxyOptions } from "../../../src/adapter/node/modes/proxy.ts";
import { tempDir } from "../../app/harness.ts";
import {
  counting,
  type Origin,
  type OriginHandler,
  raw,
  startOrigin,
  startProxy,
} from "../../app/proxy/harness.ts";
import { CLI } from "../../helpers/built-cli.ts";
import { waitForLine } from "../../helpers/child.ts";
import { until } from "../../helpers/cluster.ts";

// The proxy's manifest: URLs fetched through the real proxy from a real origin at start,
// refreshed before they expire, retried with backoff when the origin refuses, and shown
// at /_edgecache/manifest. The clock is the real one: the keeper's timers are real.

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function origin(handler: OriginHandler): Promise<Origin> {
  const o = await startOrigin(handler);
  cleanup.push(() => o.close());
  return o;
}

async function proxyWith(o: Origin, options: Partial<NodeProxyOptions>) {
  const proxy = await startProxy(o.url, { now: Date.now, ...options });
  cleanup.push(() => proxy.close());
  return proxy;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("a manifest", () => {
  it("is fetched at start, so clients' first reads are hits (and the fetches are not counted as reads)", async () => {
    const o = await origin(counting({ "cache-control": "max-age=600" }));
    const proxy = await proxyWith(o, { manifest: ["/items/{1..5}", "/feed{,.json}"] });
    const keeper = proxy.node.manifest!;
    await until(() => keeper.summary().cached === 7);
    expect(keeper.summary()).toEqual({
      total: 7,
      cached: 7,
      failing: 0,
      uncacheable: 0,
      pending: 0,
    });
    expect(o.count()).toBe(7);
    for (const path of ["/items/1", "/items/5", "/feed", "/feed.json"]) {
      expect((await raw(`${proxy.url}${path}`)).headers["cache-status"], path).toMatch(
        /^edgecache; hit/,
      );
    }
    expect(o.count()).toBe(7);
    expect(proxy.node.cache.stats()).toMatchObject({ hits: 4, misses: 0 });
  });

  it("refreshes each URL before it expires: every client read stays a hit", async () => {
    const o = await origin(counting({ "cache-control": "max-age=2" }));
    const proxy = await proxyWith(o, { manifest: ["/short"] });
    await until(() => proxy.node.manifest!.summary().cached === 1);
    const statuses: string[] = [];
    const end = Date.now() + 4500;
    while (Date.now() < end) {
      statuses.push(String((await raw(`${proxy.url}/short`)).headers["cache-status"]));
      await sleep(100);
    }
    expect(statuses.filter((s) => !s.startsWith("edgecache; hit; ttl="))).toEqual([]);
    // Fetched at start and about every 1.8 s since: two or three refreshes in 4.5 s.
    expect(o.count()).toBeGreaterThanOrEqual(3);
    expect(o.count()).toBeLessThanOrEqual(4);
    const [state] = proxy.node.manifest!.report();
    expect(state!.freshUntil! - Date.now()).toBeGreaterThan(0);
    expect(state!.nextFetch).toBeLessThan(state!.freshUntil!);
  }, 15_000);

  it("retries a refusing origin with backoff (each wait about doubles, up to the cap), then recovers", async () => {
    let refusing = true;
    const at: number[] = [];
    const o = await origin((_, res) => {
      if (refusing) at.push(Date.now());
      res.writeHead(refusing ? 503 : 200, refusing ? {} : { "cache-control": "max-age=600" });
      res.end(refusing ? "busy" : "ok");
    });
    // minMs 100, maxMs 400: the waits are jittered to between half and all of 100, 200, 400, 400...
    const proxy = await proxyWith(o, {
      manifest: ["/busy"],
      manifestRetry: { minMs: 100, maxMs: 400 },
    });
    await sleep(2500);
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    // Hammering would be hundreds; backoff allows at most 1 + (50 + 100 + 200 + 200 * k) <= 2500.
    expect(at.length).toBeGreaterThanOrEqual(4);
    expect(at.length).toBeLessThanOrEqual(14);
    gaps.forEach((gap, i) => {
      expect(gap, `wait ${i + 1}`).toBeGreaterThanOrEqual(Math.min(400, 100 * 2 ** i) / 2 - 15);
    });
    // The origin counts a try when it answers; the manifest, when the answer has come back.
    // The next try is at least 50 ms away: wait for the two to agree.
    await until(() => proxy.node.manifest!.report()[0]!.failures === at.length, 1000);
    const [state] = proxy.node.manifest!.report();
    expect(state).toMatchObject({
      state: "failing",
      status: 503,
      error: "HTTP 503 (uncacheable-status)",
    });
    expect(state!.failures).toBe(at.length);
    expect(state!.nextFetch).toBeGreaterThan(Date.now() - 50);

    refusing = false;
    await until(() => proxy.node.manifest!.summary().cached === 1, 2000);
    expect(proxy.node.manifest!.report()[0]).toMatchObject({ state: "cached", failures: 0 });
  }, 15_000);

  it("never has more than manifestConcurrency fetches at the origin at once", async () => {
    let inFlight = 0;
    let most = 0;
    const o = await origin(async (_, res) => {
      most = Math.max(most, ++inFlight);
      await sleep(50);
      inFlight--;
      res.writeHead(200, { "cache-control": "max-age=600" });
      res.end("x");
    });
    const proxy = await proxyWith(o, { manifest: ["/c/{1..12}"], manifestConcurrency: 3 });
    await until(() => proxy.node.manifest!.summary().cached === 12);
    expect(o.count()).toBe(12);
    expect(most).toBe(3);
  });

  it("reports an uncacheable URL as such and does not fetch it again in a loop", async () => {
    const o = await origin((req, res) => {
      res.writeHead(200, {
        "cache-control": req.url === "/private" ? "no-store" : "max-age=600",
      });
      res.end("x");
    });
    const proxy = await proxyWith(o, {
      manifest: ["/private", "/public"],
      manifestRetry: { minMs: 100, maxMs: 60_000 },
    });
    await until(() => proxy.node.manifest!.summary().pending === 0);
    await sleep(500);
    expect(o.count("/private")).toBe(1);
    expect(proxy.node.manifest!.summary()).toMatchObject({ cached: 1, uncacheable: 1 });
    const report = proxy.node.manifest!.report();
    expect(report[0]).toMatchObject({ url: `http://127.0.0.1/private`, state: "uncacheable" });
    expect(report[0]!.error).toMatch(/^not stored \(/);
    expect(report[0]!.nextFetch! - Date.now()).toBeGreaterThan(20_000);
  });

  it("is found in the cache file after a restart: the origin is asked for none of it", async () => {
    const o = await origin(counting({ "cache-control": "max-age=600" }));
    const cwd = tempDir("edgecache-manifest-");
    const options = { cacheFile: "cache.db", manifest: ["/kept/{1..3}"] };
    const first = await startProxy(o.url, { now: Date.now, ...options }, cwd);
    await until(() => first.node.manifest!.summary().cached === 3);
    await first.node.close();
    const second = await proxyWith(o, { ...options, cwd } as Partial<NodeProxyOptions>);
    await until(() => second.node.manifest!.summary().cached === 3);
    expect(o.count()).toBe(3);
  });
});

describe("GET /_edgecache/manifest", () => {
  it("lists each URL's state behind the admin token; stats and metrics count them", async () => {
    const o = await origin((req, res) => {
      if (req.url === "/down") res.writeHead(502);
      else if (req.url === "/error") res.writeHead(503, { "cache-control": "max-age=600" });
      else
        res.writeHead(200, {
          "cache-control": req.url === "/nostore" ? "no-store" : "max-age=600",
        });
      res.end("x");
    });
    const proxy = await proxyWith(o, {
      manifest: ["/up", "/down", "/nostore", "/error"],
      adminToken: "secret",
      manifestRetry: { minMs: 60_000, maxMs: 60_000 },
    });
    await until(() => proxy.node.manifest!.summary().pending === 0);
    const auth = { authorization: "Bearer secret" };
    expect((await raw(`${proxy.url}/_edgecache/manifest`)).status).toBe(401);

    const r = await raw(`${proxy.url}/_edgecache/manifest`, { headers: auth });
    expect(r.status).toBe(200);
    const body = JSON.parse(r.text);
    expect(body).toMatchObject({ total: 4, cached: 1, failing: 2, uncacheable: 1, pending: 0 });
    expect(body.urls).toEqual([
      expect.objectContaining({ url: "http://127.0.0.1/up", state: "cached", status: 200 }),
      expect.objectContaining({
        url: "http://127.0.0.1/down",
        state: "failing",
        status: 502,
        failures: 1,
        error: "HTTP 502 (uncacheable-status)",
      }),
      expect.objectContaining({
        url: "http://127.0.0.1/nostore",
        state: "uncacheable",
        error: "not stored (no-store)",
      }),
      // Stored as the origin asked, yet an error: failing, so a retry may replace it.
      expect.objectContaining({
        url: "http://127.0.0.1/error",
        state: "failing",
        status: 503,
        error: "HTTP 503 (stored by the origin's Cache-Control)",
      }),
    ]);
    expect(body.urls[0].freshUntil).toBeGreaterThan(Date.now() + 590_000);
    expect(body.urls[1].nextFetch).toBeGreaterThan(Date.now() + 20_000);

    const failing = JSON.parse(
      (await raw(`${proxy.url}/_edgecache/manifest?state=failing`, { headers: auth })).text,
    );
    expect(failing.urls.map((u: { url: string }) => u.url)).toEqual([
      "http://127.0.0.1/down",
      "http://127.0.0.1/error",
    ]);
    const bad = await raw(`${proxy.url}/_edgecache/manifest?state=fresh`, { headers: auth });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.text).error.code).toBe("E_BAD_QUERY");

    const stats = JSON.parse((await raw(`${proxy.url}/_edgecache/stats`, { headers: auth })).text);
    expect(stats.manifest).toEqual({ total: 4, cached: 1, failing: 2, uncacheable: 1, pending: 0 });
    const metrics = (await raw(`${proxy.url}/_edgecache/metrics`, { headers: auth })).text;
    expect(metrics).toContain('edgecache_manifest_urls{state="cached"} 1');
    expect(metrics).toContain('edgecache_manifest_urls{state="failing"} 2');
  });

  it("is a 404 that says how to have one when the proxy keeps no manifest", async () => {
    const o = await origin(counting({}));
    const proxy = await proxyWith(o, {});
    const r = await raw(`${proxy.url}/_edgecache/manifest`);
    expect(r.status).toBe(404);
    expect(JSON.parse(r.text).error.message).toContain("--manifest");
  });
});

describe("a bad manifest", () => {
  it("stops the start, naming the file and the line", async () => {
    const o = await origin(counting({}));
    const cwd = tempDir("edgecache-manifest-");
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    writeFileSync(join(cwd, "urls.txt"), "/ok\n/items/{1..20000}\n");
    const start = (manifest: string | string[]) =>
      createNodeProxy({ origins: [{ origin: o.url }], cacheFile: false, port: 0, cwd, manifest });
    const refused = (manifest: string | string[], message: string) =>
      expect(start(manifest)).rejects.toMatchObject({
        code: "E_BAD_OPTION",
        message: expect.stringContaining(`[edgecache] [manifest] ${message}`),
      });
    await refused("urls.txt", "urls.txt:2: {1..20000} expands to 20000 URLs");
    await refused("missing.txt", "cannot read missing.txt (ENOENT)");
    await refused(["/a", "ftp://x/y"], 'manifest:2: "ftp://x/y": expected');
    // Nothing was left open: the cache file's lock, the port.
    const ok = await start(["/a"]);
    await ok.close();
  });
});

describe("the CLI and the config", () => {
  it("`edgecache proxy --manifest urls.txt` keeps the file's URLs cached", async () => {
    const o = await origin(counting({ "cache-control": "max-age=600" }));
    const cwd = tempDir("edgecache-manifest-cli-");
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    writeFileSync(join(cwd, "urls.txt"), "# kept\n/cli/{1..3}\n");
    const { PORT: _port, EDGECACHE_ADMIN_TOKEN: _token, ...env } = process.env;
    const args = ["proxy", "--origin", o.url, "--port", "0", "--no-cache-file"];
    const child = spawn(process.execPath, [CLI, ...args, "--manifest", "urls.txt"], { cwd, env });
    cleanup.push(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((done) => child.once("exit", done));
      child.kill("SIGTERM");
      await exited;
    });
    const m = await waitForLine(child, /manifest:\s+3 URLs kept cached: (http:\/\/\S+)\n/);
    await until(async () => JSON.parse((await raw(m[1]!)).text).cached === 3);
    expect(o.count()).toBe(3);
  }, 60_000);

  it("the proxy section's manifest is a path or an array of lines", () => {
    const origins = [{ origin: "http://127.0.0.1:3000" }];
    for (const manifest of ["urls.txt", ["/a", "/b/{1..2}"]]) {
      expect(
        validateConfig({ proxy: { origins, manifest, manifestConcurrency: 8 } }),
      ).toBeDefined();
    }
    expect(() => validateConfig({ proxy: { origins, manifest: [1] } })).toThrow(
      /proxy\.manifest": expected a manifest file's path or an array of URLs/,
    );
    expect(() => validateConfig({ proxy: { origins, manifestConcurrency: 0 } })).toThrow(
      /proxy\.manifestConcurrency": expected an integer >= 1/,
    );
  });
});
