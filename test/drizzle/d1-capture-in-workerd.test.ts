import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  followingSuite,
  type Op,
  post,
  type Stats,
  startFollowing,
} from "../query-cache/d1-follow.ts";

// edgecache/drizzle on D1 inside workerd, following D1 change capture: the change log's
// Durable Object drains D1's change table (alarm every 200 ms, and at once when a Drizzle
// mutation asks), and the isolate applies its records. Selects of six shapes (by key, by
// a column, a range with a limit, a page, IN, OR of LIKE and IS NULL) against writes
// through Drizzle and straight into D1 (as `wrangler d1 execute`), each read checked
// against a fresh query of D1 (test/query-cache/d1-follow-entry.ts).

describe("edgecache/drizzle on D1 follows D1 change capture (workerd)", () => {
  followingSuite("/drizzle", 6, 100);
});

describe("edgecache/drizzle on D1 without capture installed (workerd)", () => {
  let mf: Miniflare;

  beforeAll(async () => {
    mf = await startFollowing();
    await post(mf, "/setup", { capture: false });
  }, 60_000);

  afterAll(async () => {
    await mf?.dispose();
  });

  it("stays at table level and says so: a write of row 2 empties the cached read of row 1", async () => {
    const read1: Op = { kind: "read", which: 0, id: 1, value: 0 };
    const [first, again, , after] = (await post(mf, "/drizzle", [
      read1,
      read1,
      { kind: "write", which: 0, id: 2, value: 5 },
      read1,
    ])) as { cached: unknown; fresh: unknown }[];
    expect(again!.cached).toEqual(first!.cached);
    expect(after!.cached).toEqual(after!.fresh);
    const stats = ((await post(mf, "/stats")) as Stats).drizzle!;
    expect(stats).toMatchObject({ writes: "tables", hits: 1, misses: 2 });
    expect((stats.capture as { tables: string[] }).tables).toEqual([]);
  });
});
