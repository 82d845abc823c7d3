import { rmSync } from "node:fs";
import { connect } from "node:net";
import Database from "better-sqlite3";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { edgecacheWorker } from "../../src/adapter/cloudflare/worker.ts";
import { validateConfig } from "../../src/adapter/node/config.ts";
import { type RunningServer, startServer } from "../../src/adapter/node/server/server.ts";
import { createDataApi } from "../../src/app/data-api.ts";
import type { DataRoute } from "../../src/app/data-routes.ts";
import { edgecacheApp } from "../../src/app/edgecache-app.ts";
import { Cache } from "../../src/core/cache/index.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { exchange } from "../adapter/node/raw-client.ts";
import { fakeClock } from "../helpers/chaos-store.ts";
import { booksDatabase, expectBadOption, reply, startEdgecache, tempDir } from "./harness.ts";

// The browser layer of the Node data API (docs/guides/data-api.md, "Browser and CDN
// caching"): by default every answer is `no-cache` and a conditional request for a cached
// response is a 304 from memory, on each of Node's paths, without a database statement; a
// route may let browsers (and CDNs) keep its answers for a stated bound.

// books: private to each browser; shelves: shared caches too; reviews: no route (no-cache).
const ROUTES: Record<string, DataRoute> = {
  books: { browser: { maxAge: 60 } },
  shelves: { browser: { maxAge: 30, shared: true }, staleWhileRevalidate: 15 },
};

let dir: string;
/** Statements the database ran (better-sqlite3's verbose hook sees each execution). */
let statements = 0;
let db: Database.Database;
let app: Hono;
const clock = fakeClock(Date.now());
const servers: RunningServer[] = [];
/** Requests the raw path's server left to node:http. */
let rawMissed = 0;
/** The Hono app, node:http's listener (raw path off) and the raw path, by name. */
const paths: Record<string, (path: string, headers?: Record<string, string>) => Promise<Response>> =
  {};

beforeAll(async () => {
  dir = tempDir("edgecache-browser-");
  db = new Database(booksDatabase(dir), { verbose: () => statements++ });
  db.exec(`CREATE TABLE shelves (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    INSERT INTO shelves VALUES (1, 'novels'), (2, 'travel');`);
  const cache = new Cache({ tiers: [memoryStore()], now: clock.now });
  const api = await createDataApi({
    source: sqliteSource({ database: db }),
    cache,
    routes: ROUTES,
    now: clock.now,
  });
  app = edgecacheApp(api.app, { cache });
  // As `edgecache serve` starts it (modeServer): hits answered before the app.
  const raw = await startServer({ app, cache, now: clock.now, port: 0 });
  const http = await startServer({
    app,
    cache,
    now: clock.now,
    rawHits: false,
    port: 0,
  });
  servers.push(raw, http);
  raw.server.prependListener("request", () => rawMissed++);
  paths.app = async (path, headers = {}) => app.request(path, { headers });
  paths.http = (path, headers = {}) => fetch(http.url + path, { headers });
  // A connection of its own per request: one that met a miss stays node:http's for good.
  paths.raw = async (path, headers = {}) => {
    const socket = connect(Number(new URL(raw.url).port), "127.0.0.1");
    const fields = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
    const head = `GET ${path} HTTP/1.1\r\nHost: ${new URL(raw.url).host}\r\n${fields.join("")}\r\n`;
    try {
      const [wire] = (await exchange(0, head, ["GET"], { socket })).replies;
      return new Response(wire!.status === 304 ? null : new Uint8Array(wire!.body), {
        status: wire!.status,
        headers: wire!.fields,
      });
    } finally {
      socket.destroy();
    }
  };
});

