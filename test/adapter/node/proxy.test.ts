import { type ChildProcess, spawn } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { loadConfig, validateConfig } from "../../../src/adapter/node/config.ts";
import { createNodeProxy } from "../../../src/adapter/node/modes/proxy.ts";
import { expectBadOption, tempDir } from "../../app/harness.ts";
import { counting, type Origin, raw, startOrigin, startProxy } from "../../app/proxy/harness.ts";
import { CLI } from "../../helpers/built-cli.ts";
import { waitForLine } from "../../helpers/child.ts";

// Proxy mode on the Node adapter: the fast path, the persistent tier across restarts,
// the memory bound, the config's proxy section and the CLI.

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function origin(handler = counting({ "cache-control": "max-age=600", etag: '"e1"' })) {
  const o = await startOrigin(handler);
  cleanup.push(() => o.close());
  return o;
}

/** Headers that describe the connection, without the remaining seconds (they may tick). */
function comparable(headers: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (["connection", "keep-alive", "date"].includes(name)) continue;
    out[name] = value;
  }
  return out;
}

describe("the proxy's hit fast path", () => {
  it("answers a memory hit with the same status, bytes and headers as the app", async () => {
    const o = await origin();
    const proxy = await startProxy(o.url, { cacheFile: "cache.db" });
    cleanup.push(() => proxy.close());
    const url = `${proxy.url}/fast?q=1`;
    const peek = vi.spyOn(proxy.node.proxy, "peekHit");
    await raw(url);
    // Out of memory, still in SQLite: the next request goes through the app (a hit).
    await proxy.node.tiers[0]!.delete([`/fast?q=1 ${proxy.hostname}`]);
    const viaApp = await raw(url);
    expect(viaApp.headers["cache-status"]).toMatch(/^edgecache; hit/);
    peek.mockClear();
    const fast = await raw(url);
    expect(peek.mock.results.some((r) => r.value !== undefined)).toBe(true);
    expect(fast.status).toBe(viaApp.status);
    expect(fast.body).toEqual(viaApp.body);
    expect(comparable(fast.headers)).toEqual(comparable(viaApp.headers));

    for (const [name, headers] of [
      ["HEAD", {}],
      ["GET", { "if-none-match": '"e1"' }],
    ] as const) {
      await proxy.node.tiers[0]!.delete([`/fast?q=1 ${proxy.hostname}`]);
      const slow = await raw(url, { method: name, headers });
      const quick = await raw(url, { method: name, headers });
      expect(quick.status, name).toBe(slow.status);
      expect(comparable(quick.headers), name).toEqual(comparable(slow.headers));
    }
    expect(proxy.node.cache.stats()).toMatchObject({ misses: 1 });
  });

  it("takes the full path for requests with cache directives or credentials", async () => {
    const o = await origin();
    const proxy = await startProxy(o.url);
    cleanup.push(() => proxy.close());
    await raw(`${proxy.url}/p`);
    const peek = vi.spyOn(proxy.node.proxy, "peekHit");
    await raw(`${proxy.url}/p`, { headers: { "cache-control": "no-cache" } });
    expect(peek.mock.results.every((r) => r.value === undefined)).toBe(true);
    expect(o.count()).toBe(2);
  });
});

/** A proxy on a cache file, answering "cache.example" as a front proxy keeps it in Host. */
const onCacheFile = (origin: string, cwd: string) => ({
  origins: [{ origin }],
  cacheFile: "proxy.db",
  port: 0,
  cwd,
  allowedHosts: ["cache.example"], // a name the operator lists (DNS rebinding)
});

describe("restart", () => {
  it("serves entries stored before a restart from the SQLite tier", async () => {
    const o = await origin();
    const cwd = tempDir("edgecache-proxy-");
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    const options = onCacheFile(o.url, cwd);
    const host = { host: "cache.example" };
    const before = await createNodeProxy(options);
    const first = await raw(`${(await before.listen()).url}/kept`, { headers: host });
    await before.close();

    const after = await createNodeProxy(options);
    cleanup.push(() => after.close());
    const { url } = await after.listen();
    const again = await raw(`${url}/kept`, { headers: host });
    expect(again.text).toBe(first.text);
    expect(again.headers["cache-status"]).toMatch(/^edgecache; hit/);
    expect(o.count()).toBe(1);
    expect(after.cache.stats().tiers[1]).toMatchObject({ name: "sqlite", hits: 1 });
  });
});

