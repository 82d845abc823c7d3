import type { Miniflare } from "miniflare";
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
import { startPrismaD1 } from "./d1-worker.ts";

// edgecache/prisma on D1 inside workerd: `prismaCache(new PrismaD1(env.DB), ...)` in the
// Worker of test/prisma/d1-entry.ts, with the Prisma client generated for workerd
// (schema.d1.prisma) bundled in. Prisma's reads of six shapes and a count, against writes
// through Prisma and straight into D1 (as `wrangler d1 execute`), each read checked against
// a fresh Prisma client on the same binding.

describe("edgecache/prisma on D1 follows D1 change capture (workerd)", () => {
  // D1's adapter types a column by its values: a patched result is typed again (d1-results.ts).
  followingSuite("/prisma", 7, 60, { start: startPrismaD1 });
});

describe("edgecache/prisma on D1: a new isolate's first read is stored for the next (workerd)", () => {
  firstReadTest("/prisma", startPrismaD1);
});

describe("edgecache/prisma on D1: a DATETIME column, whose numbers the adapter gives as text beside other text (workerd)", () => {
  const { worker, stats } = followingWorker("/prisma", true, startPrismaD1);
  type Read = { cached: unknown[]; fresh: unknown[] };
  const send = (ops: { kind: "read" | "around"; sql: string }[]) =>
    post(worker(), "/prisma/events", ops) as Promise<Read[]>;
  const read = (sql: string) => ({ kind: "read" as const, sql });
  const around = (sql: string) => ({ kind: "around" as const, sql });
  const counts = async () => {
    const s = await stats();
    return { hits: Number(s.hits), misses: Number(s.misses), patched: Number(s.patched) };
  };

  it("a page ordered by it, its values text, keeps its window: a write around it outside the page leaves it a hit, one in it is patched (typed again: text not like a date makes the column Text)", async () => {
    const page = read("SELECT id, at, note, n FROM events ORDER BY at DESC, id DESC LIMIT 2");
    // Stored by the first read, registered exactly (a new isolate's too: firstReadTest).
    await send([page]);
    let before = await counts();
    await send([around("update events set note = 'x' where id = 1")]);
    const [kept] = await send([page]);
    let after = await counts();
    expect(kept!.cached).toEqual(kept!.fresh);
    expect(after.hits - before.hits).toBe(1);
    expect(after.misses).toBe(before.misses);
    before = after;
    // Into the page: it is patched, its `at` still a DateTime (Prisma's Dates) ...
    await send([around("insert into events values (6, '2024-01-01T00:00:06Z', 'e6', null)")]);
    // ... then text not like a date comes first: the adapter types the column Text.
    const [dated] = await send([page]);
    await send([around("insert into events values (7, 'later', 'e7', null)")]);
    const [text] = await send([page]);
    after = await counts();
    expect(dated!.cached).toEqual(dated!.fresh);
    expect(text!.cached).toEqual(text!.fresh);
    expect(text!.cached).toMatchObject([{ id: 7, at: "later" }, { id: 6 }]);
    expect(after.patched - before.patched).toBe(2);
    expect(after.misses).toBe(before.misses);
  });

  it("a page whose last value is a number given as text is not ordered by it: a number written after it in SQLite's order but before it as text is seen", async () => {
    // DESC: text first (rows 6 to 2), then numbers; with text in the column, row 1's 5
    // comes as "5", the page's last value.
    await send([
      around("delete from events where id > 5"),
      around("insert into events values (6, 'later', 'e6', null)"),
      around("update events set at = 5 where id = 1"),
    ]);
    const page = read("SELECT id, at, note, n FROM events ORDER BY at DESC, id DESC LIMIT 6");
    const [first] = await send([page, page]);
    expect(first!.cached.at(-1)).toMatchObject({ id: 1, at: "5" });
    // 7 > 5 takes row 1's place. Were "5" taken as stored text, 7 (a number, before all
    // text in SQLite's order) would come after it, outside the page: the page read stale.
    await send([around("insert into events values (8, 7, 'e8', null)")]);
    const [after] = await send([page]);
    expect(after!.cached).toEqual(after!.fresh);
    expect(after!.cached.at(-1)).toMatchObject({ id: 8, at: "7" });
    expect(await stats()).toMatchObject({ writes: "capture", faults: 0 });
  });

  it("so is one ordered by an INTEGER column that holds text too: its numbers come as text there", async () => {
    await send([
      around("update events set n = null"),
      around("update events set n = 'x' where id = 2"),
      around("update events set n = 5 where id = 1"),
    ]);
    // DESC: text, then numbers, then nulls.
    const page = read("SELECT id, at, note, n FROM events ORDER BY n DESC, id DESC LIMIT 2");
    const [first] = await send([page, page]);
    expect(first!.cached).toMatchObject([
      { id: 2, n: "x" },
      { id: 1, n: "5" },
    ]);
    await send([around("update events set n = 7 where id = 3")]);
    const [after] = await send([page]);
    expect(after!.cached).toEqual(after!.fresh);
    expect(after!.cached).toMatchObject([{ id: 2 }, { id: 3, n: "7" }]);
  });
});

describe("edgecache/prisma on D1: a write through Prisma removes exactly the reads it touches (workerd)", () => {
  const { worker, stats } = followingWorker("/prisma", true, startPrismaD1);
  const prisma = (ops: Op[], path = "/prisma") => post(worker(), path, ops);
  const read = (which: number, id: number): Op => ({ kind: "read", which, id, value: 0 });
  writeOfAnotherRowTest("/prisma", worker, stats);

  it("says per query shape how exactly it is followed: by row for findUnique, by predicate and window for findMany with where", async () => {
    const reads = [0, 1, 2, 3, 4, 5, 6].map((which) => read(which, 2));
    // Each shape is told once its first read is stored: a new isolate's is, while following.
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

  it("with capture installed, updateMany of 2 rows counts 2, and so does executeRaw (D1's meta.changes counts capture's trigger rows too); a key taken is still P2002", async () => {
    const [counts] = (await prisma([read(0, 0)], "/prisma/counts")) as unknown[];
    expect(counts).toEqual({ updateMany: 2, executeRaw: 2, taken: "P2002" });
  });
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
