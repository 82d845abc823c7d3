import { describe, expect, it } from "vitest";
import { Cache } from "../../src/core/cache.ts";
import type { PlanSchema, WriteEvent } from "../../src/core/deps/planner.ts";
import { memoryStore } from "../../src/stores/memory.ts";

/**
 * The write fence trims its op list by op count, not by record. A record with
 * more than fenceLogSize/2 ops (one statement touching many rows, a cascade) is cut in half:
 * its first ops are dropped, the rest kept under the record's seq. `oldest` is then that seq,
 * so a load that began just before the record is NOT judged conservatively, and is checked
 * only against the ops that survived. A load of a row the dropped ops changed is stored.
 *
 * One node, in-process log, default fenceLogSize (1024): 500 single-row writes, then one
 * write of 600 rows; the first of them is the row being loaded.
 */

const schema: PlanSchema = { primaryKey: () => "id", joinColumns: () => [] };
const quiet = { warn: () => {} };
const update = (id: number, from: string, to: string): WriteEvent => ({
  table: "users",
  op: "update",
  old: { id, name: from },
  new: { id, name: to },
});

describe("write fence trimming", () => {
  it("a load that overlapped a many-row write of its row is not stored", async () => {
    const cache = new Cache({ tiers: [memoryStore()], schema, logger: quiet });
    // Fill the fence with 500 ops of other rows.
    for (let i = 0; i < 500; i++) await cache.applyWrite(update(10_000 + i, "a", "b"));

    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    // A read of user 1: it reads the old row, then is slow on the way back.
    const loading = cache.resolve("user:1", async () => {
      const body = JSON.stringify({ id: 1, name: "old" });
      await gate;
      return { body, tags: ["users#1"] };
    });
    await new Promise((r) => setTimeout(r, 5));

    // One statement updating 600 rows, user 1 first (ops 501..1100 > 1024: 588 trimmed).
    const events = [update(1, "old", "new")];
    for (let i = 2; i <= 600; i++) events.push(update(i, "old", "new"));
    await cache.applyWrite(events);

    release();
    const result = await loading;
    // The load began before the write and read user 1's old row: the fence must refuse it.
    expect(result.stored).toBe(false);
    // After the write was acknowledged, a read must not see the old row.
    const hit = cache.peek("user:1");
    expect(hit && new TextDecoder().decode(hit.body)).toBeUndefined();
  });
});
