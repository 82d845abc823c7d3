import { describe, expect, it } from "vitest";
import { newCounters } from "../../src/core/cache/counters.ts";
import { Loads, type LoadsDeps } from "../../src/core/cache/loads.ts";
import type { EntryInit } from "../../src/core/cache/types.ts";
import type { LogPosition } from "../../src/core/change-log/contract.ts";
import type { CacheEntry } from "../../src/core/entries/entry.ts";

// What a write patched is stored in one batch (the applier's storePatched): each entry as a
// load's would be, fenced before the batch is written and again after it, whatever the lease.

const since: LogPosition = { log: "l", seq: 1 };

function setup(conflicts: (key: string, call: number) => boolean, enabled = true) {
  const counters = newCounters();
  const batches: string[][] = [];
  const removed: string[][] = [];
  const calls = new Map<string, number>();
  const deps = {
    enabled,
    counters,
    log: { trusted: () => false, shared: false, quietSince: async () => false },
    fence: {
      position: since,
      conflicts: (_: LogPosition, key: string) => {
        const call = (calls.get(key) ?? 0) + 1;
        calls.set(key, call);
        return conflicts(key, call);
      },
    },
    entries: {
      build: async (init: EntryInit, position: LogPosition) =>
        ({ body: new Uint8Array(), tags: init.tags ?? [], position }) as unknown as CacheEntry,
      storeMany: async (list: readonly { key: string }[], end: number) => {
        expect(end).toBe(1); // memory alone
        batches.push(list.map((w) => w.key));
      },
      remove: async (keys: ReadonlySet<string>) => {
        removed.push([...keys]);
        return keys.size;
      },
    },
  } as unknown as LoadsDeps;
  return { loads: new Loads(deps), counters, batches, removed };
}

const patch = (key: string, init: EntryInit = { body: "x" }, exact = false) => ({
  key,
  init,
  exact,
});

describe("storePatched", () => {
  it("writes the batch once, leaving out what the fence refuses before, taking out what it refuses after", async () => {
    // b was invalidated before the batch; c by a write that landed while it was written.
    const { loads, counters, batches, removed } = setup(
      (key, call) => (key === "b" && call === 1) || (key === "c" && call === 2),
    );
    const stored = await loads.storePatched([patch("a"), patch("b"), patch("c")], since);
    expect(stored.map((s) => s.key)).toEqual(["a"]);
    expect(batches).toEqual([["a", "c"]]);
    expect(removed).toEqual([["c"]]);
    expect(counters.fenced).toBe(2);
  });

  it("stores with the lease lapsed, marks exact patches exact, and skips what may not be cached", async () => {
    const { loads, batches } = setup(() => false);
    const stored = await loads.storePatched(
      [patch("a", { body: "x" }, true), patch("b"), patch("c", { body: "x", cacheable: false })],
      since,
    );
    expect(stored.map((s) => [s.key, s.entry.exact === true])).toEqual([
      ["a", true],
      ["b", false],
    ]);
    expect(batches).toEqual([["a", "b"]]);
  });

  it("stores nothing when caching is off", async () => {
    const { loads, batches } = setup(() => false, false);
    expect(await loads.storePatched([patch("a")], since)).toEqual([]);
    expect(batches).toEqual([]);
  });
});
