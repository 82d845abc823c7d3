import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "../../helpers/cluster.ts";
import { type EdgecacheWorkers, startEdgecacheWorkers } from "./edgecache-workers.ts";

// The cron trigger and stale-while-revalidate of the edgecache Worker, inside workerd: two
// isolates over one D1, the reads of both counted in the Durable Object.

const CONFIGURED = "/v1/users?lastName=Smith&limit=5";
let w: EdgecacheWorkers;

beforeAll(async () => {
  w = await startEdgecacheWorkers({
    names: ["a", "b"],
    options: {
      // The hottest key only, and each isolate reports its counts at once.
      warm: { urls: [CONFIGURED], hottest: 1, reportMs: 0 },
      routes: { orders: { ttl: 2 }, usersWithOrders: { ttl: 1, staleWhileRevalidate: 60 } },
    },
  });
}, 60_000);

afterAll(async () => {
  await w?.close();
});

const status = async (isolate: string, path: string) =>
  (await w.fetch(isolate, path)).headers.get("cache-status");
const stats = async (isolate: string) =>
  (await (await w.fetch(isolate, "/_edgecache/stats")).json()) as {
    loads: number;
    staleHits: number;
    tiers: { name: string; hits: number; misses: number }[];
  };

describe("the edgecache Worker's cron trigger", () => {
  it("precomputes a configured URL, so another isolate's first read is a hit from a shared tier", async () => {
    await w.scheduled("b");
    const before = await stats("a");
    expect(await status("a", CONFIGURED)).toMatch(/^edgecache; hit; ttl=\d+$/);
    const after = await stats("a");
    expect(after.loads).toBe(before.loads);
    expect(after.tiers[0]!.misses).toBe(before.tiers[0]!.misses + 1);
  });

  it("warms the key read most in any isolate, and not one read less", async () => {
    const hot = "/v1/orders?status=paid&limit=4";
    const cold = "/v1/orders?status=pending&limit=4";
    for (let i = 0; i < 4; i++) await w.fetch("a", hot);
    await w.fetch("a", cold);
    // Both expire (ttl 2 s); then the cron runs in the other isolate.
    await new Promise((resolve) => setTimeout(resolve, 2100));
    await w.scheduled("b");
    expect(await status("a", hot)).toMatch(/^edgecache; hit; ttl=\d+$/);
    expect(await status("a", cold)).toMatch(/^edgecache; fwd=miss; stored/);
  });
});

describe("stale-while-revalidate on a route that configures it", () => {
  it("says so in Cache-Control, serves an expired entry at once and refreshes it in the background", async () => {
    const path = "/v1/usersWithOrders?limit=2";
    const miss = await w.fetch("a", path);
    // Downstream too, to the client's own cache only, with the bound it sets.
    expect(miss.headers.get("cache-control")).toBe("private, max-age=0, stale-while-revalidate=60");
    expect(miss.headers.get("cache-status")).toMatch(/; detail="browser-bound=60"$/);
    await miss.text();
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const before = (await stats("a")).staleHits;
    expect(await status("a", path)).toMatch(
      /^edgecache; hit; ttl=-\d+; detail="browser-bound=60"$/,
    );
    expect((await stats("a")).staleHits).toBe(before + 1);
    // The refresh ran through ctx.waitUntil: the next read is fresh again.
    await until(async () => /^edgecache; hit; ttl=\d+;/.test((await status("a", path)) ?? ""));
  });
});
