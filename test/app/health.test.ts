import { rmSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { createTenantNode } from "../../src/adapter/node/tenants/dispatcher.ts";
import { openTenantState } from "../../src/adapter/node/tenants/state.ts";
import { createDataApi } from "../../src/app/data-api.ts";
import { edgecacheApp } from "../../src/app/edgecache-app.ts";
import { errorReply } from "../../src/app/errors.ts";
import { runHealth, sourceCheck } from "../../src/app/health.ts";
import { Cache } from "../../src/core/cache/index.ts";
import { localChangeLog } from "../../src/core/change-log/in-process.ts";
import { EdgecacheError } from "../../src/core/errors.ts";
import { toEdgecacheError as toPostgresError } from "../../src/database/postgres/driver.ts";
import { seedDemo } from "../../src/demo/seed.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { storageFault } from "../../src/sources/storage.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { chaosStore } from "../helpers/chaos-store.ts";
import { reply, startEdgecache, tempDir } from "./harness.ts";
import { proxied, raw } from "./proxy/harness.ts";

// GET /_edgecache/health: what a load balancer polls, without a token, on every kind of node.

const TOKEN = "health-admin-token";
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("a data API node", () => {
  it("answers 200 with each check, without the token the rest of the admin API needs", async () => {
    const h = await startEdgecache({ adminToken: TOKEN });
    cleanups.push(() => h.close());
    const r = await reply(await h.edgecache.app.request("/_edgecache/health"));
    expect(r.status).toBe(200);
    expect(r.headers.get("cache-control")).toBe("no-store");
    expect(r.json).toEqual({
      status: "ok",
      checks: {
        tiers: { ok: true },
        log: { ok: true, name: "local" },
        cacheFile: { ok: true, state: "on" },
        source: { ok: true },
      },
    });
    const stats = await h.edgecache.app.request("/_edgecache/stats");
    expect(stats.status).toBe(401);
  });

  it("answers over the socket from a host that is not loopback's, for HEAD too", async () => {
    const h = await startEdgecache();
    cleanups.push(() => h.close());
    const { url } = await h.edgecache.listen();
    const headers = { host: "lb-probe.internal", "x-forwarded-for": "10.0.0.7" };
    const r = await raw(`${url}/_edgecache/health`, { headers });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).status).toBe("ok");
    expect((await raw(`${url}/_edgecache/health`, { method: "HEAD", headers })).status).toBe(200);
    // The rest of the admin API still refuses that client.
    expect((await raw(`${url}/_edgecache/stats`, { headers })).status).toBe(403);
  });
});

/** The data API over a SQLite file this test holds, with tiers and a log it controls. */
async function dataNode() {
  const dir = tempDir("edgecache-health-");
  const db = new Database(join(dir, "app.db"));
  seedDemo(db, { users: 10, orders: 20 });
  const source = sqliteSource({ database: db });
  const disk = chaosStore(memoryStore());
  let lease = true;
  const log = { ...localChangeLog(), trusted: () => lease };
  const cache = new Cache({ tiers: [memoryStore(), disk.store], log });
  const api = await createDataApi({ source, cache });
  const app = edgecacheApp(api.app, {
    cache,
    token: TOKEN,
    health: { source: sourceCheck(source, api.schema) },
  });
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const health = async () => reply(await app.request("/_edgecache/health"));
  return { db, disk, health, lapse: () => (lease = false), app };
}

