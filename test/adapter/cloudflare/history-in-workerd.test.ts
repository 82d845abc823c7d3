import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Row } from "../../../src/core/data/query.ts";
import { HIT, MISS_STORED, type Reply, reply, requestInit } from "../../app/harness.ts";
import { bundle, COMPATIBILITY_DATE } from "../../helpers/workerd.ts";
import { type EdgecacheWorkers, startEdgecacheWorkers } from "./edgecache-workers.ts";

// A new isolate keeps every cached entry no write touched: isolates start all the time at
// the edge, and one that starts after writes and purges judges what the others left in KV,
// the Cache API and the Durable Object tier by what concerns each entry (the summary of the
// log its object keeps, and the records after it), not by its tables. Each Worker below is
// an isolate of its own, started (its cache made, its log followed) on its first request.

type Stats = {
  loads: number;
  refused: number;
  tiers: { name: string; hits: number }[];
};
const hitsOf = (stats: Stats, tiers: string[]) =>
  stats.tiers.filter((t) => tiers.includes(t.name)).reduce((n, t) => n + t.hits, 0);

describe("the edgecache Worker's data API, an isolate started after writes and a purge", () => {
  let w: EdgecacheWorkers;
  beforeAll(async () => {
    w = await startEdgecacheWorkers({ names: ["a", "b"], demo: { users: 40, orders: 40 } });
  }, 60_000);
  afterAll(async () => {
    await w?.close();
  });
  const send = async (isolate: string, method: string, path: string, body?: unknown) =>
    reply(await w.fetch(isolate, path, requestInit(method, body, {})));
  const status = (r: Reply) => r.headers.get("cache-status") ?? "";

  it("serves every row no write named from the Cache API or KV, and reloads the one written", async () => {
    const users = (await send("a", "GET", "/v1/users?limit=21&sort=id")).json.data as Row[];
    const [written, other, ...kept] = users;
    for (const u of [written!, ...kept]) {
      expect(status(await send("a", "GET", `/v1/users/${u.id}`))).toMatch(MISS_STORED);
    }
    const patch = async (u: Row, lastName: string) =>
      expect((await send("a", "PATCH", `/v1/users/${u.id}`, { lastName })).status).toBe(200);
    await patch(written!, "Written");
    // A write to a row nobody read, and purges that name no entry.
    await patch(other!, "Other");
    for (const body of [{ prefix: "GET /nothing/" }, { tag: "orders#-1" }]) {
      expect((await send("a", "POST", "/_edgecache/invalidate", body)).status).toBe(200);
    }

    // b's first request: a new isolate, with nothing in memory.
    const before = (await send("b", "GET", "/_edgecache/stats")).json as Stats;
    const served: string[] = [];
    for (const u of kept) {
      if (HIT.test(status(await send("b", "GET", `/v1/users/${u.id}`)))) served.push(String(u.id));
    }
    expect(served).toEqual(kept.map((u) => String(u.id)));
    const after = (await send("b", "GET", "/_edgecache/stats")).json as Stats;
    expect(hitsOf(after, ["cache-api", "kv"]) - hitsOf(before, ["cache-api", "kv"])).toBe(
      kept.length,
    );
    // The written row is refused and loaded again, showing the write.
    const row = await send("b", "GET", `/v1/users/${written!.id}`);
    expect(status(row)).toMatch(MISS_STORED);
    expect(row.json.lastName).toBe("Written");
  });
});

describe("an isolate started after writes, on the Durable Object tier and as a library", () => {
  let mf: Miniflare;
  beforeAll(async () => {
    const script = await bundle(new URL("./history-entry.ts", import.meta.url));
    const worker = (name: string) => ({
      name,
      modules: true,
      script,
      compatibilityDate: COMPATIBILITY_DATE,
      bindings: { NAME: name },
      kvNamespaces: { CACHE: "history-kv" },
      durableObjects: {
        CHANGE_LOG: { className: "ChangeLogObject", scriptName: "a", useSQLite: true },
        CACHE_TIER: { className: "CacheTierObject", scriptName: "a", useSQLite: true },
      },
    });
    mf = new Miniflare({ workers: ["a", "b", "c", "d"].map(worker) });
    await mf.ready;
  }, 60_000);
  afterAll(async () => {
    await mf?.dispose();
  });
  async function ask<T>(isolate: string, path: string): Promise<T> {
    const fetcher = (await mf.getWorker(isolate)) as unknown as { fetch: typeof fetch };
    const res = await fetcher.fetch(`http://history${path}`);
    if (!res.ok) throw new Error(`${isolate} ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }
  const load = (isolate: string, id: number) =>
    ask<{ value: { id: string; load: number; by: string } }>(
      isolate,
      `/load?key=user:${id}&id=${id}`,
    );

  it("serves every entry no write touched from the Durable Object tier; the written one is reloaded", async () => {
    const ids = [1, 2, 3, 4, 5, 6];
    const loaded = new Map<number, unknown>();
    for (const id of ids) loaded.set(id, (await load("a", id)).value);
    await ask("a", "/write?id=1&name=Written");
    await ask("a", "/write?id=99&name=Other"); // a row nobody read
    await ask("a", "/purge?prefix=nothing:");

    const before = await ask<Stats>("b", "/stats");
    const again = new Map<number, unknown>();
    for (const id of ids) again.set(id, (await load("b", id)).value);
    const after = await ask<Stats>("b", "/stats");
    // Rows 2 to 6 as a loaded them, each from the tier; row 1 loaded by b (the writer
    // deleted its copy from the tier, and any copy left would be refused).
    for (const id of ids.slice(1)) expect(again.get(id)).toEqual(loaded.get(id));
    expect(again.get(1)).toMatchObject({ by: "b" });
    expect(hitsOf(after, ["durable-object"]) - hitsOf(before, ["durable-object"])).toBe(5);
    expect(after.loads - before.loads).toBe(1);
  });

  it("durableChangeLog: three keys set in turn, then a new isolate serves all three", async () => {
    for (const key of ["k1", "k2", "k3"]) await ask("c", `/lib/set?key=${key}`);
    const got: unknown[] = [];
    for (const key of ["k1", "k2", "k3"]) {
      got.push((await ask<{ value: unknown }>("d", `/lib/get?key=${key}`)).value);
    }
    expect(got).toEqual([
      { key: "k1", by: "c" },
      { key: "k2", by: "c" },
      { key: "k3", by: "c" },
    ]);
    const stats = await ask<Stats>("d", "/lib/stats");
    expect(hitsOf(stats, ["kv"])).toBe(3);
  });
});
