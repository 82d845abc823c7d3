import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Row } from "../../../src/core/data/query.ts";
import type { Source } from "../../../src/sources/source.ts";
import {
  expectClientError,
  HIT,
  MISS_STORED,
  type Reply,
  reply,
  requestInit,
} from "../../app/harness.ts";
import { until } from "../../helpers/cluster.ts";
import { type EdgecacheWorkers, startEdgecacheWorkers } from "./edgecache-workers.ts";

// The data API as a Cloudflare Worker, inside workerd: two isolates ("a", "b") of the
// edgecache Worker over one local D1 (the demo, 200 users and 1000 orders), the Cache API,
// KV and the Durable Object change log. Answers are checked against D1 read directly.

let w: EdgecacheWorkers;
let db: Source;

beforeAll(async () => {
  w = await startEdgecacheWorkers({ names: ["a", "b"], demo: { users: 200, orders: 1000 } });
  db = await w.fresh();
}, 60_000);

afterAll(async () => {
  await w?.close();
});

async function send(
  isolate: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return reply(await w.fetch(isolate, path, requestInit(method, body, headers)));
}
const get = (isolate: string, path: string, headers?: Record<string, string>) =>
  send(isolate, "GET", path, undefined, headers);
const status = (r: Reply) => r.headers.get("cache-status");
const ids = (r: Reply) => (r.json.data as Row[]).map((row) => row.id);

/** What D1 holds, through the source's own query compiler: never through a cache. */
async function fresh(path: string): Promise<unknown> {
  const direct = (await w.mf.getD1Database("DB", "a")) as unknown as {
    prepare(sql: string): { bind(...v: unknown[]): { all(): Promise<{ results: Row[] }> } };
  };
  const [table, where, ...params] = path.split("|");
  const sql = `SELECT * FROM ${table} WHERE ${where} ORDER BY id`;
  return (
    await direct
      .prepare(sql)
      .bind(...params)
      .all()
  ).results;
}
async function userWithOrders(): Promise<Row> {
  const [user] = (await fresh(
    "users|EXISTS (SELECT 1 FROM orders o WHERE o.userId = users.id) AND firstName <> 'Lane' AND id NOT LIKE '9%'",
  )) as Row[];
  return user!;
}
async function tierHits(isolate: string): Promise<Record<string, number>> {
  const stats = (await get(isolate, "/_edgecache/stats")).json as {
    tiers: { name: string; hits: number }[];
  };
  return Object.fromEntries(stats.tiers.map((t) => [t.name, t.hits]));
}

describe("the data API on Workers: a new user's walkthrough", () => {
  it("answers a repeated GET from the isolate's memory, and another isolate from a shared tier", async () => {
    const first = await get("a", "/v1/users?limit=5");
    expect(first.status).toBe(200);
    expect(status(first)).toMatch(MISS_STORED);
    expect(first.json.data).toEqual(((await fresh("users|1 = 1")) as Row[]).slice(0, 5));
    const second = await get("a", "/v1/users?limit=5");
    expect(status(second)).toMatch(HIT);
    expect(second.text).toBe(first.text);

    const before = await tierHits("b");
    const other = await get("b", "/v1/users?limit=5");
    expect(status(other)).toMatch(HIT);
    expect(other.text).toBe(first.text);
    const after = await tierHits("b");
    expect(after.memory).toBe(before.memory);
    expect((after["cache-api"] ?? 0) + (after.kv ?? 0)).toBeGreaterThan(
      (before["cache-api"] ?? 0) + (before.kv ?? 0),
    );
  });

  it("shows a PATCH through one isolate at once in another isolate's cached item and lists", async () => {
    const user = await userWithOrders();
    const id = user.id as string;
    const oldName = user.firstName as string;
    const paths = {
      item: `/v1/users/${id}`,
      oldList: `/v1/users?firstName=${oldName}&limit=1000`,
      newList: "/v1/users?firstName=Lane&limit=1000",
      viewItem: `/v1/usersWithOrders/${id}`,
    };
    for (const path of Object.values(paths)) {
      await get("b", path);
      expect(status(await get("b", path)), path).toMatch(HIT);
    }

    const patched = await send("a", "PATCH", paths.item, { firstName: "Lane" });
    expect(patched.status).toBe(200);
    expect(patched.json).toEqual({ ...user, firstName: "Lane" });

    expect((await get("b", paths.item)).json).toEqual({ ...user, firstName: "Lane" });
    expect(ids(await get("b", paths.oldList))).not.toContain(id);
    expect((await get("b", paths.oldList)).json.data).toEqual(
      await fresh(`users|firstName = ?|${oldName}`),
    );
    expect((await get("b", paths.newList)).json.data).toEqual(
      await fresh("users|firstName = ?|Lane"),
    );
    expect((await get("b", paths.viewItem)).json).toEqual({
      ...user,
      firstName: "Lane",
      orders: await fresh(`orders|userId = ?|${id}`),
    });
  });

  it("lists a POSTed user in another isolate's cached list at once and forgets it after DELETE", async () => {
    const list = "/v1/users?lastName=Newcomer&limit=10";
    expect((await get("b", list)).json.data).toEqual([]);
    const created = await send("a", "POST", "/v1/users", {
      firstName: "Ann",
      lastName: "Newcomer",
      email: "ann.newcomer@example.com",
    });
    expect(created.status).toBe(201);
    expect(created.headers.get("location")).toBe(`/v1/users/${created.json.id}`);
    expect(ids(await get("b", list))).toEqual([created.json.id]);
    expect((await send("a", "DELETE", `/v1/users/${created.json.id}`)).status).toBe(204);
    expect((await get("b", list)).json.data).toEqual([]);
  });

  it("removes a deleted user's orders from another isolate's cached lists (ON DELETE CASCADE)", async () => {
    const user = await userWithOrders();
    const id = user.id as string;
    const orders = `/v1/orders?userId=${id}&limit=1000`;
    const [order] = (await fresh(`orders|userId = ?|${id}`)) as Row[];
    for (const path of [orders, `/v1/orders/${order!.id}`]) await get("b", path);
    expect((await get("b", orders)).json.data.length).toBeGreaterThan(0);

    expect((await send("a", "DELETE", `/v1/users/${id}`)).status).toBe(204);

    expect((await get("b", orders)).json.data).toEqual([]);
    expectClientError(await get("b", `/v1/orders/${order!.id}`), 404, "E_NOT_FOUND");
  });
});

