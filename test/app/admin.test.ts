import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createTenantNode } from "../../src/adapter/node/tenants/dispatcher.ts";
import { originSet } from "../../src/app/access.ts";
import { createAdminApi } from "../../src/app/admin.ts";
import type { Row } from "../../src/core/data/query.ts";
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import {
  expectClientError,
  type Harness,
  HIT,
  MISS_STORED,
  reply,
  send,
  startEdgecache,
  tempDir,
} from "./harness.ts";
import { raw } from "./proxy/harness.ts";

// The admin API under /_edgecache, over the real Node wiring (demo SQLite file, memory and
// SQLite tiers). Most tests authenticate with a token; the auth tests cover the rest.

const TOKEN = "s3cret-admin-token";
const AUTH = { authorization: `Bearer ${TOKEN}` };

let h: Harness;

beforeEach(async () => {
  h = await startEdgecache({ adminToken: TOKEN });
});

afterEach(async () => {
  await h.close();
});

const get = (path: string) => send(h.edgecache, "GET", path);
const admin = (method: string, path: string, body?: unknown) =>
  send(h.edgecache, method, `/_edgecache${path}`, body, AUTH);
const status = (path: string) => get(path).then((r) => r.headers.get("cache-status"));

/** A user, an order of nobody's first page, and the four cached reads built from them. */
async function warmFour() {
  const user = h.fresh(
    "SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.userId = u.id) ORDER BY id LIMIT 1",
  )[0]!;
  const order = h.fresh("SELECT * FROM orders ORDER BY id DESC LIMIT 1")[0]!;
  const paths = {
    item: `/v1/users/${user.id}`,
    list: `/v1/users?firstName=${user.firstName}&limit=1000`,
    orders: "/v1/orders?limit=5",
    order: `/v1/orders/${order.id}`,
  };
  for (const path of Object.values(paths)) {
    await get(path);
    expect(await status(path)).toMatch(HIT);
  }
  return { user, order, paths };
}

describe("stats", () => {
  it("reports hits, misses and each tier's entries and bytes as JSON", async () => {
    await get("/v1/users?limit=5");
    await get("/v1/users?limit=5");
    const r = await admin("GET", "/stats");
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ hits: 1, misses: 1, indexedKeys: 1 });
    expect(r.json.tiers.map((t: Row) => t.name)).toEqual(["memory", "sqlite"]);
    for (const tier of r.json.tiers) {
      expect(tier.entries).toBe(1);
      expect(tier.bytes).toBeGreaterThan(0);
    }
  });

  it.each(["/stats?format=prometheus", "/metrics"])(
    "serves Prometheus text at %s",
    async (path) => {
      await get("/v1/users?limit=5");
      await get("/v1/users?limit=5");
      const r = await admin("GET", path);
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toMatch(/^text\/plain/);
      expect(r.text).toContain("# TYPE edgecache_hits_total counter\nedgecache_hits_total 1\n");
      expect(r.text).toContain("edgecache_misses_total 1\n");
      expect(r.text).toContain('edgecache_tier_entries{tier="memory"} 1\n');
      expect(r.text).toContain('edgecache_tier_entries{tier="sqlite"} 1\n');
      // Every sample line is `name{labels} value` (blank lines may separate families; a
      // process gauge not yet measured is NaN).
      for (const line of r.text.trimEnd().split("\n")) {
        if (!line.startsWith("#") && line !== "")
          expect(line).toMatch(/^edgecache_[a-z0-9_]+(\{[^}]*\})? ([\d.e+-]+|NaN|Nan)$/);
      }
    },
  );
});

