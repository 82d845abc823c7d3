import { describe, expect, it } from "vitest";
import { ChangeLogObject } from "../../../src/adapter/cloudflare/change-log-object.ts";

/**
 * `ChangeLogObject` is one class for the jobs of the CHANGE_LOG namespace: each object does the
 * one its name gives it, made on its first call. Objects deployed before the split hold data
 * under the jobs' keys, which must stay readable; and an object that is not the log must not
 * start one. The protocol of each job is tested on its own (test/log, and hot-keys.test.ts,
 * rules-object.test.ts and the *-in-workerd tests beside this file).
 */

/** A Durable Object's storage in memory, whose blocking load runs a turn later, as workerd's may. */
function objectState(stored: Record<string, unknown> = {}) {
  const map = new Map<string, unknown>(Object.entries(stored));
  return {
    map,
    state: {
      storage: {
        get: async <T>(key: string) => map.get(key) as T | undefined,
        put: async (entries: Record<string, unknown>) => {
          for (const [k, v] of Object.entries(entries)) map.set(k, structuredClone(v));
        },
        delete: async (keys: string[]) => keys.filter((k) => map.delete(k)).length,
        list: async <T>({ prefix }: { prefix: string }) =>
          new Map([...map].filter(([k]) => k.startsWith(prefix))) as Map<string, T>,
      },
      blockConcurrencyWhile: async <T>(callback: () => Promise<T>) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return callback();
      },
    },
  };
}

function call(object: ChangeLogObject, op: string, body: unknown) {
  return object.fetch(
    new Request(`https://t/${op}`, { method: "POST", body: JSON.stringify(body) }),
  );
}

const event = { table: "users", op: "update", old: { id: 1 }, new: { id: 1 } };

describe("ChangeLogObject", () => {
  it("reads the log an earlier version stored (state and r<seq>) before it answers a sync", async () => {
    const { state } = objectState({
      state: { log: "L1", head: 2, first: 1, lastChanges: { users: 2 }, longestLease: 0 },
      r1: { seq: 1, ops: [{ event }], ordered: true },
      r2: { seq: 2, ops: [{ event }], ordered: true },
    });
    const object = new ChangeLogObject(state);
    const res = await call(object, "sync", { node: "n", log: "L1", applied: 0, leaseMs: 0 });
    const reply = (await res.json()) as { log: string; head: number; records: { seq: number }[] };
    expect(reply.log).toBe("L1");
    expect(reply.head).toBe(2);
    expect(reply.records.map((r) => r.seq)).toEqual([1, 2]);
  });

  it("appends after what is stored, under the same keys", async () => {
    const { state, map } = objectState({
      state: { log: "L1", head: 1, first: 1, lastChanges: { users: 1 }, longestLease: 0 },
      r1: { seq: 1, ops: [{ event }], ordered: true },
    });
    const object = new ChangeLogObject(state);
    const res = await call(object, "append", {
      node: "n",
      log: "L1",
      applied: 1,
      leaseMs: 0,
      ops: [{ event }],
      tables: ["users"],
    });
    expect(((await res.json()) as { seq: number }).seq).toBe(2);
    expect(map.get("r2")).toMatchObject({ seq: 2 });
    expect(map.get("state")).toMatchObject({ log: "L1", head: 2 });
  });

  it("the hot-keys and rules objects start no log of their own", async () => {
    const hot = objectState();
    const hotObject = new ChangeLogObject(hot.state);
    expect((await call(hotObject, "hot/report", { counts: [["/v1/a", 3]] })).ok).toBe(true);
    const top = (await (await call(hotObject, "hot/top", { n: 5 })).json()) as { keys: string[] };
    expect(top.keys).toEqual(["/v1/a"]);
    expect(hot.map.size).toBe(0);

    const rules = objectState();
    const rulesObject = new ChangeLogObject(rules.state);
    const res = await call(rulesObject, "rules/sync", { changes: { counts: [], decisions: [] } });
    expect(await res.json()).toEqual({ rules: [] });
    expect(rules.map.has("state")).toBe(false);
  });

  it("answers an op no job has with 404", async () => {
    const object = new ChangeLogObject(objectState().state);
    expect((await call(object, "hot/nothing", {})).status).toBe(404);
    expect((await call(object, "nothing", {})).status).toBe(404);
  });
});
