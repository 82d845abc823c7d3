import { describe, expect, it } from "vitest";
import { ORIGIN } from "../../../src/core/change-log/contract.ts";
import {
  type PlanSchema,
  planWrite,
  rowTag,
  tableTag,
  type WriteEvent,
} from "../../../src/core/deps/planner.ts";
import type { CacheEntry } from "../../../src/core/entries/entry.ts";
import { WriteFence } from "../../../src/core/fence/fence.ts";

/**
 * What the write fence tells of the changes since an entry's position: nothing, the write
 * events of each record that concerns it (so a shared-tier copy can be patched up to date),
 * or "unknown" when only a load can tell.
 */

const schema: PlanSchema = { primaryKey: () => "id", joinColumns: () => [] };
const update = (id: number, to: string): WriteEvent => ({
  table: "users",
  op: "update",
  old: { id, name: "before" },
  new: { id, name: to },
});

function fence(): WriteFence {
  return new WriteFence(
    64,
    (event, lookup) => planWrite(event, schema, lookup),
    () => "exact",
  );
}

const user1: CacheEntry = {
  body: new Uint8Array(),
  headers: {},
  status: 200,
  createdAt: 0,
  freshUntil: 1,
  staleUntil: 1,
  etag: '"x"',
  tags: [rowTag("users", 1)],
  position: ORIGIN,
};

describe("WriteFence.changesFor", () => {
  it("gives each concerning record's events in log order, and leaves the others out", () => {
    const f = fence();
    f.record({ seq: 1, ops: [{ event: update(2, "a") }], ordered: true });
    f.record({
      seq: 2,
      ops: [{ event: update(1, "b") }, { event: update(3, "c") }],
      ordered: true,
    });
    f.record({ seq: 3, ops: [{ event: update(4, "d") }], ordered: true });
    f.record({ seq: 4, ops: [{ event: update(1, "e") }], ordered: true });
    expect(f.changesFor(ORIGIN, "user:1", user1)).toEqual([
      [update(1, "b"), update(3, "c")],
      [update(1, "e")],
    ]);
    expect(f.changesFor({ log: "", seq: 2 }, "user:1", user1)).toEqual([[update(1, "e")]]);
    expect(f.changesFor({ log: "", seq: 4 }, "user:1", user1)).toBe("none");
    expect(f.conflicts({ log: "", seq: 2 }, "user:1", user1)).toBe(true);
    expect(f.conflicts({ log: "", seq: 4 }, "user:1", user1)).toBe(false);
  });

  it("is 'none' when nothing since concerns the entry", () => {
    const f = fence();
    f.record({ seq: 1, ops: [{ event: update(2, "a") }], ordered: true });
    expect(f.changesFor(ORIGIN, "user:1", user1)).toBe("none");
  });

  it("is 'unknown' for a record out of commit order, an invalidation by name, or another log", () => {
    const unordered = fence();
    unordered.record({ seq: 1, ops: [{ event: update(1, "a") }], ordered: false });
    expect(unordered.changesFor(ORIGIN, "user:1", user1)).toBe("unknown");

    const named = fence();
    named.record({ seq: 1, ops: [{ keys: ["user:1"] }], ordered: true });
    expect(named.changesFor(ORIGIN, "user:1", user1)).toBe("unknown");

    const tagged = fence();
    tagged.record({ seq: 1, ops: [{ tags: [rowTag("users", 1)] }], ordered: true });
    expect(tagged.changesFor(ORIGIN, "user:1", user1)).toBe("unknown");

    expect(fence().changesFor({ log: "other", seq: 0 }, "user:1", user1)).toBe("unknown");
  });

  it("is 'unknown' for an event the planner names by its table alone (no old row of an update)", () => {
    const f = fence();
    const blind: WriteEvent = { table: "users", op: "update", new: { id: 1, name: "x" } };
    f.record({ seq: 1, ops: [{ event: blind }], ordered: true });
    const reader = { ...user1, tags: [...user1.tags, tableTag("users")] };
    expect(f.changesFor(ORIGIN, "user:1", reader)).toBe("unknown");
    // Told event by event, the records that follow it are what `concerning` names.
    f.record({ seq: 2, ops: [{ event: update(1, "b") }], ordered: true });
    expect(f.concerning({ log: "", seq: 1 }, "user:1", reader)).toEqual([
      { seq: 2, events: [update(1, "b")] },
    ]);
  });

  it("is 'unknown' when the records since the position are no longer retained", () => {
    const f = fence();
    for (let seq = 1; seq <= 200; seq++) {
      f.record({ seq, ops: [{ event: update(seq === 1 ? 1 : 1000 + seq, "x") }], ordered: true });
    }
    expect(f.changesFor(ORIGIN, "user:1", user1)).toBe("unknown");
  });
});