describe("the data API's database refuses writes for lack of storage: degraded until a write passes", () => {
  /** A POST of a user, as a client sends it. */
  async function post(
    app: { request: (path: string, init: RequestInit) => Response | Promise<Response> },
    body: unknown,
  ) {
    return reply(
      await app.request("/v1/users", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      }),
    );
  }
  const user = (n: number) => ({ firstName: "F", lastName: "L", email: `full-${n}@example.com` });

  it("a full database (SQLITE_FULL): 507 E_SOURCE_FULL without Retry-After, health degraded with the code", async () => {
    const node = await dataNode();
    expect(
      (await post(node.app, { firstName: "A", lastName: "B", email: "dup@example.com" })).status,
    ).toBe(201);
    // The file may not grow past the pages it has: SQLite's own SQLITE_FULL, as on a full disk.
    const pages = node.db.pragma("page_count", { simple: true }) as number;
    node.db.pragma(`max_page_count = ${pages}`);
    let write = await post(node.app, { ...user(0), lastName: "x".repeat(200_000) });
    for (let i = 1; write.status !== 507 && i < 50; i++) {
      write = await post(node.app, { ...user(i), lastName: "x".repeat(200_000) });
    }
    expect(write.status).toBe(507);
    expect(write.json.error.code).toBe("E_SOURCE_FULL");
    expect(write.headers.get("retry-after")).toBeNull();
    expect(write.text).not.toMatch(/SQLITE|sqlite|disk/);
    let r = await node.health();
    expect(r.status).toBe(200);
    expect(r.json.status).toBe("degraded");
    expect(r.json.checks.source).toEqual({ ok: true, state: "degraded", code: "SQLITE_FULL" });
    // A client's own fault (a duplicate email) says nothing about the disk: still degraded.
    const dup = await post(node.app, { firstName: "A", lastName: "B", email: "dup@example.com" });
    expect(dup.status).toBe(409);
    r = await node.health();
    expect(r.json.checks.source).toEqual({ ok: true, state: "degraded", code: "SQLITE_FULL" });
    // Room again: the next write that passes clears it.
    node.db.pragma("max_page_count = 1000000");
    expect((await post(node.app, user(99))).status).toBe(201);
    r = await node.health();
    expect(r.json).toMatchObject({ status: "ok", checks: { source: { ok: true } } });
    expect(r.json.checks.source).toEqual({ ok: true });
  });

  it("a constraint violation alone leaves health ok", async () => {
    const node = await dataNode();
    const first = { firstName: "A", lastName: "B", email: "once@example.com" };
    expect((await post(node.app, first)).status).toBe(201);
    expect((await post(node.app, first)).status).toBe(409);
    const r = await node.health();
    expect(r.json.status).toBe("ok");
    expect(r.json.checks.source).toEqual({ ok: true });
  });

  it("a read-only database file (SQLITE_READONLY): 503 without Retry-After, health degraded with the code", async () => {
    const dir = tempDir("edgecache-health-ro-");
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "app.db");
    const seed = new Database(path);
    seedDemo(seed, { users: 2, orders: 2 });
    seed.close();
    const db = new Database(path, { readonly: true });
    const source = sqliteSource({ database: db });
    const cache = new Cache({ tiers: [memoryStore()], log: localChangeLog() });
    const api = await createDataApi({ source, cache });
    const app = edgecacheApp(api.app, {
      cache,
      token: TOKEN,
      health: { source: sourceCheck(source, api.schema) },
    });
    const write = await post(app, user(1));
    expect(write.status).toBe(503);
    expect(write.headers.get("retry-after")).toBeNull();
    const r = await reply(await app.request("/_edgecache/health"));
    expect(r.status).toBe(200);
    expect(r.json.status).toBe("degraded");
    expect(r.json.checks.source).toEqual({
      ok: true,
      state: "degraded",
      code: expect.stringMatching(/^SQLITE_READONLY/),
    });
  });
});

describe("a check that fails: 503 naming it, and no more than a code", () => {
  it("the database: its connection closed", async () => {
    const node = await dataNode();
    expect((await node.health()).status).toBe(200);
    node.db.close();
    const r = await node.health();
    expect(r.status).toBe(503);
    expect(r.json.status).toBe("fail");
    expect(r.json.checks.source).toEqual({ ok: false, code: expect.stringMatching(/^E_[A-Z_]+$/) });
    expect(r.json.checks.tiers).toEqual({ ok: true });
    expect(r.text).not.toMatch(/database|connection|open/i);
  });

  it("a tier that fails its reads, named", async () => {
    const node = await dataNode();
    node.disk.fail("get");
    const r = await node.health();
    expect(r.status).toBe(503);
    expect(r.json.checks.tiers).toEqual({ ok: false, failed: ["chaos-memory"] });
    expect(r.json.checks.source).toEqual({ ok: true });
    node.disk.heal();
    expect((await node.health()).status).toBe(200);
  });

  it("the change log: this node's lease lapsed", async () => {
    const node = await dataNode();
    node.lapse();
    const r = await node.health();
    expect(r.status).toBe(503);
    expect(r.json).toEqual({
      status: "fail",
      checks: { tiers: { ok: true }, log: { ok: false, name: "local" }, source: { ok: true } },
    });
  });
});

