import { Redis } from "ioredis";
import { afterEach, expect, it } from "vitest";
import type { NodeEdgecache } from "../../../src/adapter/node/modes/data-api.ts";
import { claimKey } from "../../../src/log/redis/scripts.ts";
import { redisDemoNodes, until } from "../../helpers/cluster.ts";
import { requireRedis } from "../../helpers/services.ts";

/**
 * The shared tier (Redis) after a write: the writer cleans it and copies into it what it
 * patched, other nodes leave it alone (their delete could remove a fresh copy, and their
 * copies cost a claim each), so a node whose memory does not hold the response finds the
 * new version there instead of a miss. A lone node patches without reloading.
 */

const shared = await requireRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** Nodes sharing one database and Redis, each open once trusted. */
function cluster(more: { reloadLists?: boolean; rehydrate?: boolean } = {}) {
  const open = redisDemoNodes(shared.url, cleanup, more);
  return async (): Promise<NodeEdgecache> => {
    const ec = await open();
    await until(() => ec.cache.trusted);
    return ec;
  };
}

const read = async (ec: NodeEdgecache, path: string) => {
  const res = await ec.app.request(path);
  const body = (await res.json()) as { firstName: string };
  return { firstName: body.firstName, cache: res.headers.get("cache-status") ?? "" };
};

const rename = (ec: NodeEdgecache, path: string, firstName: string) =>
  ec.app.request(path, {
    method: "PATCH",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ firstName }),
  });

/** Inserts an order newer than all: it shifts every page of orders by -createdAt. */
async function postNewestOrder(ec: NodeEdgecache): Promise<Response> {
  const user = (await firstUser(ec)).split("/").pop()!;
  return ec.app.request("/v1/orders", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      id: "o-newest",
      userId: decodeURIComponent(user),
      total: 1,
      status: "pending",
      createdAt: "2999-01-01T00:00:00Z",
    }),
  });
}

async function firstUser(ec: NodeEdgecache): Promise<string> {
  const list = (await (await ec.app.request("/v1/users?limit=1")).json()) as {
    data: { id: string }[];
  };
  return `/v1/users/${encodeURIComponent(list.data[0]!.id)}`;
}

/**
 * Inserts orders newer than all but `postNewestOrder`'s, one write each, and waits until
 * `nodes` applied them: a cached page keeps two rows of the list before its window (its
 * margin, see the data API), so these shifts are patched and use them up; the next
 * insert before it cannot be patched (on a page past the margin's reach: the third page
 * of two rows, whose margin does not start the list).
 */
async function useUpMargin(writer: NodeEdgecache, nodes: NodeEdgecache[]): Promise<void> {
  const user = decodeURIComponent((await firstUser(writer)).split("/").pop()!);
  for (const n of [1, 2]) {
    const res = await writer.app.request("/v1/orders", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        id: `o-newer-${n}`,
        userId: user,
        total: 1,
        status: "pending",
        createdAt: `2998-01-0${n}T00:00:00Z`,
      }),
    });
    expect(res.status).toBe(201);
  }
  await Promise.all(nodes.map((x) => x.cache.drain()));
  await until(() => nodes.every((x) => x.cache.position.seq === writer.cache.position.seq));
}

/** The third page of orders, newest first: an order newer than all shifts it. */
const ids = async (ec: NodeEdgecache) => {
  const res = await ec.app.request("/v1/orders?sort=-createdAt&limit=2&offset=4");
  const body = (await res.json()) as { data: { id: string }[] };
  return { ids: body.data.map((o) => o.id), cache: res.headers.get("cache-status") ?? "" };
};

/**
 * Two nodes, a and c, on the log, and a page Redis holds from before a write that shifted
 * it, which neither holds in memory: each refuses Redis's copy.
 */
async function refusedOnTwo() {
  const open = cluster();
  const a = await open();
  const c = await open();
  const b = await open();
  await until(() => a.cache.log.nodes?.() === 3 && c.cache.log.nodes?.() === 3);
  expect((await ids(b)).cache).toMatch(/fwd=miss; stored/); // into Redis
  await b.close(); // nobody else holds it: nothing patches or reloads it after the write
  await until(() => a.cache.log.nodes?.() === 2 && c.cache.log.nodes?.() === 2);
  expect((await postNewestOrder(a)).status).toBe(201);
  await Promise.all([a.cache.drain(), c.cache.drain()]);
  await until(() => c.cache.position.seq === a.cache.position.seq);
  return { a, c, ids };
}