describe("keys", () => {
  it("lists cached keys with their tags and list dependencies", async () => {
    const { user, paths } = await warmFour();
    const r = await admin("GET", "/keys");
    expect(r.status).toBe(200);
    expect(r.json.truncated).toBe(false);
    const byKey = new Map((r.json.keys as Row[]).map((k) => [k.key, k]));
    expect([...byKey.keys()].sort()).toEqual(
      [
        `GET ${paths.item}`,
        `GET /v1/users?firstName=${user.firstName}&limit=1000`,
        "GET /v1/orders?limit=5",
        `GET ${paths.order}`,
      ].sort(),
    );
    expect(byKey.get(`GET ${paths.item}`)).toMatchObject({
      hits: 1,
      tags: expect.arrayContaining(["users", `users#${user.id}`]),
      lists: [],
    });
    expect(byKey.get("GET /v1/orders?limit=5")).toMatchObject({
      lists: [{ table: "orders", offset: 0, limit: 5, count: 5 }],
    });
  });

  it("filters keys by ?prefix= and by ?tag=", async () => {
    const { user, paths } = await warmFour();
    const keysOf = async (query: string) =>
      ((await admin("GET", `/keys?${query}`)).json.keys as Row[]).map((k) => k.key).sort();

    expect(await keysOf(`prefix=${encodeURIComponent("GET /v1/orders")}`)).toEqual(
      ["GET /v1/orders?limit=5", `GET ${paths.order}`].sort(),
    );
    expect(await keysOf(`tag=${encodeURIComponent(`users#${user.id}`)}`)).toEqual(
      [`GET ${paths.item}`, `GET /v1/users?firstName=${user.firstName}&limit=1000`].sort(),
    );
    expect(await keysOf(`tag=orders&prefix=${encodeURIComponent("GET /v1/orders?")}`)).toEqual([
      "GET /v1/orders?limit=5",
    ]);
  });

  it("shows one key's tiers, ETag and remaining time to live", async () => {
    const { paths } = await warmFour();
    const key = `GET ${paths.item}`;
    const etag = (await get(paths.item)).headers.get("etag");
    const r = await admin("GET", `/keys/${encodeURIComponent(key)}`);
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      key,
      status: 200,
      etag,
      tiers: [
        { tier: "memory", present: true },
        { tier: "sqlite", present: true },
      ],
    });
    expect(r.json.ttlSeconds).toBeGreaterThan(86_000);
    expect(r.json.ttlSeconds).toBeLessThanOrEqual(86_400);

    // Evicted from memory, still in SQLite: the details say which tier holds it.
    await h.edgecache.tiers[0]!.delete([key]);
    const after = await admin("GET", `/keys/${encodeURIComponent(key)}`);
    expect(after.json.tiers).toEqual([
      { tier: "memory", present: false },
      { tier: "sqlite", present: true },
    ]);
  });

  it("shows the details of a key whose query holds a percent-escape", async () => {
    const email = h.fresh("SELECT email FROM users LIMIT 1")[0]!.email as string;
    const path = `/v1/users?email=${encodeURIComponent(email)}`;
    await get(path);
    const listed = ((await admin("GET", "/keys")).json.keys as Row[]).map((k) => k.key as string);
    expect(listed).toHaveLength(1);
    const key = listed[0]!;
    expect(key).toContain("%40");

    const r = await admin("GET", `/keys/${encodeURIComponent(key)}`);
    expect(r.status).toBe(200);
    expect(r.json.key).toBe(key);
  });

  it("answers an unknown key with 404 E_NOT_FOUND", async () => {
    const r = await admin("GET", `/keys/${encodeURIComponent("GET /v1/users?limit=999")}`);
    expectClientError(r, 404, "E_NOT_FOUND");
  });
});