describe("runHealth", () => {
  it("fails a check that does not answer in time, with E_TIMEOUT, and keeps the others", async () => {
    const health = await runHealth(
      { hung: () => new Promise(() => {}), fine: () => ({ ok: true }) },
      10,
    );
    expect(health).toEqual({
      status: "fail",
      checks: { hung: { ok: false, code: "E_TIMEOUT" }, fine: { ok: true } },
    });
  });

  it("keeps a thrown error's code, never its message", async () => {
    const health = await runHealth({
      broken: () => {
        throw new EdgecacheError(
          "E_STORE_UNAVAILABLE",
          "redis",
          "connect ECONNREFUSED 10.1.2.3:6379",
        );
      },
    });
    expect(health.checks.broken).toEqual({ ok: false, code: "E_STORE_UNAVAILABLE" });
  });
});

describe("a proxy node", () => {
  it("checks its tiers and log; its origin is not a dependency of its health", async () => {
    const { origin, proxy } = await proxied();
    const r = await raw(`${proxy.url}/_edgecache/health`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text)).toEqual({
      status: "ok",
      checks: {
        tiers: { ok: true },
        log: { ok: true, name: "local" },
        cacheFile: { ok: true, state: "none" },
      },
    });
    await origin.close();
    expect((await raw(`${proxy.url}/_edgecache/health`)).status).toBe(200);
    expect(origin.count()).toBe(0); // never forwarded
  });
});

describe("a node of tenants", () => {
  /** A node of one tenant ("shop", over a SQLite file), listening; its URL and the key. */
  async function tenantNode(): Promise<{ url: string; key: string }> {
    const dir = tempDir("edgecache-health-tenants-");
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const dbPath = join(dir, "shop.db");
    new Database(dbPath).exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)").close();
    const state = await openTenantState(join(dir, "state.db"));
    const { key } = await state.create({ name: "shop", source: { database: dbPath } });
    await state.close();
    const node = await createTenantNode({
      state: join(dir, "state.db"),
      port: 0,
      adminToken: TOKEN,
    });
    cleanups.push(() => node.close());
    return { url: (await node.listen()).url, key };
  }

  it("answers for the node (the state it follows) without a key, and the same with one", async () => {
    const { url, key } = await tenantNode();
    const expected = { status: "ok", checks: { state: { ok: true } } };
    const bare = await raw(`${url}/_edgecache/health`);
    expect(bare.status).toBe(200);
    expect(JSON.parse(bare.text)).toEqual(expected);
    const keyed = await raw(`${url}/_edgecache/health`, {
      headers: { authorization: `Bearer ${key}` },
    });
    expect(JSON.parse(keyed.text)).toEqual(expected);
    expect(keyed.text).not.toContain("shop");
  });

  it("answers health and the dashboard's page with any credentials or none, as a single node and a Worker of tenants do", async () => {
    const { url, key } = await tenantNode();
    for (const authorization of [
      undefined,
      "Bearer ek_wrong",
      `Bearer ${TOKEN}`,
      `Bearer ${key}`,
    ]) {
      const headers = { host: "lb-probe.internal", ...(authorization && { authorization }) };
      for (const path of ["/_edgecache/health", "/_edgecache/", "/_edgecache"]) {
        const r = await raw(`${url}${path}`, { headers });
        expect(r.status, `${path} ${authorization}`).toBe(200);
      }
    }
  });
});

describe("PostgreSQL's storage codes answer as SQLite's do", () => {
  it("disk_full (53100) is a 507 E_SOURCE_FULL, read-only (25006) a 503, neither with Retry-After; a unique violation is the client's", () => {
    const full = errorReply(
      toPostgresError(Object.assign(new Error("could not extend file"), { code: "53100" })),
    );
    expect(full.status).toBe(507);
    expect(JSON.parse(full.body).error.code).toBe("E_SOURCE_FULL");
    expect(full.headers["retry-after"]).toBeUndefined();
    const ro = toPostgresError(
      Object.assign(new Error("read-only transaction"), { code: "25006" }),
    );
    expect(errorReply(ro).status).toBe(503);
    expect(errorReply(ro).headers["retry-after"]).toBeUndefined();
    expect(storageFault(ro)).toBe("25006");
    const down = toPostgresError(Object.assign(new Error("refused"), { code: "ECONNREFUSED" }));
    expect(errorReply(down).headers["retry-after"]).toBe("1");
    expect(storageFault(down)).toBeUndefined();
    expect(
      storageFault(toPostgresError(Object.assign(new Error("dup"), { code: "23505" }))),
    ).toBeUndefined();
  });
});