describe("the data API on Workers: filters, errors and headers as on Node", () => {
  it("filters, sorts and pages as the Node server does", async () => {
    const r = await get("a", "/v1/orders?total[gte]=100&total[lt]=200&sort=-total&limit=7");
    const direct = (await db.list(
      { kind: "table", table: (await db.schema()).tables.get("orders")! } as never,
      {
        filters: [
          { column: "total", op: "gte", value: 100 },
          { column: "total", op: "lt", value: 200 },
        ],
        sort: [{ column: "total", desc: true }],
        limit: 7,
        offset: 0,
      } as never,
    )) as Row[];
    expect(r.json).toEqual({ data: direct, limit: 7, offset: 0 });
    expect(((await get("a", "/v1/users?id=12*&limit=50")).json.data as Row[]).length).toBe(
      ((await fresh("users|id LIKE '12%'")) as Row[]).length,
    );
  });

  it.each<[string, number, string, string]>([
    ["/v1/users?limit=abc", 400, "E_BAD_QUERY", "limit"],
    ["/v1/users?nickname=Lane", 400, "E_BAD_QUERY", "nickname"],
    ["/v1/nothing", 404, "E_NOT_FOUND", "nothing"],
    ["/v1/users/no-such-user", 404, "E_NOT_FOUND", ""],
  ])("answers GET %s with %d %s", async (path, code, name, named) => {
    expectClientError(await get("a", path), code, name, named);
  });

  it("answers a duplicate email with 409 E_CONFLICT and an unknown column with 400 naming it", async () => {
    const [user] = (await fresh("users|1 = 1")) as Row[];
    const body = { firstName: "X", lastName: "Y", email: user!.email };
    expectClientError(await send("a", "POST", "/v1/users", body), 409, "E_CONFLICT");
    expectClientError(
      await send("a", "PATCH", `/v1/users/${user!.id}`, { nickname: "x" }),
      400,
      "E_BAD_BODY",
      "nickname",
    );
  });

  it("sends ETag, answers If-None-Match with 304, and HEAD with GET's headers and no body", async () => {
    const miss = await get("a", "/v1/orders?limit=3");
    const etag = miss.headers.get("etag")!;
    expect(etag).toMatch(/^"[^"]+"$/);
    const notModified = await get("a", "/v1/orders?limit=3", { "if-none-match": etag });
    expect(notModified.status).toBe(304);
    expect(notModified.text).toBe("");
    const head = await send("a", "HEAD", "/v1/orders?limit=3");
    expect(head.text).toBe("");
    expect(head.headers.get("etag")).toBe(etag);
    expect(status(head)).toMatch(HIT);
  });
});

describe("the edgecache Worker's admin API and background work", () => {
  it("answers loopback clients with stats per tier, and refuses others without a token", async () => {
    const stats = (await get("a", "/_edgecache/stats")).json;
    expect(stats.tiers.map((t: { name: string }) => t.name)).toEqual(["memory", "cache-api", "kv"]);
    expect(stats.log.name).toBe("durable-log");
    const refused = await get("a", "/_edgecache/stats", { "cf-connecting-ip": "203.0.113.9" });
    expectClientError(refused, 403, "E_FORBIDDEN");
  });

  it("answers GET /_edgecache/health to any client with its tiers, log and D1", async () => {
    const health = await get("b", "/_edgecache/health", { "cf-connecting-ip": "203.0.113.9" });
    expect(health.status).toBe(200);
    expect(health.headers.get("cache-control")).toBe("no-store");
    expect(health.json).toEqual({
      status: "ok",
      checks: {
        tiers: { ok: true },
        // node: the isolate's name in the log, as in its stats.
        log: { ok: true, name: "durable-log", node: expect.any(String) },
        source: { ok: true },
      },
    });
    // With credentials or none, as on Node and in a Worker of tenants; the page too.
    const remote = { "cf-connecting-ip": "203.0.113.9", authorization: "Bearer not-a-token" };
    for (const path of ["/_edgecache/health", "/_edgecache/", "/_edgecache"]) {
      expect((await get("a", path, remote)).status, path).toBe(200);
    }
  });

  it("refetches a hot list a PATCH invalidated through ctx.waitUntil, so the next read is a hit", async () => {
    const user = await userWithOrders();
    // A view list a row enters cannot be patched (the new member's joined rows are not
    // cached): the write invalidates it.
    const path = "/v1/usersWithOrders?firstName=Rehydrated&limit=1";
    for (let i = 0; i < 3; i++) await get("a", path);
    const rehydrations = async () => (await get("a", "/_edgecache/stats")).json.rehydrations;
    const before = await rehydrations();

    const r = await send("a", "PATCH", `/v1/users/${user.id}`, { firstName: "Rehydrated" });
    expect(r.status).toBe(200);
    await until(async () => (await rehydrations()) > before);

    const next = await get("a", path);
    expect(status(next)).toMatch(HIT);
    expect(next.json.data.map((u: { id: unknown }) => u.id)).toEqual([user.id]);
  });
});