describe("manual invalidation", () => {
  type Ctx = Awaited<ReturnType<typeof warmFour>>;
  type Which = keyof Ctx["paths"];

  it.each<[string, (c: Ctx) => unknown, Which[]]>([
    ["key", (c) => ({ key: `GET ${c.paths.item}` }), ["item"]],
    [
      "keys",
      (c) => ({ keys: [`GET ${c.paths.item}`, "GET /v1/orders?limit=5"] }),
      ["item", "orders"],
    ],
    ["prefix", () => ({ prefix: "GET /v1/orders" }), ["orders", "order"]],
    ["tag", (c) => ({ tag: `users#${c.user.id}` }), ["item", "list"]],
    ["tags", (c) => ({ tags: [`orders#${c.order.id}`] }), ["order"]],
    ["table", () => ({ table: "orders" }), ["orders", "order"]],
    ["row of orders", (c) => ({ row: { table: "orders", id: c.order.id } }), ["order"]],
    ["row of users", (c) => ({ row: { table: "users", id: c.user.id } }), ["item", "list"]],
  ])(
    "invalidates by %s: those entries miss next time, the others still hit",
    async (_, body, gone) => {
      const ctx = await warmFour();
      const r = await admin("POST", "/invalidate", body(ctx));
      expect(r.status).toBe(200);
      expect(r.json).toEqual({ invalidated: gone.length });
      for (const [which, path] of Object.entries(ctx.paths)) {
        const expected = gone.includes(which as Which) ? MISS_STORED : HIT;
        expect(await status(path), which).toMatch(expected);
      }
    },
  );

  it("removes an invalidated entry from every tier", async () => {
    const { paths } = await warmFour();
    const key = `GET ${paths.item}`;
    await admin("POST", "/invalidate", { key });
    for (const tier of h.edgecache.tiers) expect(await tier.get(key), tier.name).toBeUndefined();
    expectClientError(await admin("GET", `/keys/${encodeURIComponent(key)}`), 404, "E_NOT_FOUND");
  });

  it.each([
    ['{"key": 1}', "key"],
    ['{"keys": "GET /v1/users"}', "keys"],
    ['{"tag": ["users"]}', "tag"],
    ['{"tags": [1]}', "tags"],
    ['{"table": 5}', "table"],
    ['{"row": {"table": "users"}}', "row"],
    ['{"row": "users#1"}', "row"],
    ['{"prefix": ""}', "prefix"],
    // Crafted: values whose String() throws, an array nested past any recursive walk.
    ['{"key": {"toString": 1}}', "key: expected a string, got an object"],
    ['{"tag": {"toString": 1}}', "tag: expected a string, got an object"],
    ['{"prefix": {"toString": 1}}', "prefix: expected a non-empty string, got an object"],
    ['{"table": {"toString": 1}}', "table: expected a string, got an object"],
    ['{"keys": [{"toString": 1}]}', "keys: expected an array of strings, got an object at keys[0]"],
    ['{"row": {"table": "users", "id": {"toString": 1}}}', "row"],
    ['{"tgas": ["users"]}', 'unknown field "tgas" (did you mean "tags"?)'],
    ["null", "got null"],
    ["5", "got 5"],
    ["{}", "body"],
    ["[]", "body"],
    ["not json", "body"],
  ])("refuses the body %s with a 400 naming %s", async (body, field) => {
    const { paths } = await warmFour();
    const r = await admin("POST", "/invalidate", body);
    expectClientError(r, 400, "E_BAD_BODY", field);
    expect(await status(paths.item)).toMatch(HIT);
  });

  it.each([50_000, 200_000])(
    "refuses tags nested %i deep with a 400, not a stack overflow's 500",
    async (depth) => {
      const body = `{"tags": ${"[".repeat(depth)}${"]".repeat(depth)}}`;
      expectClientError(await admin("POST", "/invalidate", body), 400, "E_BAD_BODY", "nested");
    },
  );
});

describe("query caches", () => {
  it("a node given none answers /queries with 404 saying how to give them", async () => {
    const r = await admin("GET", "/queries");
    expect(r.status).toBe(404);
    expect(JSON.stringify(r.json)).toContain("queryCaches");
  });

  it("lists each query cache's shapes with how exactly each is followed, behind the token", async () => {
    const db = new Database(":memory:");
    db.exec("create table users (id integer primary key, name text not null)");
    const sql = sqlCache({ client: db, tiers: [memoryStore()], capture: false });
    await sql.query("select id, name from users where name = ?", ["Ann"]);
    const api = createAdminApi({ cache: sql.engine, token: TOKEN, queryCaches: { sql } });
    const ask = (path: string, headers: Record<string, string> = AUTH) =>
      api.request(`http://localhost${path}`, { headers });
    expect((await ask("/queries", {})).status).toBe(401);
    expect(await (await ask("/stats")).json()).toMatchObject({ queryCaches: ["sql"] });
    expect(await (await ask("/queries")).json()).toEqual({
      caches: [
        {
          name: "sql",
          hits: 0,
          misses: 1,
          hitRate: 0,
          stored: 1,
          writes: "tables",
          registrations: expect.objectContaining({ exact: expect.any(Number) }),
          shapes: [expect.objectContaining({ sql: "select id, name from users where name = ?" })],
        },
      ],
    });
    await sql.close();
    db.close();
  });

  it("refuses queryCaches that are not query caches, naming the one", () => {
    expect(() =>
      createAdminApi({ cache: h.edgecache.cache, queryCaches: { orm: {} as never } }),
    ).toThrow(/option "queryCaches.orm": expected a query cache with getStats\(\)/);
  });
});