describe("the key list after a restart", () => {
  it("lists the entries the cache file holds, by prefix and by tag, before any is read", async () => {
    const o = await origin((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=600", "surrogate-key": `t${req.url}` });
      res.end(String(req.url));
    });
    const cwd = tempDir("edgecache-proxy-");
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    const options = onCacheFile(o.url, cwd);
    const host = { host: "cache.example" };
    const before = await createNodeProxy(options);
    const { url: first } = await before.listen();
    for (const path of ["/a/1", "/a/2", "/b"]) await raw(`${first}${path}`, { headers: host });
    await before.close();

    const after = await createNodeProxy(options);
    cleanup.push(() => after.close());
    const { url } = await after.listen();
    const list = async (query: string) => {
      const r = await raw(`${url}/_edgecache/keys${query}`);
      return (JSON.parse(r.text).keys as { key: string }[]).map((k) => k.key).sort();
    };
    expect(await list("")).toEqual([
      "/a/1 cache.example",
      "/a/2 cache.example",
      "/b cache.example",
    ]);
    expect(await list("?prefix=/a/")).toEqual(["/a/1 cache.example", "/a/2 cache.example"]);
    expect(await list(`?tag=${encodeURIComponent("tag:t/b")}`)).toEqual(["/b cache.example"]);
    expect(o.count()).toBe(3);
  });
});

describe("memory bound", () => {
  it("keeps the memory tier within maxBytes, the rest in SQLite", async () => {
    const o = await origin((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=600" });
      res.end(`${req.url} ${"x".repeat(2000)}`);
    });
    const proxy = await startProxy(o.url, {
      cacheFile: "bound.db",
      memory: { maxBytes: 20_000 },
    });
    cleanup.push(() => proxy.close());
    for (let i = 0; i < 40; i++) await raw(`${proxy.url}/item/${i}`);
    const [memory, sqlite] = proxy.node.cache.stats().tiers;
    expect(memory!.bytes).toBeLessThanOrEqual(20_000);
    expect(memory!.evictions).toBeGreaterThan(0);
    expect(sqlite!.entries).toBe(40);
    const early = await raw(`${proxy.url}/item/0`);
    expect(early.headers["cache-status"]).toMatch(/^edgecache; hit/);
    expect(o.count()).toBe(40);
  });
});

describe("trusted proxies", () => {
  it("sends the origin the client a trusted proxy names in X-Forwarded-For, and the peer otherwise", async () => {
    const o = await origin((req, res) => {
      res.writeHead(200, { "cache-control": "no-store" });
      res.end(String(req.headers["x-forwarded-for"]));
    });
    const seen = async (trustedProxies: string[] | undefined) => {
      const proxy = await startProxy(o.url, { trustedProxies });
      cleanup.push(() => proxy.close());
      return (await raw(`${proxy.url}/who`, { headers: { "x-forwarded-for": "203.0.113.7" } }))
        .text;
    };
    expect(await seen(["127.0.0.1"])).toBe("203.0.113.7");
    expect(await seen(undefined)).toBe("127.0.0.1");
  });
});

