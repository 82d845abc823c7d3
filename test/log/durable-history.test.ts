import { describe, expect, it } from "vitest";
import { createCache } from "../../src/core/cache/index.ts";
import type { ChangeRecord, LogHistory } from "../../src/core/change-log/contract.ts";
import { ChangeBuckets } from "../../src/core/fence/change-buckets.ts";
import type { DurableObjectNamespaceLike } from "../../src/durable/rpc.ts";
import {
  ChangeLogHost,
  MAX_HISTORY_CHARS,
  type SyncReply,
  since,
} from "../../src/log/durable-host.ts";
import { DurableChangeLog, HISTORY_EVERY } from "../../src/log/durable-object.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { memoryState } from "./memory-state.ts";

// Where a new isolate's history comes from: the summary an isolate uploads to the log's
// object on a call it makes anyway, kept in the object's storage, and handed with the
// records after it to an isolate that starts. The protocol alone, in one process (the
// object's storage in memory); test/adapter/cloudflare/history-in-workerd.test.ts runs it in workerd.

/** The log's object, and isolates that call it through JSON as through a binding. */
async function object() {
  const state = memoryState();
  let host = new ChangeLogHost(state);
  await state.ready;
  const calls: { op: string; body: Record<string, unknown> }[] = [];
  const namespace: DurableObjectNamespaceLike = {
    idFromName: (name) => name,
    get: () => ({
      async fetch(request: Request) {
        const op = new URL(request.url).pathname.slice(1);
        const body = (await request.json()) as Record<string, unknown>;
        calls.push({ op, body });
        return host.handle(op, body);
      },
    }),
  };
  const isolate = () => {
    const log = new DurableChangeLog({ namespace });
    return { log, cache: createCache({ tiers: [memoryStore()], log }) };
  };
  /** The object evicted and started again on its storage. */
  const restart = async () => {
    host = new ChangeLogHost(state);
    await state.ready;
  };
  const ask = async (op: string, body: Record<string, unknown>) =>
    (await (await host.handle(op, body)).json()) as SyncReply;
  return { calls, isolate, restart, ask };
}

const uploads = (calls: { body: Record<string, unknown> }[]) =>
  calls.flatMap(({ body }) => (body.history ? [body.history as LogHistory] : []));

describe("the log's history, kept by its Durable Object", () => {
  it("is uploaded on the appends an isolate makes anyway: at once while none is kept, then once per HISTORY_EVERY records", async () => {
    const { calls, isolate } = await object();
    const { log, cache } = isolate();
    await log.sync();
    const writes = 3 * HISTORY_EVERY + 10;
    for (let i = 0; i < writes; i++) await cache.set(`k${i}`, i);
    // No call of its own: one sync, then one append per set.
    expect(calls.map((c) => c.op)).toEqual(["sync", ...Array(writes).fill("append")]);
    expect(uploads(calls).map((h) => h.from)).toEqual([
      1,
      1 + HISTORY_EVERY,
      1 + 2 * HISTORY_EVERY,
      1 + 3 * HISTORY_EVERY,
    ]);
    // Folded: no records, no rows.
    expect(uploads(calls).every((h) => h.records.length === 0)).toBe(true);
  });

  it("reaches a new isolate with the records after it, also after the object restarted", async () => {
    const { isolate, restart } = await object();
    const first = isolate();
    await first.log.sync();
    const writes = HISTORY_EVERY + 5;
    for (let i = 0; i < writes; i++) await first.cache.set(`k${i}`, i);
    const started = async () => {
      const next = isolate();
      await next.log.sync();
      // What its fence took: the kept summary, and every record after it up to the head.
      return next.cache.history();
    };
    const history = await started();
    expect(history).toMatchObject({ floor: 0, from: 1 + HISTORY_EVERY });
    expect(history.records.map((r) => r.seq)).toEqual([writes - 3, writes - 2, writes - 1, writes]);
    await restart();
    expect(await started()).toEqual(history);
  });

  it("keeps no summary of another log, beyond the head, not a summary, or too long", async () => {
    const { ask } = await object();
    const { log, head } = await ask("append", { ops: [{ keys: ["a"] }], tables: [""] });
    const summary = new ChangeBuckets().save();
    const upload = (h: Partial<LogHistory>) =>
      ask("sync", { history: { log, floor: 0, from: head, summary, records: [], ...h } });
    await upload({ log: "another" });
    await upload({ from: head + 1 });
    await upload({ summary: { size: 0 } });
    await upload({ records: [{ seq: head, ops: [], ordered: true }] });
    const long = "x".repeat(MAX_HISTORY_CHARS / 200);
    const named = Array.from({ length: 256 }, () => ({ prefix: long, seq: 1 }));
    await upload({ summary: { ...summary, named } });
    const start = await ask("sync", { log: "", applied: 0 });
    expect(start.history).toBeUndefined();
    expect(start.historyFrom).toBeUndefined();
    // The same upload, of this log and within the bounds, is kept.
    await upload({});
    expect((await ask("sync", { log: "", applied: 0 })).history).toMatchObject({ from: head });
  });

  it("is not handed out once the records after it are no longer held: the isolate judges by table", () => {
    const records = new Map<number, ChangeRecord>();
    for (let seq = 500; seq <= 1500; seq++) records.set(seq, { seq, ops: [], ordered: true });
    const held = { log: "L", head: 1500, first: 500, lastChanges: { users: 1400 } };
    const kept = { floor: 0, from: 499, summary: new ChangeBuckets().save() };
    const fresh = { log: "", applied: 0 };
    expect(since(held, records, fresh, kept).history?.records).toHaveLength(1001);
    // One record short: a history with a gap would judge the entries it misses as untouched.
    const gap = since(held, records, fresh, { ...kept, from: 498 });
    expect(gap.history).toBeUndefined();
    expect(gap.lastChanges).toEqual([["users", 1400]]);
  });
});
