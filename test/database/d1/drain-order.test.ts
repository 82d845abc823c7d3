import { describe, expect, it } from "vitest";
import { CaptureDrain, captureDrain } from "../../../src/adapter/cloudflare/capture-drain.ts";
import { captureSchemaVariable } from "../../../src/adapter/cloudflare/variables.ts";
import type { CapturedChange, CaptureFeed } from "../../../src/core/capture-feed.ts";
import type { ChangeRecord } from "../../../src/core/change-log/contract.ts";
import type { WriteEvent } from "../../../src/core/deps/planner.ts";
import type { DurableObjectStateLike } from "../../../src/durable/rpc.ts";
import { ChangeLogHost } from "../../../src/log/durable-host.ts";

/**
 * The D1 drain marks a batch ordered only when no write appended since its last complete
 * read of the change table. Found in review, when it counted turn grants instead: a data
 * API write whose turn had lapsed (its D1 batch outlasting the turn) or that the object
 * forgot (a restart) was still in flight, so a change captured before it committed was
 * appended after its record, marked ordered; with a row changed and changed back, the patch
 * brought back the value in between.
 */

const storage = () => {
  const map = new Map<string, unknown>();
  const state: DurableObjectStateLike = {
    storage: {
      get: async <T>(k: string) => map.get(k) as T | undefined,
      put: async (entries: Record<string, unknown>) => {
        for (const [k, v] of Object.entries(entries)) map.set(k, structuredClone(v));
      },
      delete: async (keys: string[]) => {
        for (const k of keys) map.delete(k);
        return keys.length;
      },
    },
    blockConcurrencyWhile: (f) => f(),
  };
  return { state, map };
};

/** D1's change table as the drain reads it: captured rows, and a data API write's marked ones. */
function table() {
  const rows: { seq: number; event: WriteEvent; api?: string }[] = [];
  let next = 1;
  const feed: CaptureFeed = {
    installed: async () => true,
    lead: async () => true,
    async read(limit) {
      return rows
        .filter((r) => r.api === undefined)
        .slice(0, limit)
        .map((r): CapturedChange => ({ seq: r.seq, event: r.event, at: Date.now() }));
    },
    pending: async () => rows.length > 0,
    async consume(changes) {
      for (const c of changes)
        rows.splice(
          rows.findIndex((r) => r.seq === c.seq),
          1,
        );
    },
    wait: async () => {},
    close: async () => {},
  };
  return {
    feed,
    commit: (event: WriteEvent, api?: string) => rows.push({ seq: next++, event, api }),
    forget: (api: string) => rows.splice(0, rows.length, ...rows.filter((r) => r.api !== api)),
  };
}

const active = { id: 7, status: "active" };
const archived = { id: 7, status: "archived" };
/** C, around edgecache (another Worker, wrangler): archives row 7. */
const C: WriteEvent = { table: "users", op: "update", old: active, new: archived };
/** W, the data API: restores it (commits after C). */
const W: WriteEvent = { table: "users", op: "update", old: archived, new: active };

async function records(map: Map<string, unknown>): Promise<ChangeRecord[]> {
  return [...map.entries()]
    .filter(([k]) => /^r\d+$/.test(k))
    .map(([, v]) => v as ChangeRecord)
    .sort((a, b) => a.seq - b.seq);
}

describe("D1 capture drain: a data API write in flight without a live turn", () => {
  for (const how of ["its turn lapsed", "the object restarted"] as const) {
    it(`a change committed before the write and appended after it is not ordered (${how})`, async () => {
      const { state, map } = storage();
      let host = new ChangeLogHost(state);
      const d1 = table();
      const alarms = { setAlarm: async () => {} };
      let drain = new CaptureDrain(alarms, d1.feed, host, 1000);
      await drain.drain(); // a complete read: the mark is set
      await drain.drain();
      // W takes its turn before its D1 batch ...
      const taken = await host.handle("turn", { token: "w", ms: 40 });
      expect(((await taken.json()) as { taken: boolean }).taken).toBe(true);
      if (how === "its turn lapsed") {
        await new Promise((r) => setTimeout(r, 60)); // ... which is slow
      } else {
        host = new ChangeLogHost(state); // ... and the object restarts meanwhile
        drain = new CaptureDrain(alarms, d1.feed, host, 1000);
      }
      await drain.drain(); // the alarm: a complete read of an empty table
      d1.commit(C); // around edgecache
      d1.commit(W, "w-mark"); // W's batch commits after C (W's rows marked, skipped)
      await host.handle("append", {
        token: "w",
        ops: [{ event: W }],
        tables: ["users"],
        node: "i1",
      });
      d1.forget("w-mark");
      await drain.drain(); // afterWrite's drain: reads C
      const log = await records(map);
      // C committed before W but is appended after W's record: if it were ordered, a read
      // between the two records (row 7 as D1 has it: active) would be patched to C's value.
      expect(log.at(-1)!.ordered).toBe(false);
    });
  }
});

