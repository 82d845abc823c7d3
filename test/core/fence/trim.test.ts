import { describe, expect, it } from "vitest";
import { Cache } from "../../../src/core/cache/index.ts";
import { localChangeLog } from "../../../src/core/change-log/in-process.ts";
import type { PlanSchema, WriteEvent } from "../../../src/core/deps/planner.ts";
import { memoryStore } from "../../../src/stores/memory.ts";

/**
 * The write fence trims its op list by op count, not by record. A record with
 * more than fenceLogSize/2 ops (one statement touching many rows, a cascade) is cut in half:
 * its first ops are dropped, the rest kept under the record's seq. `oldest` is then that seq,
 * so a load that began just before the record is NOT judged conservatively, and is checked
 * only against the ops that survived. A load of a row the dropped ops changed is stored.
 *
 * One node, in-process log, fenceLogSize 1024: 500 single-row writes, then one
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
    const cache = new Cache({ tiers: [memoryStore()], schema, logger: quiet, fenceLogSize: 1024 });
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

describe("write fence size", () => {
  it("an entry another node stored 3,000 writes ago, none of them its own row, is still served", async () => {
    const log = localChangeLog();
    const shared = memoryStore();
    const a = new Cache({ tiers: [memoryStore(), shared], schema, logger: quiet, log });
    const b = new Cache({ tiers: [memoryStore(), shared], schema, logger: quiet, log });
    const loaded = await a.resolve("user:1", async () => ({
      body: JSON.stringify({ id: 1, name: "one" }),
      tags: ["users#1"],
    }));
    expect(loaded.stored).toBe(true);
    // Writes to other rows of the same table: beyond 1,024 ops a fence of that size could
    // only judge the entry by its table's last change and refuse it.
    for (let i = 0; i < 3000; i++) await a.applyWrite(update(10_000 + i, "a", "b"));
    const read = await b.resolve("user:1", async () => {
      throw new Error("the shared entry should have been served");
    });
    expect(read.status).toBe("hit");
    // And a write of its own row, further back than any trimmed op, still refuses it.
    await a.applyWrite(update(1, "one", "uno"));
    const c = new Cache({ tiers: [memoryStore(), shared], schema, logger: quiet, log });
    const after = await c.resolve("user:1", async () => ({
      body: JSON.stringify({ id: 1, name: "uno" }),
      tags: ["users#1"],
    }));
    expect(after.status).not.toBe("hit");
  });
});
