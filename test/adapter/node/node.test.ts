import { spawn } from "node:child_process";
import { once } from "node:events";
import { rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it, vi } from "vitest";
import { loadConfig, validateConfig } from "../../../src/adapter/node/config.ts";
import { createNodeEdgecache } from "../../../src/adapter/node/modes/data-api.ts";
import { listenerHosts } from "../../../src/app/access.ts";
import type { Row } from "../../../src/core/data/query.ts";
import {
  booksDatabase,
  expectBadOption,
  type Harness,
  HIT,
  MISS_STORED,
  type Reply,
  reply,
  send,
  startEdgecache,
  tempDir,
} from "../../app/harness.ts";
import { raw } from "../../app/proxy/harness.ts";
import { CLI } from "../../helpers/built-cli.ts";
import { waitForLine } from "../../helpers/child.ts";
import { exchange } from "./raw-client.ts";

// The Node adapter over real sockets and real SQLite files: the hit fast path, restarts
// on the persistent tier, config loading and the CLI.

const cleanup: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function started(options = {}, cwd?: string): Promise<Harness & { url: string }> {
  const h = await startEdgecache(options, cwd);
  cleanup.push(() => h.close());
  const { url } = await h.edgecache.listen();
  return { ...h, url };
}

const fetchReply = async (url: string, init?: RequestInit) => reply(await fetch(url, init));

/** Headers without the ones that describe the connection or the moment, and without ttl. */
function comparable(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of headers) {
    if (["age", "date", "connection", "keep-alive"].includes(name)) continue;
    // The remaining seconds may tick between two requests.
    out[name] = name === "cache-status" ? value.replace(/; ttl=\d+/, "") : value;
  }
  return out;
}