describe("auth", () => {
  it("with a token, answers 401 without a bearer or with a wrong one, and 200 with the right one", async () => {
    expectClientError(await get("/_edgecache/stats"), 401, "E_UNAUTHORIZED");
    const wrong = await send(h.edgecache, "GET", "/_edgecache/stats", undefined, {
      authorization: "Bearer wrong",
    });
    expectClientError(wrong, 401, "E_UNAUTHORIZED");
    const prefixOnly = await send(h.edgecache, "GET", "/_edgecache/stats", undefined, {
      authorization: `Bearer ${TOKEN.slice(0, -1)}`,
    });
    expectClientError(prefixOnly, 401, "E_UNAUTHORIZED");
    expect((await admin("GET", "/stats")).status).toBe(200);
  });

  it("with a token, requires it from loopback clients too", async () => {
    const { url } = await h.edgecache.listen();
    const r = await reply(await fetch(`${url}/_edgecache/stats`));
    expectClientError(r, 401, "E_UNAUTHORIZED");
    const ok = await fetch(`${url}/_edgecache/stats`, { headers: AUTH });
    expect(ok.status).toBe(200);
    await ok.body?.cancel();
  });

  it("without a token, answers a loopback client over a real socket", async () => {
    const open = await startEdgecache();
    try {
      const { url } = await open.edgecache.listen();
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const r = await reply(await fetch(`${url}/_edgecache/stats`));
      expect(r.status).toBe(200);
      expect(r.json.tiers).toHaveLength(2);
      const inv = await fetch(`${url}/_edgecache/invalidate`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ table: "users" }),
      });
      expect(await inv.json()).toEqual({ invalidated: 0 });
    } finally {
      await open.close();
    }
  });

  it("without a token, refuses a request that did not come over a loopback socket", async () => {
    const open = await startEdgecache();
    try {
      const r = await send(open.edgecache, "GET", "/_edgecache/stats");
      expectClientError(r, 403, "E_FORBIDDEN", "EDGECACHE_ADMIN_TOKEN");
      // A forwarding header is the client's word, not the socket's address.
      const spoofed = await send(open.edgecache, "GET", "/_edgecache/stats", undefined, {
        "x-forwarded-for": "127.0.0.1",
      });
      expectClientError(spoofed, 403, "E_FORBIDDEN");
    } finally {
      await open.close();
    }
  });
});

