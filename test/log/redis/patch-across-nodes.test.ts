import { afterEach, expect, it } from "vitest";
import type { NodeEdgecache } from "../../../src/adapter/node/modes/data-api.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { redisDemoNodes, until } from "../../helpers/cluster.ts";
import { requireRedis } from "../../helpers/services.ts";

/**
 * Without the write turn, with several writers the log's order is not the database's commit
 * order, and a patch only checks that the cached row "holds" the event's old row. A row that
 * went A -> B -> A (a flag toggled back, a name corrected back) defeats that check:
 *
 *   1. node B commits W1 (firstName Lane -> Xavier); its append is slow (GC pause, a
 *      retry, a slow Redis round trip).
 *   2. node A commits W2 (Xavier -> Lane) and appends it first: seq n. Acknowledged.
 *   3. a read on A loads the row after W2: Lane, stored at position n. Correct.
 *   4. W1 arrives as seq n+1 with old = Lane, new = Xavier. The cached row equals the old
 *      row, so A patches its entry to Xavier. W1 is acknowledged.
 *   5. The database says Lane; A serves Xavier from memory until the TTL (24 h).
 *
 * Same with a delete whose row is re-inserted with equal values (a cached 404).
 *
 * Here node B holds the write turn while its append is held up, past the turn's time (a
 * lease): A then takes the turn and appends in order, and B's record, whose turn lapsed,
 * arrives unordered and invalidates instead of patching.
 */

const shared = await requireRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const patch = (ec: NodeEdgecache, path: string, values: unknown) =>
  ec.app.request(path, {
    method: "PATCH",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(values),
  });

/** Two data API nodes over one demo database, sharing a Redis log under a fresh prefix. */
async function twoNodes(): Promise<[NodeEdgecache, NodeEdgecache]> {
  const open = redisDemoNodes(shared.url, cleanup);
  const a = await open();
  const b = await open();
  await until(() => a.cache.trusted && b.cache.trusted);
  return [a, b];
}

/**
 * Holds the node's appends (with the turn it holds) until `release`; `committed` resolves
 * when the first write reaches its append, its statement committed.
 */
function holdAppends(ec: NodeEdgecache): { committed: Promise<void>; release: () => void } {
  const log = ec.cache.log;
  const append = log.append.bind(log);
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  let reached!: () => void;
  const committed = new Promise<void>((r) => {
    reached = r;
  });
  (log as { append: typeof log.append }).append = async (ops, turn) => {
    reached();
    await gate;
    return append(ops, turn);
  };
  return { committed, release };
}

shared.describe("patches when a writer's turn lapsed", () => {
  it("a row changed and changed back is not patched to the intermediate value", async () => {
    const [a, b] = await twoNodes();

    const list = (await (await a.app.request("/v1/users?limit=1")).json()) as {
      data: { id: string; firstName: string }[];
    };
    const { id, firstName: original } = list.data[0]!;
    const path = `/v1/users/${encodeURIComponent(id)}`;

    // B's append waits until we let it go (its commit has happened by then).
    const { committed: w1Committed, release } = holdAppends(b);

    // W1 on B: original -> Xavier (committed, record not yet in the log).
    const w1 = patch(b, path, { firstName: "Xavier" });
    await w1Committed;
    // W2 on A: Xavier -> original, appended first, acknowledged.
    const w2 = await patch(a, path, { firstName: original });
    expect(w2.status).toBe(200);
    // A read on A after W2: the current row, cached.
    const read1 = (await (await a.app.request(path)).json()) as { firstName: string };
    expect(read1.firstName).toBe(original);

    // W1's record arrives last.
    release();
    expect((await w1).status).toBe(200);

    const inDb = (await (await b.app.request(`/v1/users?id=${encodeURIComponent(id)}`)).json()) as {
      data: { firstName: string }[];
    };
    expect(inDb.data[0]!.firstName).toBe(original); // the database: W2 committed last
    const res = await a.app.request(path);
    const read2 = (await res.json()) as { firstName: string };
    // Both writes acknowledged: A must answer what the database holds.
    expect({ firstName: read2.firstName, cache: res.headers.get("cache-status") }).toEqual({
      firstName: original,
      cache: expect.any(String),
    });
  });

  it("a row inserted on one node and deleted on another is not patched back into a cached 404", async () => {
    const [a, b] = await twoNodes();
    const id = `t-${randomId()}`;
    const path = `/v1/users/${id}`;
    // A client polls for the user before it exists: A caches the 404.
    expect((await a.app.request(path)).status).toBe(404);

    const { committed: insertCommitted, release } = holdAppends(b);

    // B creates it (committed; its record is slow to reach the log)...
    const created = b.app.request("/v1/users", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id, firstName: "Tmp", lastName: "User", email: `${id}@x.test` }),
    });
    await insertCommitted;
    // ...and A deletes it: appended first, acknowledged. A's 404 stays a 404 (correct).
    expect((await a.app.request(path, { method: "DELETE" })).status).toBe(204);
    release();
    expect((await created).status).toBe(201);

    // The row is gone from the database; both writes are acknowledged.
    const res = await a.app.request(path);
    expect({ status: res.status, cache: res.headers.get("cache-status") }).toEqual({
      status: 404,
      cache: expect.any(String),
    });
  });
});

