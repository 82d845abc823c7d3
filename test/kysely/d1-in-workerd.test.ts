import { describe, expect, it } from "vitest";
import {
  firstReadTest,
  followingSuite,
  followingWorker,
  type Op,
  post,
  tableLevelSuite,
  writeOfAnotherRowTest,
} from "../query-cache/d1-follow.ts";

// edgecache/kysely on D1 inside workerd, over kysely-d1's dialect (`new D1Dialect({ database:
// env.DB })`, wrapped by kyselyCache with the binding as `client`): the Worker of
// test/query-cache/d1-follow-entry.ts. Selects of six shapes (by key, by a column, a range
// with a limit, a page, IN, OR of LIKE and IS NULL) against writes through Kysely and
// straight into D1 (as `wrangler d1 execute`), each read checked against a fresh query.

describe("edgecache/kysely on D1 follows D1 change capture (workerd)", () => {
  followingSuite("/kysely", 6, 60);
});

describe("edgecache/kysely on D1: a new isolate's first read is stored for the next (workerd)", () => {
  firstReadTest("/kysely");
});

describe("edgecache/kysely on D1: a write through Kysely removes exactly the reads it touches (workerd)", () => {
  const { worker, stats } = followingWorker("/kysely", true);
  const kysely = (ops: Op[]) => post(worker(), "/kysely", ops);
  const read = (which: number, id: number): Op => ({ kind: "read", which, id, value: 0 });
  writeOfAnotherRowTest("/kysely", worker, stats);

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

  it("with capture installed, an update of 2 rows reports 2 through Kysely, edgecache/sql and Drizzle; the binding itself reports 4 (its meta.changes counts capture's trigger rows)", async () => {
    const [counts] = (await post(worker(), "/counts", [read(0, 0)])) as unknown[];
    expect(counts).toEqual({ drizzle: 2, sql: 2, kysely: 2, kyselyInsertId: 20, binding: 4 });
  });
});

describe("edgecache/kysely on D1 without capture installed (workerd)", () => {
  tableLevelSuite("/kysely");
});