describe("admin access behind a reverse proxy, from browsers, and before the body", () => {
  let open: Harness;
  let url: string;
  const start = async (options = {}) => {
    open = await startEdgecache(options);
    ({ url } = await open.edgecache.listen());
  };
  afterEach(async () => {
    await open?.close();
  });

  it("without a token, refuses a loopback peer that forwards for someone (a reverse proxy on this host)", async () => {
    await start();
    for (const [name, value] of [
      ["x-forwarded-for", "203.0.113.7"],
      ["forwarded", "for=203.0.113.7"],
      ["x-real-ip", "203.0.113.7"],
    ]) {
      const r = await raw(`${url}/_edgecache/stats`, { headers: { [name!]: value! } });
      expect(r.status).toBe(403);
      expect(JSON.parse(r.text).error.code).toBe("E_FORBIDDEN");
    }
    expect((await raw(`${url}/_edgecache/stats`)).status).toBe(200);
  });

  it("with trustedProxies, believes X-Forwarded-For from them only: its last untrusted entry is the client", async () => {
    await start({ trustedProxies: ["127.0.0.1"] });
    const status = async (xff?: string) =>
      (await raw(`${url}/_edgecache/stats`, xff ? { headers: { "x-forwarded-for": xff } } : {}))
        .status;
    expect(await status("203.0.113.7")).toBe(403);
    // A client that claims to be loopback: the proxy appends the address it heard from.
    expect(await status("127.0.0.1, 203.0.113.7")).toBe(403);
    // Someone on this machine, through the proxy.
    expect(await status("127.0.0.1")).toBe(200);
    // A trusted proxy that does not say whom it forwards for may forward anyone.
    expect(await status()).toBe(403);
  });

  it("refuses at start a token no HTTP header can carry, naming the setting and not showing it", () => {
    const cache = h.edgecache.cache;
    for (const token of ["sécret-token", "two words", "tab\there"]) {
      let thrown: unknown;
      try {
        createAdminApi({ cache, token });
      } catch (error) {
        thrown = error;
      }
      expect(thrown, token).toMatchObject({ code: "E_BAD_OPTION" });
      const { message } = thrown as Error;
      expect(message).toMatch(/EDGECACHE_ADMIN_TOKEN.*expected visible ASCII without spaces/);
      expect(message).not.toContain(token);
    }
  });

  it("refuses an empty token at start: set but empty is not 'no token'", async () => {
    const empty =
      /EDGECACHE_ADMIN_TOKEN.*set but empty: unset it for loopback-only access, or give a token/;
    expect(() => createAdminApi({ cache: h.edgecache.cache, token: "" })).toThrow(empty);
    const started = createTenantNode({ state: join(tempDir(), "t.db"), adminToken: "" });
    await expect(started).rejects.toMatchObject({ code: "E_BAD_OPTION" });
    await expect(started).rejects.toThrow(empty);
  });

  it("a node of tenants refuses such an operator token before it opens its state", async () => {
    const started = createTenantNode({ state: join(tempDir(), "t.db"), adminToken: "sécret" });
    await expect(started).rejects.toMatchObject({ code: "E_BAD_OPTION" });
    await expect(started).rejects.toThrow(/EDGECACHE_ADMIN_TOKEN.*visible ASCII/);
  });

  it("answers only the Host names it serves (DNS rebinding), loopback ones and allowedHosts", async () => {
    await start({ allowedHosts: ["admin.example"] });
    const port = new URL(url).port;
    const status = async (host: string) =>
      (await raw(`${url}/_edgecache/stats`, { headers: { host } })).status;
    const refused = await raw(`${url}/_edgecache/stats`, {
      headers: { host: `evil.example:${port}` },
    });
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.text).error).toMatchObject({ code: "E_FORBIDDEN" });
    expect(refused.text).toContain("allowedHosts");
    for (const host of [
      `localhost:${port}`,
      `127.0.0.1:${port}`,
      `[::1]:${port}`,
      "ADMIN.example",
    ]) {
      expect(await status(host)).toBe(200);
    }
    // The data API of a loopback node answers the same names (see node.test.ts).
    expect(
      (await raw(`${url}/v1/users?limit=1`, { headers: { host: "evil.example" } })).status,
    ).toBe(403);
    expect(
      (await raw(`${url}/v1/users?limit=1`, { headers: { host: "admin.example" } })).status,
    ).toBe(200);
  });

  it("refuses admin bodies that are not JSON (415) and requests from another Origin (403)", async () => {
    await start();
    const post = (headers: Record<string, string>) =>
      raw(`${url}/_edgecache/invalidate`, {
        method: "POST",
        headers,
        body: JSON.stringify({ table: "users" }),
      });
    const plain = await post({ "content-type": "text/plain" });
    expect(plain.status).toBe(415);
    expect(JSON.parse(plain.text).error.code).toBe("E_UNSUPPORTED_MEDIA_TYPE");
    expect((await post({})).status).toBe(415);
    const cross = await post({ "content-type": "application/json", origin: "http://evil.example" });
    expect(cross.status).toBe(403);
    expect((await post({ "content-type": "application/json", origin: "null" })).status).toBe(403);
    const same = await post({ "content-type": "application/json; charset=utf-8", origin: url });
    expect(same.status).toBe(200);
  });

  it("refuses a data API write a page of another origin had a browser send (CSRF), not one without Origin", async () => {
    await start();
    const body = JSON.stringify({
      firstName: "Eve",
      lastName: "Csrf",
      email: "eve@example.com",
      createdAt: "2025-01-01T00:00:00Z",
    });
    const cross = await raw(`${url}/v1/users`, {
      method: "POST",
      headers: { "content-type": "text/plain", origin: "http://evil.example" },
      body,
    });
    expect(cross.status).toBe(403);
    expect(open.fresh("SELECT count(*) AS n FROM users WHERE lastName = 'Csrf'")[0]).toEqual({
      n: 0,
    });
    const direct = await raw(`${url}/v1/users`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body,
    });
    expect(direct.status).toBe(201);
  });

  it("accepts a browser's write from an origin listed in allowedOrigins (a front proxy that rewrites Host), and no other", async () => {
    await start({ allowedOrigins: ["https://App.example.com/"] });
    const post = (origin: string, lastName: string) =>
      raw(`${url}/v1/users`, {
        method: "POST",
        headers: { "content-type": "application/json", origin },
        body: JSON.stringify({ firstName: "Ann", lastName, email: `${lastName}@example.com` }),
      });
    expect((await post("https://app.example.com", "Listed")).status).toBe(201);
    expect((await post("https://app.example.com:443", "Default")).status).toBe(201);
    for (const origin of ["http://app.example.com", "https://evil.example", "null"]) {
      const r = await post(origin, "Refused");
      expect(r.status, origin).toBe(403);
      expect(r.text, origin).toContain("allowedOrigins");
    }
    expect(() => originSet("data-api", "allowedOrigins", ["https://a.example/path"])).toThrow(
      /"allowedOrigins": expected an array of origins .*, got "https:\/\/a.example\/path" at allowedOrigins\[0\]$/,
    );
  });
});