shared.describe("a view's rows read after an insert", () => {
  it("a user whose row for the view was read before another node's order for it committed is not patched into the view's page without that order", async () => {
    const [a, b] = await twoNodes();
    const id = `u-${randomId()}`;
    const list = "/v1/usersWithOrders?firstName=Yuri&limit=5";
    for (const ec of [a, b]) expect((await ec.app.request(list)).status).toBe(200);

    // A inserts the user and reads its row for the view (no orders yet); its record is slow.
    const { committed, release } = holdAppends(a);
    const created = a.app.request("/v1/users", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id, firstName: "Yuri", lastName: "Late", email: `${id}@x.test` }),
    });
    await committed;
    // B posts an order for the user: committed after A's read, appended first.
    const order = { id: `o-${randomId()}`, userId: id, total: 3, status: "paid" };
    const posted = await b.app.request("/v1/orders", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(order),
    });
    expect(posted.status).toBe(201);
    release();
    expect((await created).status).toBe(201);

    // Both writes acknowledged: every node's page shows the order.
    for (const ec of [a, b]) {
      const rows = (
        (await (await ec.app.request(list)).json()) as { data: { orders: { id: string }[] }[] }
      ).data;
      expect(rows.map((r) => r.orders.map((o) => o.id))).toEqual([[order.id]]);
    }
  });
});

const HIT = /^edgecache; hit/;
const read = async (ec: NodeEdgecache, path: string) => {
  const res = await ec.app.request(path);
  return {
    body: (await res.json()) as Record<string, unknown>,
    cache: res.headers.get("cache-status"),
  };
};

shared.describe("patches across nodes", () => {
  it("a write through one node patches another node's cached item: its next read is a hit with the new row", async () => {
    const [a, b] = await twoNodes();
    const { data } = (await read(a, "/v1/users?limit=1")).body as { data: { id: string }[] };
    const path = `/v1/users/${encodeURIComponent(data[0]!.id)}`;
    await read(a, path);
    expect((await read(a, path)).cache).toMatch(HIT);

    expect((await patch(b, path, { lastName: "Patched" })).status).toBe(200);
    const after = await read(a, path);
    expect({ lastName: after.body.lastName, cache: after.cache }).toEqual({
      lastName: "Patched",
      cache: expect.stringMatching(HIT),
    });
    expect(a.cache.stats().patches).toBeGreaterThan(0);
  });

  it("a cached list on another node is patched when a row it holds changes", async () => {
    const [a, b] = await twoNodes();
    const list = "/v1/users?limit=3";
    const { data } = (await read(a, list)).body as { data: { id: string }[] };
    expect((await read(a, list)).cache).toMatch(HIT);

    const path = `/v1/users/${encodeURIComponent(data[1]!.id)}`;
    expect((await patch(b, path, { lastName: "Patched" })).status).toBe(200);
    const after = await read(a, list);
    const rows = (after.body as { data: { id: string; lastName: string }[] }).data;
    expect({ ids: rows.map((r) => r.id), lastName: rows[1]!.lastName, cache: after.cache }).toEqual(
      {
        ids: data.map((r) => r.id),
        lastName: "Patched",
        cache: expect.stringMatching(HIT),
      },
    );
  });

  it("a change recorded without the write turn (applyWrite) invalidates instead of patching", async () => {
    const [a, b] = await twoNodes();
    const { data } = (await read(a, "/v1/users?limit=1")).body as {
      data: Record<string, unknown>[];
    };
    const row = data[0]!;
    const path = `/v1/users/${encodeURIComponent(String(row.id))}`;
    await read(a, path);
    const patches = a.cache.stats().patches;
    // As a caller that commits on its own and only then records (no turn was held).
    await b.cache.applyWrite({ table: "users", op: "update", old: row, new: { ...row } });
    expect(a.cache.stats().patches).toBe(patches);
    expect((await read(a, path)).cache).not.toMatch(HIT);
  });
});

shared.describe("responses loaded while no write was in flight", () => {
  const post = (ec: NodeEdgecache, values: unknown) =>
    ec.app.request("/v1/users", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(values),
    });
  const user = (lastName: string) => {
    const id = `t-${randomId()}`;
    return { id, firstName: "New", lastName, email: `${id}@x.test` };
  };

  it("an insert through another node patches a cached list it enters", async () => {
    const [a, b] = await twoNodes();
    const lastName = `Zed${randomId()}`;
    expect((await post(b, user(lastName))).status).toBe(201);
    const list = `/v1/users?lastName=${lastName}`;
    expect(((await read(a, list)).body as { data: unknown[] }).data).toHaveLength(1);

    expect((await post(b, user(lastName))).status).toBe(201);
    const after = await read(a, list);
    expect({ rows: (after.body as { data: unknown[] }).data.length, cache: after.cache }).toEqual({
      rows: 2,
      cache: expect.stringMatching(HIT),
    });
  });

  it("a list loaded while a writer held the turn is not patched by rows it may already show", async () => {
    const [a, b] = await twoNodes();
    const lastName = `Zed${randomId()}`;
    expect((await post(b, user(lastName))).status).toBe(201);
    const list = `/v1/users?lastName=${lastName}`;
    // A write in flight elsewhere: its commit may or may not be in what A reads.
    const turn = await b.cache.log.turn();
    expect(turn).toBeDefined();
    await read(a, list);
    turn!.release();
    await until(async () => (await b.cache.log.quietSince(b.cache.position)) === true);

    expect((await post(b, user(lastName))).status).toBe(201);
    const after = await read(a, list);
    expect({ rows: (after.body as { data: unknown[] }).data.length, cache: after.cache }).toEqual({
      rows: 2,
      cache: expect.not.stringMatching(HIT),
    });
  });
});
