// The Worker of test/query-cache/d1-follow-entry.ts inside workerd (or another entry of
// d1-follow-table.ts, as test/prisma/d1-entry.ts), and what the tests of edgecache/drizzle,
// edgecache/sql, edgecache/kysely and edgecache/prisma following D1 change capture send it.
import fc from "fast-check";
import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, expect, it } from "vitest";
import { until } from "../helpers/cluster.ts";
import { startWorker } from "../helpers/workerd.ts";
import type { Op } from "./d1-follow-table.ts";

export type { Op };

/** The bindings of a D1-following Worker: the database, the log's object, its drain interval. */
export const FOLLOWING_BINDINGS = {
  d1Databases: ["DB"],
  durableObjects: { CHANGE_LOG: "ChangeLogObject" },
  bindings: { EDGECACHE_CAPTURE_MS: "200" },
};

export async function startFollowing(): Promise<Miniflare> {
  return startWorker(new URL("./d1-follow-entry.ts", import.meta.url), FOLLOWING_BINDINGS);
}

export async function post(mf: Miniflare, path: string, body: unknown = {}) {
  const res = await mf.dispatchFetch(`http://localhost${path}`, {
    method: "POST",
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as never;
}

export const ops = (reads: number) =>
  fc.array(
    fc.record({
      kind: fc.constantFrom("read", "read", "read", "write", "around"),
      which: fc.nat(reads - 1),
      id: fc.integer({ min: 1, max: 12 }),
      value: fc.nat(30),
    }),
    { minLength: 1, maxLength: 30 },
  ) as fc.Arbitrary<Op[]>;

export type Stats = Record<string, Record<string, unknown>>;

export type Route = "/drizzle" | "/sql" | "/kysely" | "/prisma";

/**
 * The Worker for the tests of the enclosing describe, set up with capture installed or not;
 * `worker()` is it once `beforeAll` has run, `stats()` the stats of `route`'s cache. `start`
 * starts the Worker of another entry.
 */
export function followingWorker(route: Route, capture: boolean, start = startFollowing) {
  let mf: Miniflare;
  beforeAll(async () => {
    mf = await start();
    await post(mf, "/setup", { capture });
  }, 60_000);
  afterAll(async () => {
    await mf?.dispose();
  });
  return {
    worker: () => mf,
    stats: async () => ((await post(mf, "/stats")) as Stats)[route.slice(1)]!,
  };
}

/**
 * The suite every entry passes (`route`: "/drizzle", "/sql", "/kysely" or "/prisma"; `reads`:
 * how many read shapes the entry has): capture mode, a write around it seen after the
 * drain's interval, and the consistency property of random reads and writes through the
 * entry and around it. `patched`: whether the entry's results are patched in place (not
 * Prisma's on D1); `start`: as followingWorker's.
 */
export function followingSuite(
  route: Route,
  reads: number,
  numRuns: number,
  { patched = true, start = startFollowing } = {},
) {
  const { worker, stats } = followingWorker(route, true, start);
  let mf: Miniflare;
  beforeAll(() => {
    mf = worker();
  });

  it("runs in capture mode: a write of row 2 leaves the cached read of row 1 a hit", async () => {
    const read1: Op = { kind: "read", which: 0, id: 1, value: 0 };
    await post(mf, route, [read1, read1]);
    const before = await stats();
    expect(before.writes).toBe("capture");
    const [, , after] = (await post(mf, route, [
      { kind: "write", which: 0, id: 2, value: 7 },
      read1,
      { kind: "read", which: 0, id: 2, value: 0 },
    ])) as { cached: unknown; fresh: unknown }[];
    expect(after!.cached).toEqual(after!.fresh);
    const now = await stats();
    // Row 1's read was a hit after the write of row 2; row 2's was read again.
    expect(Number(now.hits) - Number(before.hits)).toBe(1);
    expect((now.capture as { tables: string[] }).tables).toContain("users");
    expect((now.capture as { applied: number }).applied).toBeGreaterThan(0);
  });

  it("a row updated straight in D1 is seen by the next read after the drain's interval, without asking, and counts in capture.applied", async () => {
    const read3: Op = { kind: "read", which: 0, id: 3, value: 0 };
    await post(mf, route, [read3, read3]);
    const applied = async () => ((await stats()).capture as { applied: number }).applied;
    const before = await applied();
    // Straight into D1 through miniflare's binding, not through the entry's catch-up.
    const db = await mf.getD1Database("DB");
    await db.prepare("update users set name = 'outside' where id = 3").run();
    // Until both: a read may show the row before the isolate has synced the drained record
    // (a read that was not cached goes to D1); the isolate then applies the alarm's drain,
    // not one it asked for, and counts it.
    await until(async () => {
      const [r] = (await post(mf, route, [read3])) as { cached: { name: string }[] }[];
      return r!.cached[0]?.name === "outside" && (await applied()) > before;
    }, 10_000);
  });

  it("property: random reads, writes through the entry and around it; every read equals a fresh query", async () => {
    await fc.assert(
      fc.asyncProperty(ops(reads), async (sequence) => {
        const results = (await post(mf, route, sequence)) as {
          cached?: unknown;
          fresh?: unknown;
          caughtUp?: boolean;
        }[];
        results.forEach((r, k) => {
          if (sequence[k]!.kind === "read") expect(r.cached).toEqual(r.fresh);
          if (sequence[k]!.kind === "around") expect(r.caughtUp).toBe(true);
        });
      }),
      { numRuns },
    );
    const now = await stats();
    expect(now).toMatchObject({ writes: "capture", faults: 0 });
    expect(Number(now.hits)).toBeGreaterThan(0);
    // The object orders what it drains (no data API write takes turns here): results of
    // every column are patched in place, where the entry's results can be.
    if (patched) expect(Number(now.patched)).toBeGreaterThan(0);
    else expect(Number(now.patched)).toBe(0);
  }, 60_000);
}

/**
 * With capture, on a fresh Worker (its own followingWorker, from `start`): the same read of
 * row 1 (read 0, by its key) three times misses once, then hits; the first read, which reads
 * capture's catalog, is stored exactly, neither fenced out by the log's start nor emptied by
 * the next read.
 */
export function firstReadTest(route: Route, start = startFollowing) {
  const { worker, stats } = followingWorker(route, true, start);

  it("the same read three times on a fresh Worker: miss, hit, hit (the catalog is read by the first)", async () => {
    const read1: Op = { kind: "read", which: 0, id: 1, value: 0 };
    for (let i = 0; i < 3; i++) await post(worker(), route, [read1]);
    const s = await stats();
    expect(s.writes).toBe("capture");
    expect({ misses: Number(s.misses), hits: Number(s.hits) }).toEqual({ misses: 1, hits: 2 });
    expect({ fenced: Number(s.fenced), stored: Number(s.stored) }).toEqual({
      fenced: 0,
      stored: 1,
    });
    expect((s.registrations as { exact: number }).exact).toBe(1);
  });
}

/**
 * With capture (in a describe whose followingWorker is `worker` and `stats`): a write through
 * the entry of row 2 leaves the cached reads of row 1 (read 0, by its key) and of the rows
 * named n0 (read 1, by a predicate) hits, and row 2 moving into n0 is seen.
 */
export function writeOfAnotherRowTest(
  route: Route,
  worker: () => Miniflare,
  stats: () => Promise<Record<string, unknown>>,
) {
  const send = (ops: Op[]) => post(worker(), route, ops);
  const read = (which: number, id: number): Op => ({ kind: "read", which, id, value: 0 });
  type Read = { cached: { id: number }[]; fresh: unknown };
  // Row 1 by its key; the rows named n0 (ids 1, 4, 7, 10) and n1 (2, 5, 8), by a predicate.
  const row1 = read(0, 1);
  const named0 = read(1, 0);
  const named1 = read(1, 1);

  it("a write of row 2 leaves the reads of row 1 and of the rows named n0 hits; row 2 moving into n0 is seen", async () => {
    // Stored by their first reads, registered exactly (a new isolate's too: firstReadTest).
    await send([row1, named0, named1]);
    // Row 2 keeps its name (n1): neither row 1's read nor n0's predicate is touched.
    await send([{ kind: "write", which: 0, id: 2, value: 4 }]);
    const before = await stats();
    const [r1, n0] = (await send([row1, named0])) as Read[];
    const after = await stats();
    expect(Number(after.hits) - Number(before.hits)).toBe(2);
    expect(after.misses).toBe(before.misses);
    expect(r1!.cached).toEqual(r1!.fresh);
    expect(n0!.cached).toEqual(n0!.fresh);
    // Its new score, in the read of n1 (patched in place or read again).
    const [n1] = (await send([named1])) as Read[];
    expect(n1!.cached).toEqual(n1!.fresh);
    // Now named n0 (value 6): the read of n0's predicate must hold it.
    await send([{ kind: "write", which: 0, id: 2, value: 6 }]);
    const [moved] = (await send([named0])) as Read[];
    expect(moved!.cached.map((r) => r.id)).toEqual([1, 2, 4, 7, 10]);
    expect(moved!.cached).toEqual(moved!.fresh);
    expect(await stats()).toMatchObject({ writes: "capture", faults: 0 });
  });
}

/**
 * Without capture installed: table level, and said so in `writes` (`route`: an entry whose
 * reads and writes of the same table are not told apart without capture). Returns its
 * Worker, for further tests.
 */
export function tableLevelSuite(route: "/drizzle" | "/kysely" | "/prisma", start = startFollowing) {
  const { worker, stats } = followingWorker(route, false, start);

  it("stays at table level and says so: a write of row 2 empties the cached read of row 1", async () => {
    const read1: Op = { kind: "read", which: 0, id: 1, value: 0 };
    const [first, again, , after] = (await post(worker(), route, [
      read1,
      read1,
      { kind: "write", which: 0, id: 2, value: 5 },
      read1,
    ])) as { cached: unknown; fresh: unknown }[];
    expect(again!.cached).toEqual(first!.cached);
    expect(after!.cached).toEqual(after!.fresh);
    const now = await stats();
    expect(now).toMatchObject({ writes: "tables", hits: 1, misses: 2 });
    expect((now.capture as { tables: string[] }).tables).toEqual([]);
  });
  return { worker, stats };
}