describe("the admin prefix", () => {
  // A front proxy that blocks /_edgecache by prefix would let these through.
  it.each([
    "/%5fedgecache/stats",
    "/%5Fedgecache/stats",
    "/_%65dgecache/stats",
    "/_edgecache%2fstats",
  ])("answers %s, the prefix percent-encoded, with a 404, token or not", async (path) => {
    expectClientError(await send(h.edgecache, "GET", path, undefined, AUTH), 404, "E_NOT_FOUND");
    expectClientError(await get(path), 404, "E_NOT_FOUND");
  });
});

describe("bearer tokens", () => {
  it("a 401 says how to authenticate (WWW-Authenticate: Bearer)", async () => {
    const r = await get("/_edgecache/stats");
    expectClientError(r, 401, "E_UNAUTHORIZED");
    expect(r.headers.get("www-authenticate")).toMatch(/^Bearer realm=/);
  });

  it.each([`bearer ${TOKEN}`, `BEARER ${TOKEN}`, `Bearer   ${TOKEN}`])(
    "takes %j: the scheme in any case (RFC 9110 11.1), one or more spaces",
    async (authorization) => {
      const r = await send(h.edgecache, "GET", "/_edgecache/stats", undefined, { authorization });
      expect(r.status).toBe(200);
    },
  );

  it("checks the token before the body: a 5 MB body with a wrong token gets 401, not 413", async () => {
    const big = JSON.stringify({ keys: ["x".repeat(5 * 1024 * 1024)] });
    const headers = { "content-length": String(big.length) };
    const wrong = await send(h.edgecache, "POST", "/_edgecache/invalidate", big, {
      ...headers,
      authorization: "Bearer wrong",
    });
    expectClientError(wrong, 401, "E_UNAUTHORIZED");
    const right = await send(h.edgecache, "POST", "/_edgecache/invalidate", big, {
      ...headers,
      ...AUTH,
    });
    expectClientError(right, 413, "E_TOO_LARGE");
  });
});
