import { describe, expect, it } from "vitest";
import type { AppliedWrite } from "../../../src/core/cache/types.ts";
import { MAX_GROUP, WriteChain, WriteGroups } from "../../../src/core/cache/write-group.ts";
import type { WriteTurn } from "../../../src/core/change-log/contract.ts";
import type { WriteEvent } from "../../../src/core/deps/planner.ts";

/**
 * A stand-in for Cache.write: counts the turns groups take of their own, keeps each group's
 * one record, holds its place until released; like the Redis log, it hands the next turn
 * over with the record's place when writes wait as the record is sent.
 */
function fakeLog() {
  const records: WriteEvent[][] = [];
  const gates: (() => void)[] = [];
  let turns = 0;
  let failNext: Error | undefined;
  const write = async <T>(
    make: (record: (events: readonly WriteEvent[]) => Promise<AppliedWrite>) => Promise<T>,
    options: { placed?: (next?: WriteTurn) => void; turn?: WriteTurn; wantsTurn?: () => boolean },
  ): Promise<T> => {
    if (failNext) {
      const err = failNext;
      failNext = undefined;
      throw err;
    }
    if (!options.turn) turns++;
    return make(async (events) => {
      const handOver = options.wantsTurn?.() ?? false;
      // The append: placed only when the test lets it (a far log).
      await new Promise<void>((resolve) => gates.push(resolve));
      records.push([...events]);
      options.placed?.(handOver ? { release() {} } : undefined);
      return { keys: [`k${records.length}`], fallback: false, patched: 0 };
    });
  };
  return {
    write,
    records,
    get turns() {
      return turns;
    },
    failNextWith(err: Error) {
      failNext = err;
    },
    /** Resolves once a write is in its append (held until placed), however long that takes. */
    async appending() {
      while (gates.length === 0) await new Promise((r) => setTimeout(r, 1));
    },
    /** Lets the oldest append through. */
    async place() {
      await this.appending();
      gates.shift()!();
      await new Promise((r) => setTimeout(r, 1));
    },
  };
}

const event = (id: number): WriteEvent => ({ table: "t", op: "insert", new: { id } });

/** A write that "commits" row `id` (appending to `db`), then records it. */
const insert =
  (db: number[], id: number) =>
  async (record: (events: readonly WriteEvent[]) => Promise<AppliedWrite>) => {
    await new Promise((r) => setTimeout(r, 0));
    db.push(id);
    await record([event(id)]);
    return id;
  };

