import type { Miniflare } from "miniflare";
import { describe, expect, it } from "vitest";
import {
  followingSuite,
  followingWorker,
  type Op,
  post,
  tableLevelSuite,
  writeOfAnotherRowTest,
} from "../query-cache/d1-follow.ts";
import { startPrismaD1 } from "./d1-worker.ts";

// edgecache/prisma on D1 inside workerd: `prismaCache(new PrismaD1(env.DB), ...)` in the
// Worker of test/prisma/d1-entry.ts, with the Prisma client generated for workerd
// (schema.d1.prisma) bundled in. Prisma's reads of six shapes and a count, against writes
// through Prisma and straight into D1 (as `wrangler d1 execute`), each read checked against
// a fresh Prisma client on the same binding.

describe("edgecache/prisma on D1 follows D1 change capture (workerd)", () => {
  // D1's adapter infers column types from the values: its results are read again, not patched.
  followingSuite("/prisma", 7, 60, { patched: false, start: startPrismaD1 });
});

describe("edgecache/prisma on D1: a write through Prisma removes exactly the reads it touches (workerd)", () => {
  const { worker, stats } = followingWorker("/prisma", true, startPrismaD1);
  const prisma = (ops: Op[], path = "/prisma") => post(worker(), path, ops);
  const read = (which: number, id: number): Op => ({ kind: "read", which, id, value: 0 });
  writeOfAnotherRowTest("/prisma", worker, stats);

  it("says per query shape how exactly it is followed: by row for findUnique, by predicate and window for findMany with where", async () => {
    const reads = [0, 1, 2, 3, 4, 5, 6].map((which) => read(which, 2));
    // Twice: a new isolate's first read is at table level (the catalog is read on first use).
    await prisma(reads);
    await prisma(reads);
    const shapes = (await stats()).shapes as {
      sql: string;
      granularity: string;
      reasons: string[];
    }[];
    const of = (fragment: string) => shapes.find((s) => s.sql.includes(fragment));
    const row = { granularity: "row", reasons: [] };
    const predicate = { granularity: "predicate", reasons: [] };
    // findUnique
    expect(of("WHERE (`main`.`users`.`id` = ? AND 1=1)")).toMatchObject(row);
    // findMany with where, orderBy, take, skip
    expect(of("WHERE `main`.`users`.`name` = ? ORDER BY")).toMatchObject(predicate);
    expect(of("WHERE `main`.`users`.`score` > ? ORDER BY")).toMatchObject(predicate);
    expect(of("WHERE 1=1 ORDER BY")).toMatchObject(predicate);
    expect(of("`main`.`users`.`id` IN")).toMatchObject(row);
    // startsWith, written `LIKE (? || '%')`: the prefix it spells.
    expect(of("LIKE")).toMatchObject(predicate);
    // count(), written over a derived table: the predicate of the rows it counts.
    expect(of("COUNT(*)")).toMatchObject(predicate);
  });

  batchTransactions(worker);
});

describe("edgecache/prisma on D1 without capture installed (workerd)", () => {
  const { worker } = tableLevelSuite("/prisma", startPrismaD1);
  batchTransactions(worker);
});

/**
 * Prisma's batch transactions on D1 (Prisma refuses interactive ones there): D1 has no
 * transactions, so a write stands even when a later statement of its batch fails.
 */
function batchTransactions(worker: () => Miniflare) {
  const read4: Op = { kind: "read", which: 0, id: 4, value: 0 };
  it("a batch transaction's write is seen when it commits, and when a later statement fails (the write stands)", async () => {
    for (const which of [0, 1]) {
      await post(worker(), "/prisma", [read4, read4]);
      const write: Op = { kind: "write", which, id: 4, value: 20 + which };
      await post(worker(), "/prisma/transaction", [write]);
      const [r] = (await post(worker(), "/prisma", [read4])) as {
        cached: { score: number }[];
        fresh: unknown;
      }[];
      expect(r!.cached).toEqual(r!.fresh);
      expect(r!.cached[0]!.score).toBe(20 + which);
    }
  });
}