shared.describe("the shared tier after a write", () => {
  it("holds the new version for a node that did not cache it: the writer's patch, no reload, nothing sent by the other node", async () => {
    const open = cluster();
    const a = await open();
    const b = await open();
    await until(() => a.cache.log.nodes?.() === 2 && b.cache.log.nodes?.() === 2);
    const path = await firstUser(a);
    expect((await read(a, path)).cache).toMatch(/fwd=miss; stored/);
    await a.cache.drain(); // a miss is answered before its copy reaches Redis
    expect((await read(b, path)).cache).toMatch(/^edgecache; hit/); // from Redis

    const both = (n: "rehydrations" | "patchesShared" | "loads") =>
      a.cache.stats()[n] + b.cache.stats()[n];
    const before = {
      reloads: both("rehydrations"),
      shared: both("patchesShared"),
      loads: both("loads"),
      patchedOnA: a.cache.stats().patches,
      patchedOnB: b.cache.stats().patches,
      sentByB: b.cache.stats().redis.commands.background,
    };
    expect((await rename(a, path, "Refilled")).status).toBe(200);
    await Promise.all([a.cache.drain(), b.cache.drain()]);
    await until(() => b.cache.position.seq === a.cache.position.seq);
    await b.cache.drain();
    // The writer copies what it patched into Redis: a holds every key patched (the user,
    // and the page firstUser read), each copied once, no load. b patched the user too, and
    // sends nothing for it: no claim, no copy.
    const patchedOnA = a.cache.stats().patches - before.patchedOnA;
    expect(patchedOnA).toBeGreaterThanOrEqual(1);
    expect(b.cache.stats().patches - before.patchedOnB).toBeGreaterThanOrEqual(1);
    expect(both("patchesShared") - before.shared).toBe(patchedOnA);
    expect(b.cache.stats().redis.commands.background).toBe(before.sentByB);
    expect(both("rehydrations") - before.reloads).toBe(0);
    expect(both("loads") - before.loads).toBe(0);
    // Both patched their memory; Redis holds the writer's patch.
    expect(await read(a, path)).toEqual({
      firstName: "Refilled",
      cache: expect.stringMatching(/^edgecache; hit/),
    });
    expect((await read(b, path)).firstName).toBe("Refilled");

    const c = await open(); // a node with an empty memory
    expect(await read(c, path)).toEqual({
      firstName: "Refilled",
      cache: expect.stringMatching(/^edgecache; hit/),
    });
    expect(c.cache.stats().tiers.find((t) => t.name === "redis")?.hits).toBe(1);
  });

  it("a copy older than a write is patched up to date by the node that reads it", async () => {
    const open = cluster();
    const a = await open();
    const c = await open();
    const b = await open();
    await until(() => a.cache.log.nodes?.() === 3);
    const path = await firstUser(b);
    expect((await read(b, path)).cache).toMatch(/fwd=miss; stored/); // into Redis
    await b.close(); // nobody else holds it: no node patches it, nothing reloads it
    await until(() => a.cache.log.nodes?.() === 2);

    expect((await rename(a, path, "Replayed")).status).toBe(200); // a never cached it
    await Promise.all([a.cache.drain(), c.cache.drain()]);
    const { refused, replayed } = c.cache.stats();
    // Redis still holds the copy from before the write; c patches it with the write's event.
    expect(await read(c, path)).toEqual({
      firstName: "Replayed",
      cache: expect.stringMatching(/^edgecache; hit/),
    });
    expect(c.cache.stats()).toMatchObject({ refused, replayed: replayed + 1 });
    // The patch stays in c's memory: the next read is a memory hit.
    expect(await read(c, path)).toEqual({
      firstName: "Replayed",
      cache: expect.stringMatching(/^edgecache; hit/),
    });
    expect(c.cache.stats().replayed).toBe(replayed + 1);
  });

  it("a response another node read often and could not patch is reloaded into Redis", async () => {
    const open = cluster();
    const a = await open();
    const b = await open();
    await until(() => a.cache.log.nodes?.() === 2 && b.cache.log.nodes?.() === 2);
    // A third page: an order newer than all shifts it, and b holds no first page to
    // take the row that slides in from, nor margin left (see useUpMargin), so b cannot
    // patch it.
    await ids(b);
    expect((await ids(b)).cache).toMatch(/^edgecache; hit/); // hot on b; a never read it
    await useUpMargin(a, [a, b]);
    expect((await ids(b)).cache).toMatch(/^edgecache; hit/); // patched twice
    const before = a.cache.stats().rehydrations + b.cache.stats().rehydrations;
    expect((await postNewestOrder(a)).status).toBe(201);
    await Promise.all([a.cache.drain(), b.cache.drain()]);
    expect(a.cache.stats().rehydrations + b.cache.stats().rehydrations - before).toBe(1);

    const c = await open(); // an empty memory: the page comes from Redis, new
    // The first six, read for the first time anywhere: from the database.
    const six = await a.app.request("/v1/orders?sort=-createdAt&limit=6");
    expect(six.headers.get("cache-status")).toMatch(/fwd=miss/);
    const { data } = (await six.json()) as { data: { id: string }[] };
    expect(data[0]!.id).toBe("o-newest");
    const got = await ids(c);
    expect(got.cache).toMatch(/^edgecache; hit/);
    expect(got.ids).toEqual(data.slice(4).map((o) => o.id));
    expect(c.cache.stats().tiers.find((t) => t.name === "redis")?.hits).toBe(1);
  });

  it("two nodes refusing the same old copy load it once: one claims it, the other waits for its copy", async () => {
    const { a, c, ids } = await refusedOnTwo();
    // Both read the shifted page at once: Redis holds it from before the insert.
    const loads = () => a.cache.stats().loads + c.cache.stats().loads;
    // The waiter's read counts as a hit (of the loader's copy), the loader's as a miss.
    const readCommands = () =>
      [a, c].reduce(
        (n, x) => n + x.cache.stats().redis.commands.miss + x.cache.stats().redis.commands.hit,
        0,
      );
    const before = {
      loads: loads(),
      awaited: a.cache.stats().awaited + c.cache.stats().awaited,
      commands: readCommands(),
    };
    const [fromA, fromC] = await Promise.all([ids(a), ids(c)]);
    expect(fromA.ids).toEqual(fromC.ids);
    expect(loads() - before.loads).toBe(1);
    expect(a.cache.stats().awaited + c.cache.stats().awaited - before.awaited).toBe(1);
    expect([fromA.cache, fromC.cache].filter((s) => /^edgecache; hit/.test(s))).toHaveLength(1);
    // The loader: its GET, the claim, the log's head, the copy and word that it is in; the
    // waiter: its GET, the claim, and one more GET once told (not one every few ms).
    await Promise.all([a.cache.drain(), c.cache.drain()]);
    expect(readCommands() - before.commands).toBe(5 + 3);
  });

  it("nodes that held a page a write invalidated, reading it at once, load it once: gone from Redis, one claims it by the write's record, the others wait", async () => {
    // No rehydration: the first reads after the write are what loads the page again.
    const open = cluster({ rehydrate: false });
    const [a, b, c] = [await open(), await open(), await open()];
    await until(() => [a, b, c].every((x) => x.cache.log.nodes?.() === 3));
    expect((await ids(a)).cache).toMatch(/fwd=miss; stored/); // into Redis
    await a.cache.drain();
    expect((await ids(b)).cache).toMatch(/^edgecache; hit/); // from Redis, into b's memory
    expect((await ids(c)).cache).toMatch(/^edgecache; hit/);
    await useUpMargin(a, [a, b, c]);
    // The newest order shifts the page, which no node can patch (none holds the page
    // before it, nor margin left): each drops it, and the writer drops Redis's copy.
    expect((await postNewestOrder(a)).status).toBe(201);
    await Promise.all([a, b, c].map((x) => x.cache.drain()));
    await until(() => [b, c].every((x) => x.cache.position.seq === a.cache.position.seq));
    const loads = () => b.cache.stats().loads + c.cache.stats().loads;
    const awaited = () => b.cache.stats().awaited + c.cache.stats().awaited;
    const before = { loads: loads(), awaited: awaited() };
    const [fromB, fromC] = await Promise.all([ids(b), ids(c)]);
    expect(fromB.ids).toEqual(fromC.ids);
    expect(fromB.ids[0]).not.toBe("o-newest");
    expect(loads() - before.loads).toBe(1);
    expect(awaited() - before.awaited).toBe(1);
    // What they serve is the page after the write, as the database has it.
    const six = (await (await a.app.request("/v1/orders?sort=-createdAt&limit=6")).json()) as {
      data: { id: string }[];
    };
    expect(six.data[0]!.id).toBe("o-newest");
    expect(fromB.ids).toEqual(six.data.slice(4).map((o) => o.id));
  });

  it("a node waiting for another's reload reads Redis once more, however long that reload takes", async () => {
    const { c, ids } = await refusedOnTwo();
    // Another node claimed the page's reload at c's position and takes its time over it.
    const redis = new Redis(shared.url);
    cleanup.push(() => void redis.disconnect());
    const keys = await redis.keys("test:*");
    const copy = keys.find((k) => k.includes("offset=4") && !k.includes("claim:"))!;
    const [, prefix, key] = /^(test:[^:]+:)(.*)$/.exec(copy)!;
    const claim = claimKey(prefix!, `${c.cache.position.seq}:${key}`);
    await redis.hset(claim, "by", "slow");
    await redis.pexpire(claim, 600);

    const miss = () => c.cache.stats().redis.commands.miss;
    // A plain miss on c, for comparison: its GET, the log's head and the copy.
    const plain = miss();
    const other = await c.app.request("/v1/orders?sort=-createdAt&limit=1");
    expect(other.headers.get("cache-status")).toMatch(/fwd=miss/);
    await c.cache.drain();
    const plainCost = miss() - plain;

    const waiting = miss();
    expect((await ids(c)).cache).toMatch(/fwd=miss/); // nobody's copy came: c loaded it
    await c.cache.drain();
    // The claim and one more GET at the end of the wait, beside what a plain miss sends.
    expect(miss() - waiting - plainCost).toBe(2);
  });

  it.each([
    [false, 0],
    [true, 1],
  ])(
    "with reloadLists %s, a list page a node read once and could not patch is reloaded %i times",
    async (reloadLists, reloads) => {
      const open = cluster({ reloadLists });
      const a = await open();
      const b = await open();
      await until(() => a.cache.log.nodes?.() === 2 && b.cache.log.nodes?.() === 2);
      // A third page, read once on b (not hot): an order newer than all shifts it, and b
      // holds no first page to take the row that slides in from.
      const page = "/v1/orders?sort=-createdAt&limit=2&offset=4";
      expect((await b.app.request(page)).headers.get("cache-status")).toMatch(/fwd=miss/);
      await useUpMargin(a, [a, b]);
      const before = a.cache.stats().rehydrations + b.cache.stats().rehydrations;
      expect((await postNewestOrder(a)).status).toBe(201);
      await Promise.all([a.cache.drain(), b.cache.drain()]);
      expect(a.cache.stats().rehydrations + b.cache.stats().rehydrations - before).toBe(reloads);
      // A node that never held it: the new page from Redis with the option, else a miss.
      const c = await open();
      const res = await c.app.request(page);
      expect(res.headers.get("cache-status")).toMatch(reloadLists ? /^edgecache; hit/ : /fwd=miss/);
    },
  );

  it("is neither reloaded nor copied into Redis by a node alone on the log", async () => {
    const open = cluster();
    const a = await open();
    await until(() => a.cache.log.nodes?.() === 1);
    const path = await firstUser(a);
    await read(a, path);
    const before = a.cache.stats().rehydrations;
    expect((await rename(a, path, "Alone")).status).toBe(200);
    await a.cache.drain();
    expect(a.cache.stats().patches).toBeGreaterThanOrEqual(1);
    expect(a.cache.stats()).toMatchObject({ rehydrations: before, patchesShared: 0 });
    expect(await read(a, path)).toEqual({
      firstName: "Alone",
      cache: expect.stringMatching(/^edgecache; hit/),
    });
  });
});
