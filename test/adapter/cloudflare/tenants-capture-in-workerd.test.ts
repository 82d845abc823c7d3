import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { d1CaptureStatus, installD1Capture } from "../../../src/database/d1/change-table.ts";
import type { D1DatabaseLike } from "../../../src/sources/d1.ts";
import { until } from "../../helpers/cluster.ts";
import { startIsolates } from "../../helpers/workerd.ts";

// D1 change capture for a Worker of tenants, inside workerd (issue 43): two isolates of
// tenants-entry.ts, each tenant over a D1 binding of its own with capture installed (as
// `edgecache capture install --d1 DB_SHOP` does), and writes made straight into those
// databases, around the Worker. Each tenant's log object drains its own tenant's change
// table into that tenant's log, and nobody else's.

const OPERATOR = "operator-token";
const HIT = /^edgecache; hit/;
let mf: Miniflare;

const database = async (binding: string) =>
  (await mf.getD1Database(binding, "a")) as unknown as D1DatabaseLike;
const sql = async (binding: string, text: string) => (await database(binding)).prepare(text).all();
const backlog = async (binding: string) => (await d1CaptureStatus(await database(binding))).backlog;

async function send(isolate: string, path: string, init: RequestInit = {}): Promise<Response> {
  const worker = (await mf.getWorker(isolate)) as unknown as { fetch: typeof fetch };
  return worker.fetch(`http://127.0.0.1:8787${path}`, init);
}

/** The operator's API, as `edgecache tenants --url` calls it. */
async function operator(method: string, path: string, value?: unknown) {
  const r = await send("a", `/_edgecache/tenants${path}`, {
    method,
    headers: { authorization: `Bearer ${OPERATOR}`, "content-type": "application/json" },
    ...(value !== undefined && { body: JSON.stringify(value) }),
  });
  const text = await r.text();
  expect(r.status, text).toBe(200);
  return JSON.parse(text) as Record<string, string>;
}

const tenants: Record<string, { key: string; createdAt: string }> = {};
async function create(name: string, binding: string): Promise<void> {
  const { key, createdAt } = await operator("POST", "", { name, source: { database: binding } });
  tenants[name] = { key: key!, createdAt: createdAt! };
}

async function read(tenant: string, path: string, isolate = "a") {
  const r = await send(isolate, path, {
    headers: { authorization: `Bearer ${tenants[tenant]!.key}` },
  });
  const text = await r.text();
  expect(r.status, text).toBe(200);
  return { json: JSON.parse(text), cache: r.headers.get("cache-status") ?? "" };
}

/** A tenant's log object's drain counters (null: it drains nothing), asked directly. */
async function drainOf(tenant: { name: string; createdAt: string }): Promise<unknown> {
  const ns = (await mf.getDurableObjectNamespace("CHANGE_LOG", "a")) as unknown as {
    idFromName(name: string): unknown;
    get(id: unknown): { fetch(url: string, init: RequestInit): Promise<Response> };
  };
  const place = `tenant:${tenant.name}-${Date.parse(tenant.createdAt).toString(36)}`;
  const stub = ns.get(ns.idFromName(`edgecache:${place}`));
  const res = await stub.fetch("https://change-log/capture", { method: "POST", body: "{}" });
  return res.json();
}