describe("D1 capture drain: a data API write holding its turn", () => {
  it("a change committed after the write, drained before its append, is not ordered (the write's record comes after it)", async () => {
    const { state, map } = storage();
    const host = new ChangeLogHost(state);
    const d1 = table();
    const drain = new CaptureDrain({ setAlarm: async () => {} }, d1.feed, host, 1000);
    await drain.drain();
    const taken = await host.handle("turn", { token: "w", ms: 2000 });
    expect(((await taken.json()) as { taken: boolean }).taken).toBe(true);
    d1.commit(W, "w-mark"); // W's batch commits (its rows marked, skipped) ...
    d1.commit(C); // ... C after it, around edgecache
    await drain.drain(); // the alarm reads C before W appends
    await host.handle("append", { token: "w", ops: [{ event: W }], tables: ["users"], node: "i1" });
    d1.forget("w-mark");
    const log = await records(map);
    // In order, W's patch (row 7 active) would come after C's (archived): D1 holds archived.
    // W's record is not ordered either: a record changed its table since its turn was taken
    // (as on Redis; see changedTables), so it invalidates rather than patches.
    expect(log.map((r) => [r.ops.length, r.ordered])).toEqual([
      [1, false],
      [1, false],
    ]);
  });
});

describe("D1 capture drain: the object restarts (evicted after idling, or re-created)", () => {
  const restart = (state: DurableObjectStateLike, d1: ReturnType<typeof table>) => {
    const host = new ChangeLogHost(state);
    return { host, drain: new CaptureDrain({ setAlarm: async () => {} }, d1.feed, host, 1000) };
  };

  it("a change waiting at its start is ordered (it patches) when no write appended since the last complete read", async () => {
    const { state, map } = storage();
    const d1 = table();
    let { host, drain } = restart(state, d1);
    await host.handle("append", { ops: [{ event: W }], tables: ["users"], node: "i1" });
    await drain.drain(); // a complete read after the write: the mark is set
    ({ host, drain } = restart(state, d1)); // the memory is gone
    d1.commit(C); // around edgecache, while no object runs
    await drain.drain(); // the new object's first drain (an isolate's first sync)
    expect((await records(map)).at(-1)).toMatchObject({ ops: [{ event: C }], ordered: true });
  });

  it("not when a write appended after that read, before the restart", async () => {
    const { state, map } = storage();
    const d1 = table();
    let { host, drain } = restart(state, d1);
    await drain.drain();
    d1.commit(C); // commits first, not drained before ...
    await host.handle("append", { ops: [{ event: W }], tables: ["users"], node: "i1" }); // ... W's record
    ({ host, drain } = restart(state, d1));
    await drain.drain();
    expect((await records(map)).at(-1)).toMatchObject({ ops: [{ event: C }], ordered: false });
  });

  it("not when its rows were appended once already: the object stopped before deleting them", async () => {
    for (const how of ["restarted", "stayed"] as const) {
      const { state, map } = storage();
      const d1 = table();
      let { drain } = restart(state, d1);
      await drain.drain();
      d1.commit(C);
      const consume = d1.feed.consume;
      d1.feed.consume = () => Promise.reject(new Error("D1 is out of reach"));
      await drain.drain(); // appended, not deleted
      d1.feed.consume = consume;
      if (how === "restarted") ({ drain } = restart(state, d1));
      await drain.drain(); // C again: a second copy in order would apply it twice
      const log = await records(map);
      expect(
        log.map((r) => r.ordered),
        how,
      ).toEqual([true, false]);
    }
  });
});

describe("D1 capture drain: a drain that fails", () => {
  it("says so in its stats until one succeeds, so that a write waiting for it is not told its rows are in", async () => {
    const { state } = storage();
    const host = new ChangeLogHost(state);
    const d1 = table();
    let down = false;
    const feed: CaptureFeed = {
      ...d1.feed,
      read: (limit, urgent) =>
        down ? Promise.reject(new Error("D1 is out of reach")) : d1.feed.read(limit, urgent),
    };
    const warnings: string[] = [];
    const drain = new CaptureDrain({ setAlarm: async () => {} }, feed, host, 1000, (m) =>
      warnings.push(m),
    );
    d1.commit(C);
    await drain.drain();
    expect(drain.stats()).toMatchObject({ applied: 1 });
    expect(drain.stats().failed).toBeUndefined();
    down = true;
    d1.commit(W);
    await drain.drain();
    expect(drain.stats()).toMatchObject({ applied: 1, failed: true });
    expect(warnings).toHaveLength(1);
    down = false;
    await drain.drain();
    expect(drain.stats()).toMatchObject({ applied: 2 });
    expect(drain.stats().failed).toBeUndefined();
  });
});

describe("EDGECACHE_CAPTURE_MS and EDGECACHE_CAPTURE_SCHEMA", () => {
  it("a bad value is refused naming the variable, where it turned capture off without a word", () => {
    const { state } = storage();
    const host = new ChangeLogHost(state);
    const alarms = { setAlarm: async () => {} };
    const env = (ms: string) =>
      ({ DB: { prepare: () => ({}) }, EDGECACHE_CAPTURE_MS: ms }) as never;
    for (const bad of ["abc", "-1", "1s", "2.5"]) {
      expect(() => captureDrain(alarms, env(bad), host)).toThrow(
        new RegExp(`variable EDGECACHE_CAPTURE_MS: expected a whole number of ms.*got "${bad}"`),
      );
    }
    expect(captureDrain(alarms, env("0"), host)).toBeUndefined(); // documented: off
    expect(captureDrain(alarms, env("250"), host)?.intervalMs).toBe(250);
    expect(captureDrain(alarms, env(""), host)?.intervalMs).toBe(1000);
    expect(() => captureSchemaVariable({ EDGECACHE_CAPTURE_SCHEMA: "app; drop" })).toThrow(
      /variable EDGECACHE_CAPTURE_SCHEMA: expected a schema name/,
    );
    expect(captureSchemaVariable({ EDGECACHE_CAPTURE_SCHEMA: "app" })).toBe("app");
    expect(captureSchemaVariable({})).toBe("public");
  });
});
