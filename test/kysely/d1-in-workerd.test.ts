import { describe, expect, it } from "vitest";
import {
  followingSuite,
  followingWorker,
  type Op,
  post,
  tableLevelSuite,
} from "../query-cache/d1-follow.ts";

// edgecache/kysely on D1 inside workerd, over kysely-d1's dialect (`new D1Dialect({ database:
// env.DB })`, wrapped by kyselyCache with the binding as `client`): the Worker of
// test/query-cache/d1-follow-entry.ts. Selects of six shapes (by key, by a column, a range
// with a limit, a page, IN, OR of LIKE and IS NULL) against writes through Kysely and
// straight into D1 (as `wrangler d1 execute`), each read checked against a fresh query.

describe("edgecache/kysely on D1 follows D1 change capture (workerd)", () => {
  followingSuite("/kysely", 6, 60);
});

type Read = { cached: { id: number; name: string | null }[]; fresh: unknown };

describe("edgecache/kysely on D1: a write through Kysely removes exactly the reads it touches (workerd)", () => {
  const { worker, stats } = followingWorker("/kysely", true);
  const kysely = (ops: Op[]) => post(worker(), "/kysely", ops);
  const read = (which: number, id: number): Op => ({ kind: "read", which, id, value: 0 });
  // Row 1 by its key; the rows named n0 (ids 1, 4, 7, 10) and n1 (2, 5, 8), by a predicate.
  const row1 = read(0, 1);
  const named0 = read(1, 0);
  const named1 = read(1, 1);

  it("a write of row 2 leaves the reads of row 1 and of the rows named n0 hits; row 2 moving into n0 is seen", async () => {
    // Twice: a new isolate's first read is at table level (the catalog is read on first use).
    await kysely([row1, named0, named1]);
    await kysely([row1, named0, named1]);
    // Row 2 keeps its name (n1): neither row 1's read nor n0's predicate is touched.
    await kysely([{ kind: "write", which: 0, id: 2, value: 4 }]);
    const before = await stats();
    const [r1, n0] = (await kysely([row1, named0])) as Read[];
    const after = await stats();
    expect(Number(after.hits) - Number(before.hits)).toBe(2);
    expect(after.misses).toBe(before.misses);
    expect(r1!.cached).toEqual(r1!.fresh);
    expect(n0!.cached).toEqual(n0!.fresh);
    // Its new score, in the read of n1 (patched in place or read again).
    const [n1] = (await kysely([named1])) as Read[];
    expect(n1!.cached).toEqual(n1!.fresh);
    // Now named n0 (value 6): the read of n0's predicate must hold it.
    await kysely([{ kind: "write", which: 0, id: 2, value: 6 }]);
    const [moved] = (await kysely([named0])) as Read[];
    expect(moved!.cached.map((r) => r.id)).toEqual([1, 2, 4, 7, 10]);
    expect(moved!.cached).toEqual(moved!.fresh);
    expect(await stats()).toMatchObject({ writes: "capture", faults: 0 });
  });

  it("says per query shape how exactly it is followed: by row, by predicate and window", async () => {
    await kysely([read(2, 5), read(3, 0)]);
    const shapes = (await stats()).shapes as {
      sql: string;
      granularity: string;
      reasons: string[];
    }[];
    const of = (fragment: string) => shapes.find((s) => s.sql.includes(fragment));
    expect(of('where "id" = ?')).toMatchObject({ granularity: "row", reasons: [] });
    expect(of('where "name" = ?')).toMatchObject({ granularity: "predicate", reasons: [] });
    expect(of('where "score" > ?')).toMatchObject({ granularity: "predicate", reasons: [] });
    expect(of("offset ?")).toMatchObject({ granularity: "predicate", reasons: [] });
  });
});

describe("edgecache/kysely on D1 without capture installed (workerd)", () => {
  tableLevelSuite("/kysely");
});