describe("config: the proxy section", () => {
  const refused = (config: unknown, pattern: RegExp) =>
    expectBadOption(() => validateConfig(config), pattern);

  it.each([
    [{ proxy: [] }, /option "proxy": expected an object, got/],
    [{ proxy: {} }, /option "proxy.origins": expected a non-empty array/],
    [
      { proxy: { origins: [{}] } },
      /option "proxy.origins\[0\]\.origin": expected an http\(s\) origin/,
    ],
    [
      { proxy: { origins: [{ origin: "ftp://x" }] } },
      /"proxy.origins\[0\]\.origin": expected .*, got "ftp:\/\/x"/,
    ],
    [
      { proxy: { origins: [{ origin: "http://a", pathPrefix: "v1" }] } },
      /"proxy.origins\[0\]\.pathPrefix": expected a path starting with "\/", got "v1"/,
    ],
    [
      { proxy: { origins: [{ origin: "http://a", ttl: -1 }] } },
      /"proxy.origins\[0\]\.ttl": expected a number of seconds >= 0, got -1/,
    ],
    [
      { proxy: { origins: [{ origin: "http://a", pathprefix: "/v1" }] } },
      /"proxy.origins\[0\]\.pathprefix": expected origin, host, pathPrefix, ttl/,
    ],
    [
      { proxy: { origins: [{ origin: "http://a" }], grace: "1m" } },
      /"proxy.grace": expected a number >= 0, got "1m"/,
    ],
    [
      { proxy: { origins: [{ origin: "http://a" }], maxCacheableSize: -5 } },
      /"proxy.maxCacheableSize": expected a number >= 0, got -5/,
    ],
    [
      { proxy: { origins: [{ origin: "http://a" }], memory: { maxBytes: 0 } } },
      /"proxy.memory.maxBytes": expected an integer >= 1, got 0/,
    ],
    [
      { proxy: { origins: [{ origin: "http://a" }], cacheFile: 1 } },
      /"proxy.cacheFile": expected a path or false, got 1/,
    ],
    [
      { proxy: { origins: [{ origin: "http://a" }], orgins: [] } },
      /unknown option "proxy.orgins" \(did you mean "proxy.origins"\?\): expected one of/,
    ],
  ])("refuses %j in expected/got form", (config, pattern) => {
    refused(config, pattern);
  });

  it("accepts a complete proxy section unchanged", () => {
    const config = {
      proxy: {
        origins: [
          { origin: "http://127.0.0.1:3000", host: "api.example.com", pathPrefix: "/v1", ttl: 60 },
          { origin: "https://static.example.com" },
        ],
        maxCacheableSize: 1_000_000,
        grace: 300,
        memory: { maxBytes: 10_000_000, maxEntries: 1000 },
        cacheFile: "./proxy.cache.db",
        port: 8788,
        hostname: "0.0.0.0",
      },
    };
    expect(validateConfig(structuredClone(config))).toEqual(config);
  });
});

describe("the CLI", () => {
  function run(args: string[], cwd: string): ChildProcess {
    const { PORT: _port, EDGECACHE_ADMIN_TOKEN: _token, ...env } = process.env;
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env, stdio: "pipe" });
    cleanup.push(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((done) => child.once("exit", done));
        child.kill("SIGTERM");
        await exited;
      }
    });
    return child;
  }

  it("runs `edgecache proxy --origin ... --port 0`, prints the URL, stops on SIGTERM", async () => {
    const o: Origin = await origin();
    const cwd = tempDir("edgecache-cli-");
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    const child = run(["proxy", "--origin", o.url, "--port", "0", "--no-cache-file"], cwd);
    const url = (await waitForLine(child, /proxy:\s+(http:\/\/\S+?)\/?\n/))[1]!;
    const miss = await raw(`${url}/cli`);
    const hit = await raw(`${url}/cli`);
    expect(miss.headers["cache-status"]).toMatch(/stored/);
    expect(hit.headers["cache-status"]).toMatch(/^edgecache; hit/);
    expect(JSON.parse((await raw(`${url}/_edgecache/stats`)).text)).toMatchObject({
      hits: 1,
      misses: 1,
    });
    const exited = new Promise((done) => child.once("exit", done));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  }, 60_000);

  it("reads its origins from a config file's proxy section", async () => {
    const o = await origin();
    const cwd = tempDir("edgecache-cli-");
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    writeFileSync(
      join(cwd, "edgecache.config.json"),
      JSON.stringify({ proxy: { origins: [{ origin: o.url, ttl: 5 }], cacheFile: false } }),
    );
    expect((await loadConfig(cwd))?.config.proxy?.origins).toHaveLength(1);
    const child = run(["proxy", "--port", "0"], cwd);
    const url = (await waitForLine(child, /proxy:\s+(http:\/\/\S+?)\/?\n/))[1]!;
    expect((await raw(`${url}/cfg`)).status).toBe(200);
  }, 60_000);

  it("fails with one line when there is no origin", async () => {
    const cwd = tempDir("edgecache-cli-");
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    const child = run(["proxy", "--port", "0"], cwd);
    let err = "";
    child.stderr?.on("data", (c) => {
      err += c;
    });
    const code = await new Promise((done) => child.once("exit", done));
    expect(code).toBe(2); // a missing flag: the command line's usage exit code
    expect(err.trim()).toMatch(/^\[edgecache\] \[cli\] --origin: expected/);
  }, 60_000);
});