describe("the hit fast path", () => {
  it("answers a memory hit with the same status, bytes and headers as the app", async () => {
    const h = await started();
    const path = "/v1/users?firstName=Mary&limit=50";
    const key = "GET /v1/users?firstName=Mary&limit=50";
    const peek = vi.spyOn(h.edgecache.cache, "peek");

    const miss = await fetchReply(`${h.url}${path}`);
    expect(miss.headers.get("cache-status")).toMatch(MISS_STORED);
    // Out of memory, still in SQLite: the next request goes through the app (a hit).
    await h.edgecache.tiers[0]!.delete([key]);
    const viaApp = await fetch(`${h.url}${path}`);
    const viaAppBytes = new Uint8Array(await viaApp.arrayBuffer());
    expect(viaApp.headers.get("cache-status")).toMatch(HIT);
    // Now back in memory: answered by the fast path.
    peek.mockClear();
    const fast = await fetch(`${h.url}${path}`);
    const fastBytes = new Uint8Array(await fast.arrayBuffer());
    expect(peek.mock.results.some((r) => r.value !== undefined)).toBe(true);

    expect(fast.status).toBe(viaApp.status);
    expect(fastBytes).toEqual(viaAppBytes);
    expect(comparable(fast.headers)).toEqual(comparable(viaApp.headers));
    expect(fast.headers.get("cache-status")).toMatch(HIT);
    expect(fast.headers.get("age")).toMatch(/^\d+$/);

    // And the same as the in-process app answers a hit (which has no socket framing).
    const inProcess = await h.edgecache.app.request(path);
    expect(new Uint8Array(await inProcess.arrayBuffer())).toEqual(fastBytes);
    const framing = comparable(fast.headers);
    delete framing["content-length"];
    expect(comparable(inProcess.headers)).toEqual(framing);
  });

  it("answers a cached 404 the same way the app does", async () => {
    const h = await started();
    const first = await fetchReply(`${h.url}/v1/users/no-such-user`);
    const second = await fetchReply(`${h.url}/v1/users/no-such-user`);
    expect(second.status).toBe(404);
    expect(second.text).toBe(first.text);
    expect(second.json.error.code).toBe("E_NOT_FOUND");
    expect(second.headers.get("content-type")).toBe(first.headers.get("content-type"));
  });

  it("answers If-None-Match with the current ETag with 304 and no body", async () => {
    const h = await started();
    const path = `${h.url}/v1/users?limit=3`;
    const { headers } = await fetchReply(path);
    const etag = headers.get("etag")!;
    const r = await fetchReply(path, { headers: { "if-none-match": etag } });
    expect(r.status).toBe(304);
    expect(r.text).toBe("");
    expect(r.headers.get("etag")).toBe(etag);
    expect(r.headers.get("cache-status")).toMatch(HIT);
  });

  it("answers HEAD with the GET headers and no body", async () => {
    const h = await started();
    const path = `${h.url}/v1/users?limit=3`;
    const got = await fetchReply(path);
    const head = await fetchReply(path, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.text).toBe("");
    expect(head.headers.get("etag")).toBe(got.headers.get("etag"));
    expect(head.headers.get("content-type")).toBe(got.headers.get("content-type"));
    expect(head.headers.get("cache-status")).toMatch(HIT);
  });

  it("never answers a write from the cache", async () => {
    const h = await started();
    const user = h.fresh("SELECT * FROM users LIMIT 1")[0]!;
    await fetchReply(`${h.url}/v1/users/${user.id}`);
    const r = await fetchReply(`${h.url}/v1/users/${user.id}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ lastName: "Socket" }),
    });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ ...user, lastName: "Socket" });
    expect((await fetchReply(`${h.url}/v1/users/${user.id}`)).json.lastName).toBe("Socket");
  });

  it("answers a Host that is no host (a.1) with a JSON 400 naming the header, hit or miss", async () => {
    const h = await started();
    await fetchReply(`${h.url}/v1/users?limit=1`);
    for (const path of ["/v1/users?limit=1", "/v1/users?limit=2", "/_edgecache/stats"]) {
      const r = await raw(`${h.url}${path}`, { headers: { host: "a.1" } });
      expect(r.status, path).toBe(400);
      expect(JSON.parse(r.text).error, path).toMatchObject({ code: "E_BAD_HEADER" });
      expect(JSON.parse(r.text).error.message, path).toMatch(/Host/);
    }
    expect((await fetchReply(`${h.url}/v1/users?limit=1`)).status).toBe(200);
  });
});

describe("DNS rebinding: the Host names a node answers to", () => {
  const hostOf = (url: string) => new URL(url).host;
  const portOf = (url: string) => Number(new URL(url).port);

  it("a loopback node refuses another name with 403, a hit, a miss or a write, on either path", async () => {
    const h = await started();
    const users = `${h.url}/v1/users?limit=1`;
    await fetchReply(users); // now a memory hit, which the raw path would answer
    const evil = { host: "evil.com", origin: "http://evil.com" };
    for (const path of ["/v1/users?limit=1", "/v1/users?limit=3", "/_edgecache/stats"]) {
      const r = await raw(`${h.url}${path}`, { headers: { host: `evil.com:${portOf(h.url)}` } });
      expect(r.status, path).toBe(403);
      expect(JSON.parse(r.text).error, path).toMatchObject({ code: "E_FORBIDDEN" });
      expect(JSON.parse(r.text).error.message, path).toMatch(/allowedHosts/);
    }
    const write = await raw(`${h.url}/v1/users`, {
      method: "POST",
      headers: { ...evil, "content-type": "application/json" },
      body: JSON.stringify({ firstName: "Rebound", lastName: "Page", email: "r@evil.com" }),
    });
    expect(write.status).toBe(403);
    expect(h.fresh("SELECT 1 FROM users WHERE firstName = 'Rebound'")).toEqual([]);
    // The raw path (a keep-alive GET, read before node:http parses it) decides the same.
    const wire = await exchange(
      portOf(h.url),
      "GET /v1/users?limit=1 HTTP/1.1\r\nHost: evil.com\r\n\r\n",
      ["GET"],
    );
    expect(wire.replies[0]?.status).toBe(403);
  });

  it("a loopback node answers its loopback names, with and without a port, and allowedHosts", async () => {
    const h = await started({ allowedHosts: ["api.example"] });
    const port = portOf(h.url);
    for (const host of [
      `localhost:${port}`,
      `127.0.0.1:${port}`,
      `[::1]:${port}`,
      "localhost",
      hostOf(h.url),
      "api.example",
      `API.example:${port}`,
    ]) {
      const r = await raw(`${h.url}/v1/users?limit=1`, { headers: { host } });
      expect(r.status, host).toBe(200);
    }
    const posted = await raw(`${h.url}/v1/users`, {
      method: "POST",
      headers: { host: "api.example", "content-type": "application/json" },
      body: JSON.stringify({ firstName: "Listed", lastName: "Host", email: "l@api.example" }),
    });
    expect(posted.status).toBe(201);
    const other = await raw(`${h.url}/v1/users?limit=1`, { headers: { host: "other.example" } });
    expect(other.status).toBe(403);
  });

  it("a node on another address checks once allowedHosts lists names; an IP literal always passes", () => {
    for (const loopback of [
      "127.0.0.1",
      "127.3.0.1",
      "::1",
      "[::1]",
      "localhost",
      "::ffff:127.0.0.1",
    ]) {
      expect(
        listenerHosts("t", loopback, undefined)?.("/v1/users", "evil.com"),
        loopback,
      ).toMatchObject({
        code: "E_FORBIDDEN",
      });
    }
    // It cannot know its public names: no check until they are listed.
    expect(listenerHosts("t", "0.0.0.0", undefined)).toBeUndefined();
    expect(listenerHosts("t", "192.0.2.4", [])).toBeUndefined();
    const listed = listenerHosts("t", "0.0.0.0", ["api.example"])!;
    expect(listed("/v1/users", "evil.com:80")).toMatchObject({ code: "E_FORBIDDEN" });
    expect(listed("/_edgecache/health", "evil.com:80")).toBeUndefined();
    for (const host of [
      "api.example:8787",
      "API.EXAMPLE.",
      "192.0.2.4:8787",
      "[2001:db8::1]",
      "localhost",
    ]) {
      expect(listed("/v1/users", host), host).toBeUndefined();
    }
  });
});

describe("bounds on what anonymous GETs can add", () => {
  it("made-up ids, junk query strings and distinct list filters stay within the configured bounds, and a real entry read meanwhile stays a hit", async () => {
    const h = await started({
      memory: { maxEntries: 200 },
      disk: { maxEntries: 300, maxBytes: 1_000_000 },
      notFound: { maxEntries: 20 },
    });
    const get = (path: string) => send(h.edgecache, "GET", path);
    const user = (await get("/v1/users?limit=1")).json.data[0] as Row;
    const item = `/v1/users/${user.id}`;
    await get(item);
    for (let i = 0; i < 1500; i++) {
      expect((await get(`/v1/users/nope-${i}`)).status).toBe(404);
      expect((await get(`${item}?junk=${i}`)).status).toBe(400);
      expect((await get(`/v1/users?firstName=junk-${i}`)).status).toBe(200);
      if (i % 50 === 0) expect((await get(item)).headers.get("cache-status")).toMatch(HIT);
    }
    await h.edgecache.cache.drain();
    const stats = h.edgecache.cache.stats();
    const [memory, disk] = stats.tiers;
    expect(stats.notFound.entries).toBe(20);
    expect(memory!.entries).toBeLessThanOrEqual(200);
    expect(disk!.entries).toBeLessThanOrEqual(300);
    expect(disk!.bytes).toBeLessThanOrEqual(1_000_000);
    expect(stats.indexedKeys).toBeLessThanOrEqual(500);
    expect((await get(item)).headers.get("cache-status")).toMatch(HIT);
  });
});

describe("a reply sent before the request's body came in", () => {
  // The body follows the reply: left unread, it must not meet a connection dropped under a
  // client told keep-alive (its next request on it failed).
  it.each([
    ["404", "/nope", {}, 400_000],
    ["403 (a cross-origin write)", "/v1/users", { origin: "http://elsewhere.test" }, 400_000],
    ["413 (too large)", "/v1/users", {}, 2_000_000],
  ])(
    "a %s says Connection: close, then reads the body and closes without a reset",
    async (what, path, headers, size) => {
      const h = await started();
      const port = Number(new URL(h.url).port);
      const socket = connect(port, "127.0.0.1");
      const errors: Error[] = [];
      socket.on("error", (err) => errors.push(err));
      const fields = Object.entries(headers)
        .map(([n, v]) => `${n}: ${v}\r\n`)
        .join("");
      const head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n${fields}Content-Length: ${size}\r\n\r\n`;
      const { replies } = await exchange(port, head, ["POST"], { socket });
      expect(replies[0]!.status).toBe(Number(what.slice(0, 3)));
      expect(replies[0]!.header("connection")).toBe("close");
      const closed = once(socket, "close");
      socket.end(Buffer.alloc(size, "x"));
      await closed;
      expect(errors).toEqual([]);
      expect((await fetchReply(`${h.url}/v1/users?limit=1`)).status).toBe(200);
    },
  );
});

describe("restart", () => {
  it("serves entries from the SQLite tier after a restart, and a PATCH still changes them", async () => {
    const cwd = tempDir();
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    const options = { cwd, demo: { users: 200, orders: 1000 }, port: 0 };
    const before = await createNodeEdgecache(options);
    const user = (await send(before, "GET", "/v1/users?limit=1&sort=firstName")).json
      .data[0] as Row;
    const item = `/v1/users/${user.id}`;
    const list = `/v1/users?firstName=${user.firstName}&limit=1000`;
    await send(before, "GET", item);
    await send(before, "GET", list);
    await before.close();

    const after = await createNodeEdgecache(options);
    cleanup.push(() => after.close());
    const { url } = await after.listen();
    for (const path of [item, list]) {
      const r = await fetchReply(`${url}${path}`);
      expect(r.headers.get("cache-status"), path).toMatch(HIT);
    }
    expect(after.cache.stats().tiers[1]).toMatchObject({ name: "sqlite", hits: 2 });

    const patched = await fetchReply(`${url}${item}`, {
      method: "PATCH",
      body: JSON.stringify({ firstName: "Restarted" }),
    });
    expect(patched.status).toBe(200);
    // The restored entry was back-filled into memory by the read above, so the write
    // patches it in place: a hit with the new row.
    const itemAfter = await fetchReply(`${url}${item}`);
    expect(itemAfter.headers.get("cache-status")).toMatch(HIT);
    expect(itemAfter.json).toEqual({ ...user, firstName: "Restarted" });
    const listAfter = await fetchReply(`${url}${list}`);
    expect((listAfter.json.data as Row[]).map((u) => u.id)).not.toContain(user.id);
  });
});

/** This environment without what would change the command. */
function cliEnv(): NodeJS.ProcessEnv {
  const { PORT: _port, EDGECACHE_ADMIN_TOKEN: _token, REDIS_URL: _redis, ...env } = process.env;
  return env;
}

describe("restart after the database changed behind edgecache's back", () => {
  it.each([
    ["another program wrote to the database while edgecache was stopped", "write"],
    ["edgecache did not shut down cleanly", "crash"],
  ])("the persistent tier is emptied when %s", async (_, how) => {
    const cwd = tempDir();
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    const options = { cwd, demo: { users: 50, orders: 100 }, port: 0 };
    let item: string;
    if (how === "crash") {
      // A real process killed with -9: it leaves its lock behind, and no stamp.
      const child = spawn(process.execPath, [CLI, "serve", "--port", "0"], {
        cwd,
        env: cliEnv(),
        stdio: ["ignore", "pipe", "pipe"],
      });
      const [, url] = await waitForLine(child, /data API:\s+(http:\/\/[^/\s]+)\/v1\//);
      const user = (await fetchReply(`${url}/v1/users?limit=1`)).json.data[0] as Row;
      item = `/v1/users/${user.id}`;
      await fetchReply(`${url}${item}`);
      const died = new Promise((done) => child.once("exit", done));
      child.kill("SIGKILL");
      await died;
    } else {
      const before = await createNodeEdgecache(options);
      const user = (await send(before, "GET", "/v1/users?limit=1")).json.data[0] as Row;
      item = `/v1/users/${user.id}`;
      await send(before, "GET", item);
      await before.close();
      const db = new Database(before.databasePath);
      db.prepare("UPDATE users SET lastName = 'Outside' WHERE id = ?").run(user.id);
      db.close();
    }

    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const after = await createNodeEdgecache(options);
    cleanup.push(() => after.close());
    expect(warn.mock.calls.flat().join(" ")).toMatch(/emptied \d+ entries/);
    warn.mockRestore();
    const r = await send(after, "GET", item);
    expect(r.headers.get("cache-status")).toMatch(MISS_STORED);
    if (how === "write") expect(r.json.lastName).toBe("Outside");
  });
});

describe("config", () => {
  const badOption = expectBadOption;

  it.each([
    [-1, /option "port": expected .+, got -1/],
    ["8080", /option "port": expected .+, got "8080"/],
    [70_000, /option "port": expected .+, got 70000/],
    [80.5, /option "port": expected .+, got 80.5/],
  ])("refuses port %j in expected/got form", (port, pattern) => {
    badOption(() => validateConfig({ port }), pattern);
  });

  it.each([
    [{ trustedProxies: "127.0.0.1" }, /option "trustedProxies": expected an array of IP addresses/],
    [
      { trustedProxies: ["proxy.local"] },
      /option "trustedProxies": expected an array of IP addresses, got "proxy.local" at trustedProxies\[0\]/,
    ],
    [{ allowedHosts: [""] }, /option "allowedHosts": expected an array of host names/],
    [{ proxy: { origins: [{ origin: "http://a" }], allowedHosts: [1] } }, /"proxy.allowedHosts"/],
  ])("refuses bad access settings in expected/got form (%j)", (config, pattern) => {
    badOption(() => validateConfig(config), pattern);
  });

  it.each([
    [{ disk: { maxBytes: 0 } }, /option "disk.maxBytes": expected an integer >= 1, got 0/],
    [
      { disk: { maxEntries: "1e5" } },
      /option "disk.maxEntries": expected an integer >= 1, got "1e5"/,
    ],
    [{ disk: 100 }, /option "disk": expected an object, got 100/],
    [
      { disk: { maxEntry: 5 } },
      /unknown option "disk.maxEntry": expected one of disk.maxBytes, disk.maxEntries/,
    ],
    [
      { notFound: { maxEntries: 0.5 } },
      /option "notFound.maxEntries": expected an integer >= 1, got 0.5/,
    ],
    [
      { memory: { maxEntries: -1 } },
      /option "memory.maxEntries": expected an integer >= 1, got -1/,
    ],
    [
      { proxy: { origins: [{ origin: "http://a" }], disk: { maxBytes: -5 } } },
      /option "proxy.disk.maxBytes": expected an integer >= 1, got -5/,
    ],
    [
      { redis: { url: "redis://127.0.0.1:6379", reloadLists: "yes" } },
      /option "redis.reloadLists": expected true or false, got "yes"/,
    ],
  ])("refuses bad bounds in expected/got form (%j)", (config, pattern) => {
    badOption(() => validateConfig(config), pattern);
  });

  it("refuses an unknown key, naming it and the known ones", () => {
    badOption(
      () => validateConfig({ prot: 8080 }),
      /unknown option "prot" \(did you mean "port"\?\): expected one of database, .*port/,
    );
  });

  it.each([
    [{ views: {} }, /option "views": expected an array, got/],
    [
      { views: [{ base: "users", joins: [] }] },
      /option "views\[0\]\.name": expected a string, got undefined/,
    ],
    [
      {
        views: [
          { name: "v", base: "users", joins: [{ as: "o", table: "orders", references: "id" }] },
        ],
      },
      /option "views\[0\]\.joins\[0\]\.foreignKey": expected a string, got undefined/,
    ],
  ])("refuses bad views in expected/got form (%j)", (config, pattern) => {
    badOption(() => validateConfig(config), pattern);
  });

  it("accepts a complete, valid config unchanged", () => {
    const config = {
      database: "app.db",
      ttl: 60,
      staleWhileRevalidate: 10,
      routes: { users: { ttl: 5 } },
      memory: { maxBytes: 1_000_000 },
      cacheFile: false as const,
      disk: { maxBytes: 10_000_000, maxEntries: 5000 },
      notFound: { maxEntries: 100 },
      port: 0,
      hostname: "127.0.0.1",
      trustedProxies: ["127.0.0.1", "::1"],
      allowedHosts: ["cache.example.com"],
      views: [
        {
          name: "usersWithOrders",
          base: "users",
          joins: [{ as: "orders", table: "orders", foreignKey: "userId", references: "id" }],
        },
      ],
    };
    expect(validateConfig(structuredClone(config))).toEqual(config);
  });

  it("reports a bad value in edgecache.config.json as E_BAD_OPTION", async () => {
    const cwd = tempDir();
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    writeFileSync(join(cwd, "edgecache.config.json"), JSON.stringify({ port: -1 }));
    await expect(loadConfig(cwd)).rejects.toMatchObject({
      code: "E_BAD_OPTION",
      message: expect.stringMatching(/option "port": expected .+, got -1/),
    });
    writeFileSync(join(cwd, "edgecache.config.json"), "{ not json");
    await expect(loadConfig(cwd)).rejects.toMatchObject({
      code: "E_BAD_OPTION",
      message: expect.stringContaining("edgecache.config.json"),
    });
    await expect(loadConfig(cwd, "missing.json")).rejects.toMatchObject({
      code: "E_BAD_OPTION",
      message: expect.stringContaining(resolve(cwd, "missing.json")),
    });
  });

  it("finds no config in a directory without one", async () => {
    const cwd = tempDir();
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    expect(await loadConfig(cwd)).toBeUndefined();
  });

  it("serves your own SQLite file and views named by edgecache.config.json", async () => {
    const cwd = tempDir();
    booksDatabase(cwd);
    writeFileSync(
      join(cwd, "edgecache.config.json"),
      JSON.stringify({
        database: "books.db",
        views: [
          {
            name: "booksWithReviews",
            base: "books",
            joins: [{ as: "reviews", table: "reviews", foreignKey: "bookId", references: "id" }],
          },
        ],
      }),
    );
    const loaded = await loadConfig(cwd);
    expect(loaded?.path).toBe(join(cwd, "edgecache.config.json"));
    const h = await started(loaded!.config, cwd);
    expect(h.edgecache.demo).toBe(false);

    const books = await fetchReply(`${h.url}/v1/books`);
    expect(books.status).toBe(200);
    expect(books.json).toEqual({
      data: h.fresh("SELECT * FROM books ORDER BY id"),
      limit: 20,
      offset: 0,
    });
    expect((await fetchReply(`${h.url}/v1/users`)).status).toBe(404);

    const view = `${h.url}/v1/booksWithReviews/1`;
    await fetchReply(view);
    const review = await fetchReply(`${h.url}/v1/reviews`, {
      method: "POST",
      body: JSON.stringify({ bookId: 1, stars: 3 }),
    });
    expect(review.status).toBe(201);
    const shown: Reply = await fetchReply(view);
    expect(shown.json.reviews).toEqual(
      h.fresh("SELECT * FROM reviews WHERE bookId = 1 ORDER BY id"),
    );
    expect((shown.json.reviews as Row[]).map((r) => r.id)).toContain(review.json.id);
  });

  it("refuses a database path with no file, naming the path", async () => {
    const cwd = tempDir();
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    await expect(createNodeEdgecache({ cwd, database: "missing.db" })).rejects.toThrow(
      `no SQLite file at ${join(cwd, "missing.db")}`,
    );
  });

  it("a config naming the demo's ./edgecache.db starts before the demo made it, and again after", async () => {
    const cwd = tempDir();
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    for (const start of [1, 2]) {
      const ec = await createNodeEdgecache({ cwd, database: "./edgecache.db", cacheFile: false });
      expect(ec.demo, `start ${start}`).toBe(false);
      expect(ec.databasePath).toBe(join(cwd, "edgecache.db"));
      expect([...ec.api.schema.tables.keys()].sort()).toEqual(["orders", "users"]);
      await ec.close();
    }
  });
});

describe("the CLI", () => {
  it("serves the demo with `edgecache serve --port 0` and prints the URL", async () => {
    const cwd = tempDir();
    const child = spawn(process.execPath, [CLI, "serve", "--port", "0"], {
      cwd,
      env: cliEnv(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    cleanup.push(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((done) => child.once("exit", done));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(cwd, { recursive: true, force: true });
    });

    const m = await waitForLine(child, /data API:\s+(http:\/\/[^/\s]+)\/v1\/\{([^}]*)\}/);
    const url = m[1]!;
    expect(m[2]!.split(",")).toEqual(
      expect.arrayContaining(["users", "orders", "usersWithOrders"]),
    );

    const users = await fetchReply(`${url}/v1/users`);
    expect(users.status).toBe(200);
    expect(users.json.data).toHaveLength(20);
    expect((await fetchReply(`${url}/v1/users`)).headers.get("cache-status")).toMatch(HIT);
    expect((await fetchReply(`${url}/_edgecache/stats`)).json.hits).toBe(1);

    const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  }, 60_000);
});