afterAll(async () => {
  for (const s of servers) await s.close(0);
  db?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Statements run while `fn` runs. */
async function counted<T>(fn: () => Promise<T>): Promise<{ value: T; statements: number }> {
  const before = statements;
  const value = await fn();
  return { value, statements: statements - before };
}

describe.each(["app", "http", "raw"])("on Node's %s path", (path) => {
  // Each path's own URLs: its first request is a miss.
  const n = ["app", "http", "raw"].indexOf(path) + 1;
  const get = (target: string, headers?: Record<string, string>) =>
    paths[path]!(target, headers).then(reply);

  it("answers no-cache with an ETag by default, and a matching If-None-Match on a hit with a 304 from memory: no statement", async () => {
    const target = `/v1/reviews?limit=${n}`;
    const first = await get(target);
    expect(first.status).toBe(200);
    expect(first.headers.get("cache-control")).toBe("no-cache");
    const etag = first.headers.get("etag")!;
    expect(etag).toMatch(/^"[^"]+"$/);
    await get(target); // a hit: the raw and node:http paths answer it from here on

    const missed = rawMissed;
    const hit = await counted(() => get(target, { "if-none-match": etag }));
    // On the raw path, answered before node:http parsed it.
    if (path === "raw") expect(rawMissed).toBe(missed);
    expect(hit.value.status).toBe(304);
    expect(hit.value.text).toBe("");
    expect(hit.value.headers.get("etag")).toBe(etag);
    expect(hit.value.headers.get("cache-control")).toBe("no-cache");
    expect(hit.value.headers.get("cache-status")).toMatch(/^edgecache; hit; ttl=\d+$/);
    expect(hit.statements).toBe(0);
    // A weak validator and a list of them match too (RFC 9110 13.1.2).
    const weak = await counted(() => get(target, { "if-none-match": `"x", W/${etag}` }));
    expect(weak.value.status).toBe(304);
    expect(weak.statements).toBe(0);
    // Another validator: the body, still from memory.
    const other = await counted(() => get(target, { "if-none-match": '"other"' }));
    expect(other.value.status).toBe(200);
    expect(other.value.text).toBe(first.text);
    expect(other.statements).toBe(0);
  });

  it("a browser route answers private, max-age=N, states the bound in Cache-Status and sends Age 0 on a hit of an old entry", async () => {
    const target = `/v1/books?limit=${n}`;
    const first = await get(target);
    expect(first.headers.get("cache-control")).toBe("private, max-age=60");
    expect(first.headers.get("cache-status")).toMatch(
      /^edgecache; fwd=miss; stored; ttl=\d+; detail="browser-bound=60"$/,
    );
    clock.advance(3_600_000); // an hour in edgecache's memory, still current
    const missed = rawMissed;
    const hit = await counted(() => get(target));
    if (path === "raw") expect(rawMissed).toBe(missed);
    expect(hit.value.status).toBe(200);
    expect(hit.value.headers.get("cache-control")).toBe("private, max-age=60");
    expect(hit.value.headers.get("cache-status")).toMatch(
      /^edgecache; hit; ttl=\d+; detail="browser-bound=60"$/,
    );
    // Age counts from the reply: a browser may keep it its 60 s, not 60 s minus an hour.
    expect(hit.value.headers.get("age")).toBe("0");
    expect(hit.statements).toBe(0);

    const revalidated = await counted(() =>
      get(target, { "if-none-match": first.headers.get("etag")! }),
    );
    expect(revalidated.value.status).toBe(304);
    expect(revalidated.value.headers.get("cache-control")).toBe("private, max-age=60");
    expect(revalidated.statements).toBe(0);
  });

  it("a shared route drops private, never says public, and counts stale-while-revalidate in the bound", async () => {
    const target = `/v1/shelves?limit=${n}`;
    await get(target);
    const hit = await get(target);
    const cc = hit.headers.get("cache-control")!;
    expect(cc).toBe("max-age=30, stale-while-revalidate=15");
    expect(cc).not.toMatch(/public/);
    expect(hit.headers.get("cache-status")).toMatch(/; detail="browser-bound=45"$/);
  });
});

describe("the browser layer's edges", () => {
  const get = (target: string, headers?: Record<string, string>) =>
    paths.app!(target, headers).then(reply);

  it("a 404 of a browser route stays no-cache, without a bound: the row may be created next", async () => {
    const missing = await get("/v1/books/999");
    expect(missing.status).toBe(404);
    expect(missing.headers.get("cache-control")).toBe("no-cache");
    expect((await get("/v1/books/999")).headers.get("cache-status")).toMatch(
      /^edgecache; hit; ttl=\d+$/,
    );
  });

  it("a response patched by a write keeps its route's headers and bound", async () => {
    const item = "/v1/books/2";
    await get(item);
    const write = await app.request(item, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ pages: 301 }),
    });
    expect(write.status).toBe(200);
    const after = await get(item);
    expect(after.json.pages).toBe(301);
    expect(after.headers.get("cache-control")).toBe("private, max-age=60");
    expect(after.headers.get("cache-status")).toMatch(/; detail="browser-bound=60"$/);
  });

  it("routes set in the config file reach the Node data API", async () => {
    const cwd = tempDir("edgecache-browser-config-");
    const h = await startEdgecache(
      validateConfig({
        database: booksDatabase(cwd),
        routes: { books: { browser: { maxAge: 5 } } },
      }),
      cwd,
    );
    try {
      const r = reply(await h.edgecache.app.request("/v1/books/1"));
      expect((await r).headers.get("cache-control")).toBe("private, max-age=5");
      const reviews = await reply(await h.edgecache.app.request("/v1/reviews/1"));
      // A resource without a route: the default.
      expect(reviews.headers.get("cache-control")).toBe("no-cache");
    } finally {
      await h.close();
    }
  });
});