describe("WriteGroups (group commit)", () => {
  it("writes arriving while a group is in flight share the next turn and one record, in the database's order", async () => {
    const log = fakeLog();
    const groups = new WriteGroups(log.write);
    const db: number[] = [];
    const first = groups.run(insert(db, 1));
    await log.appending(); // the first write is in its append now
    const rest = [2, 3, 4, 5].map((id) => groups.run(insert(db, id)));
    await log.place();
    await log.place();
    expect(await Promise.all([first, ...rest])).toEqual([1, 2, 3, 4, 5]);
    expect(log.turns).toBe(2);
    expect(log.records.map((r) => r.map((e) => e.new!.id))).toEqual([[1], [2, 3, 4, 5]]);
    expect(db).toEqual([1, 2, 3, 4, 5]);
  });

  it("a write that comes after the group in flight sent its record has its turn taken then, not once the record has its place", async () => {
    const log = fakeLog();
    const ahead: string[] = [];
    const groups = new WriteGroups(log.write, MAX_GROUP, async () => {
      ahead.push(`taken with ${log.records.length} records placed`);
      return { release: () => ahead.push("released") };
    });
    const db: number[] = [];
    const first = groups.run(insert(db, 1));
    await log.appending(); // its record is sent: nobody waited then
    const rest = [2, 3].map((id) => groups.run(insert(db, id)));
    expect(ahead).toEqual(["taken with 0 records placed"]); // asked for once, at once
    await log.place();
    await log.place();
    expect(await Promise.all([first, ...rest])).toEqual([1, 2, 3]);
    // The second group wrote with that turn: it took none of its own, and none is left over.
    expect(log.turns).toBe(1);
    expect(ahead).toEqual(["taken with 0 records placed"]);
    expect(log.records.map((r) => r.map((e) => e.new!.id))).toEqual([[1], [2, 3]]);
  });

  it("with writes waiting as a group's record is sent, the turn it hands over is used and none is taken ahead", async () => {
    const log = fakeLog();
    let taken = 0;
    const groups = new WriteGroups(log.write, MAX_GROUP, async () => {
      taken++;
      return { release() {} };
    });
    const db: number[] = [];
    // All three at once: the first leads, and the others wait as its record is sent.
    const writes = [1, 2, 3].map((id) => groups.run(insert(db, id)));
    await log.place();
    await log.place();
    expect(await Promise.all(writes)).toEqual([1, 2, 3]);
    expect(taken).toBe(0);
    expect(log.turns).toBe(1);
  });

  it("a write's statement starts only once the one before it handed over its events", async () => {
    const log = fakeLog();
    const groups = new WriteGroups(log.write);
    const timeline: string[] = [];
    const slow =
      (id: number, ms: number) =>
      async (record: (e: readonly WriteEvent[]) => Promise<AppliedWrite>) => {
        timeline.push(`start ${id}`);
        await new Promise((r) => setTimeout(r, ms));
        timeline.push(`commit ${id}`);
        await record([event(id)]);
        return id;
      };
    const blocker = groups.run(slow(0, 0));
    await log.appending();
    const a = groups.run(slow(1, 20));
    const b = groups.run(slow(2, 0));
    await log.place();
    await log.place();
    await Promise.all([blocker, a, b]);
    expect(timeline).toEqual(["start 0", "commit 0", "start 1", "commit 1", "start 2", "commit 2"]);
  });

  it("a failed write or one that changed nothing leaves the rest of its group alone", async () => {
    const log = fakeLog();
    const groups = new WriteGroups(log.write);
    const db: number[] = [];
    const first = groups.run(insert(db, 1));
    await log.appending();
    const failing = groups
      .run(async () => {
        throw new Error("constraint");
      })
      .catch((e: Error) => e.message);
    const unchanged = groups.run(async () => "no change");
    const after = groups.run(insert(db, 3));
    await log.place();
    await log.place();
    expect(await failing).toBe("constraint");
    expect(await unchanged).toBe("no change");
    expect(await Promise.all([first, after])).toEqual([1, 3]);
    expect(log.records).toEqual([[event(1)], [event(3)]]);
  });

  it("a write that changed nothing answers only once its group's record is placed: an earlier write of the group may be why", async () => {
    const log = fakeLog();
    const groups = new WriteGroups(log.write);
    const db: number[] = [];
    const first = groups.run(insert(db, 0));
    await log.appending();
    const deleted = groups.run(insert(db, 5)); // stands for DELETE /users/5
    let answeredWith = -1;
    // PUT /users/5 after it: 404, because the delete committed. Its answer must wait for
    // the delete's record, or a read after the 404 could be served the row from cache.
    const notFound = groups
      .run(async () => "404")
      .then((v) => {
        answeredWith = log.records.length;
        return v;
      });
    await log.place();
    await log.place();
    expect(await Promise.all([first, deleted, notFound])).toEqual([0, 5, "404"]);
    expect(answeredWith).toBe(2);
  });

  it("a group refused before its statements (the log out of reach) fails its writes; the next group goes on", async () => {
    const log = fakeLog();
    const groups = new WriteGroups(log.write);
    const db: number[] = [];
    const blocker = groups.run(insert(db, 0));
    await log.appending();
    log.failNextWith(new Error("E_LOG_UNAVAILABLE"));
    const refused = [1, 2].map((id) => groups.run(insert(db, id)).catch((e: Error) => e.message));
    await log.place();
    expect(await Promise.all(refused)).toEqual(["E_LOG_UNAVAILABLE", "E_LOG_UNAVAILABLE"]);
    expect(db).toEqual([0]);
    const later = groups.run(insert(db, 3));
    await log.place();
    expect(await Promise.all([blocker, later])).toEqual([0, 3]);
  });

  it("a group holds at most `max` writes", async () => {
    const log = fakeLog();
    const groups = new WriteGroups(log.write, 2);
    const db: number[] = [];
    const first = groups.run(insert(db, 0));
    await log.appending();
    const rest = [1, 2, 3, 4, 5].map((id) => groups.run(insert(db, id)));
    for (let i = 0; i < 4; i++) await log.place();
    await Promise.all([first, ...rest]);
    expect(log.records.map((r) => r.length)).toEqual([1, 2, 2, 1]);
  });

  it("every write of a group gets the group's applied write, and an append that fails rejects them all", async () => {
    const groups = new WriteGroups(async (make) =>
      make(async () => {
        throw new Error("append failed");
      }),
    );
    const db: number[] = [];
    const writes = [1, 2].map((id) => groups.run(insert(db, id)).catch((e: Error) => e.message));
    expect(await Promise.all(writes)).toEqual(["append failed", "append failed"]);
    expect(db).toEqual([1, 2]);
  });
});

describe("WriteChain (one write at a time, Workers)", () => {
  it("starts each write once the last one's record has its place, each with a record of its own", async () => {
    const log = fakeLog();
    const chain = new WriteChain(log.write);
    const db: number[] = [];
    const writes = [1, 2, 3].map((id) => chain.run(insert(db, id)));
    for (let i = 0; i < 3; i++) await log.place();
    expect(await Promise.all(writes)).toEqual([1, 2, 3]);
    expect(log.turns).toBe(3);
    expect(log.records).toEqual([[event(1)], [event(2)], [event(3)]]);
  });
});