beforeAll(async () => {
  mf = await startIsolates(new URL("./tenants-entry.ts", import.meta.url), ["a", "b"], {
    // DB too: a Worker of tenants may bind one, which no tenant's log may drain.
    d1Databases: { DB_SHOP: "shop", DB_BLOG: "blog", DB: "other" },
    objects: { TENANTS: "TenantsObject" },
    bindings: {
      EDGECACHE_ADMIN_TOKEN: OPERATOR,
      TENANTS_LEASE_MS: "1000",
      EDGECACHE_CAPTURE_MS: "200",
    },
  });
  for (const binding of ["DB_SHOP", "DB_BLOG", "DB"]) {
    await sql(binding, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
    await sql(binding, `INSERT INTO items VALUES (1, '${binding}-1'), (2, '${binding}-2')`);
    const status = await installD1Capture(await database(binding));
    expect(status).toMatchObject({ installed: true, tables: ["items"], backlog: 0 });
  }
  await create("shop", "DB_SHOP");
  await create("blog", "DB_BLOG");
}, 120_000);

afterAll(async () => {
  await mf?.dispose();
});

describe("D1 change capture in a Worker of tenants", () => {
  it("a row changed straight in a tenant's D1 is read through its cache once drained, in every isolate; its backlog empties", async () => {
    await sql("DB", "UPDATE items SET name = 'not a tenant''s' WHERE id = 1");
    for (const isolate of ["a", "b"]) {
      for (const tenant of ["shop", "blog"]) {
        await read(tenant, "/v1/items/1", isolate);
        await read(tenant, "/v1/items?limit=10", isolate);
        expect((await read(tenant, "/v1/items/1", isolate)).cache).toMatch(HIT);
      }
    }
    await sql("DB_SHOP", "UPDATE items SET name = 'changed around' WHERE id = 1");
    await until(
      async () => (await read("shop", "/v1/items/1")).json.name === "changed around",
      30_000,
    );
    for (const isolate of ["a", "b"]) {
      expect((await read("shop", "/v1/items/1", isolate)).json.name).toBe("changed around");
      const list = (await read("shop", "/v1/items?limit=10", isolate)).json.data;
      expect(list.map((r: { name: string }) => r.name)).toEqual(["changed around", "DB_SHOP-2"]);
      // blog's cache heard nothing of shop's database.
      const blog = await read("blog", "/v1/items/1", isolate);
      expect(blog.json.name).toBe("DB_BLOG-1");
      expect(blog.cache).toMatch(HIT);
    }
    expect(await backlog("DB_SHOP")).toBe(0);
    // Nobody drains a database no tenant names.
    expect(await backlog("DB")).toBe(1);
    // Each tenant's stats count the captured changes its log brought: shop's one, blog's none.
    for (const isolate of ["a", "b"]) {
      expect((await read("shop", "/_edgecache/stats", isolate)).json.capture).toEqual({
        applied: 1,
      });
      expect((await read("blog", "/_edgecache/stats", isolate)).json.capture).toEqual({
        applied: 0,
      });
    }
  }, 60_000);

  it("each tenant's database feeds its own log: an insert joins blog's cached list only", async () => {
    await sql("DB_BLOG", "INSERT INTO items VALUES (3, 'blog-new')");
    await until(
      async () => (await read("blog", "/v1/items?limit=10", "b")).json.data.length === 3,
      30_000,
    );
    expect((await read("shop", "/v1/items?limit=10", "b")).json.data).toHaveLength(2);
    expect(await backlog("DB_BLOG")).toBe(0);
  }, 60_000);

  it("a deleted tenant's log stops draining; the tenant made anew on that database gets every change", async () => {
    const old = { name: "shop", ...tenants.shop! };
    expect(await drainOf(old)).not.toBeNull();
    await operator("DELETE", "/shop");
    expect(await drainOf(old)).toBeNull();

    await create("shop", "DB_SHOP");
    expect((await read("shop", "/v1/items/2")).json.name).toBe("DB_SHOP-2");
    expect((await read("shop", "/v1/items/2")).cache).toMatch(HIT);
    await sql("DB_SHOP", "UPDATE items SET name = 'after the delete' WHERE id = 2");
    await until(
      async () => (await read("shop", "/v1/items/2", "b")).json.name === "after the delete",
      30_000,
    );
    expect((await read("shop", "/v1/items/2")).json.name).toBe("after the delete");
    expect(await backlog("DB_SHOP")).toBe(0);
  }, 60_000);
});