describe("routes are checked where they are given", () => {
  const bad: [unknown, RegExp][] = [
    [
      { books: { browser: { maxAge: 60 }, maxAge: 60 } },
      /"routes\.books\.maxAge": expected one of ttl, staleWhileRevalidate, browser/,
    ],
    [
      { books: { browser: { maxage: 60 } } },
      /"routes\.books\.browser\.maxage": expected one of maxAge, shared/,
    ],
    [
      { books: { browser: {} } },
      /"routes\.books\.browser\.maxAge": expected a whole number of seconds, got undefined/,
    ],
    [
      { books: { browser: { maxAge: 1.5 } } },
      /"routes\.books\.browser\.maxAge": expected a whole number of seconds, got 1\.5/,
    ],
    [
      { books: { browser: { maxAge: -1 } } },
      /"routes\.books\.browser\.maxAge": expected a whole number/,
    ],
    [
      { books: { browser: { maxAge: 60, shared: "yes" } } },
      /"routes\.books\.browser\.shared": expected true or false/,
    ],
    [{ books: { browser: 60 } }, /"routes\.books\.browser": expected an object/],
    [
      { books: { staleWhileRevalidate: 0.5 } },
      /"routes\.books\.staleWhileRevalidate": expected a whole number/,
    ],
    [{ books: { ttl: 0 } }, /"routes\.books\.ttl": expected a number >= 1, got 0/],
    [{ books: 60 }, /"routes\.books": expected an object/],
  ];

  it.each(bad)("the config file refuses %j", (routes, pattern) => {
    expectBadOption(() => validateConfig({ routes }), pattern);
  });

  it.each(bad)("a Worker's options refuse %j when it is built", (routes, pattern) => {
    expectBadOption(() => edgecacheWorker({ routes: routes as never }), pattern);
  });

  it("createDataApi refuses them too, and a route naming no resource of the database", async () => {
    const cache = new Cache({ tiers: [memoryStore()] });
    const source = sqliteSource({ database: db });
    await expect(
      createDataApi({ source, cache, routes: { books: { browser: { maxAge: 1.5 } } } }),
    ).rejects.toMatchObject({
      code: "E_BAD_OPTION",
      message: expect.stringContaining("routes.books.browser.maxAge"),
    });
    await expect(
      createDataApi({ source, cache, routes: { book: { ttl: 60 } } }),
    ).rejects.toMatchObject({
      code: "E_BAD_OPTION",
      message: expect.stringMatching(
        /"routes\.book": expected a resource of the database \(books, reviews, shelves\), got "book"/,
      ),
    });
  });
});
