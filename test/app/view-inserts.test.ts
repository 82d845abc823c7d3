import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { createDataApi, type DataApi } from "../../src/app/data-api.ts";
import { Cache } from "../../src/core/cache/index.ts";
import { localChangeLog } from "../../src/core/change-log/in-process.ts";
import type { Store } from "../../src/core/store.ts";
import { demoViews, seedDemo } from "../../src/demo/seed.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { mapStore } from "../testing/map-store.ts";

// A user posted through the data API brings its row as each view shows it (WriteEvent.views),
// so a view's cached pages and 404s take it in. Two ways that row could be out of date:
// - a view's cached 404 read from a shared tier is replayed through the records that
//   concern it (Reads.#replay, fence.changesFor); the user's insert turns it into the row
//   with joined arrays, and a later order for the user, in a record that did not concern
//   the 404 (it reads no orders), must not be left out of the replay;
// - an order recorded between the insert's view read and its record (applyWrite around
//   the turn) must make the insert's record unordered (see changedTables).

const dir = mkdtempSync(join(tmpdir(), "edgecache-view-inserts-"));
const db = new Database(join(dir, "demo.db"));
afterAll(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

async function node(shared: Store, log: ReturnType<typeof localChangeLog>) {
  const cache = new Cache({ tiers: [memoryStore(), shared], log, logger: { warn: () => {} } });
  const api = await createDataApi({
    source: sqliteSource({ database: db, views: demoViews }),
    cache,
  });
  return { cache, api };
}
const req = (api: DataApi, method: string, path: string, body?: unknown) =>
  api.app.request(path, {
    method,
    ...(body !== undefined && {
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    }),
  });

describe("a view 404 replayed from a shared tier", () => {
  it("shows the orders posted after the user", async () => {
    seedDemo(db, { users: 5, orders: 10 });
    const shared: Store = { ...mapStore(), name: "shared", shared: true };
    const log = localChangeLog();
    const a = await node(shared, log);
    const b = await node(shared, log);
    const c = await node(shared, log);
    const path = "/v1/usersWithOrders/u-replay";
    expect((await req(b.api, "GET", path)).status).toBe(404); // into the shared tier
    await b.cache.drain();
    // On Redis only the writer deletes from the shared tier, the keys it knows; A never read
    // this one (B may have restarted since): its copy stays. Here every node deletes, so it
    // is put back as Redis would keep it.
    const kept = (await shared.get(`GET ${path}`))!;
    const user = {
      id: "u-replay",
      firstName: "R",
      lastName: "P",
      email: "rp@x.test",
      createdAt: "2025-06-01T12:00:00Z",
    };
    expect((await req(a.api, "POST", "/v1/users", user)).status).toBe(201);
    const order = {
      id: "o-replay",
      userId: "u-replay",
      total: 3,
      status: "paid",
      createdAt: "2026-01-01T00:00:00Z",
    };
    expect((await req(a.api, "POST", "/v1/orders", order)).status).toBe(201);
    await shared.set(`GET ${path}`, kept, 60_000);
    const res = await req(c.api, "GET", path);
    const body = (await res.json()) as { orders?: { id: string }[] };
    expect(res.status).toBe(200);
    expect(body.orders?.map((o) => o.id)).toEqual(["o-replay"]);
  });
});

describe("an order recorded while a user's insert holds the turn", () => {
  it("makes the insert's record unordered: the view page a node holds shows the order", async () => {
    seedDemo(db, { users: 5, orders: 10 });
    const log = localChangeLog();
    const a = await node(memoryStore(), log);
    const path = "/v1/usersWithOrders?firstName=Racer&limit=5";
    await req(a.api, "GET", path);
    // Between the insert's view read and its append: an order for the user, written
    // around the data API and recorded by the app (applyWrite, no turn).
    const append = log.append.bind(log);
    log.append = async (ops, ...rest) => {
      const insert = ops.find((op) => "event" in op && op.event.op === "insert");
      if (insert && "event" in insert && insert.event.table === "users") {
        const order = {
          id: "o-race",
          userId: insert.event.new!.id,
          total: 7,
          status: "paid",
          createdAt: "2026-01-01T00:00:00Z",
        };
        db.prepare(
          "INSERT INTO orders (id, userId, total, status, createdAt) VALUES (@id, @userId, @total, @status, @createdAt)",
        ).run(order);
        await a.cache.applyWrite({ table: "orders", op: "insert", new: order });
      }
      return append(ops, ...rest);
    };
    const user = {
      id: "u-racer",
      firstName: "Racer",
      lastName: "Late",
      email: "racer@x.test",
      createdAt: "2025-06-01T12:00:00Z",
    };
    expect((await req(a.api, "POST", "/v1/users", user)).status).toBe(201);
    const page = (await (await req(a.api, "GET", path)).json()) as {
      data: { orders: { id: string }[] }[];
    };
    expect(page.data.map((u) => u.orders.map((o) => o.id))).toEqual([["o-race"]]);
  });
});
