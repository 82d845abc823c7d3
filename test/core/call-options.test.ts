import { describe, expect, it } from "vitest";
import { createCache } from "../../src/core/cache/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";

// A call's options are checked before any tier is asked, so a bad one fails the same way
// whether the key is a memory hit, a lower tier's hit or a miss: a typo that only shows on
// a miss would pass every test of a warm cache and throw in production's first cold read.

/** A cache with `k` in memory (and `lower` only in its second tier). */
async function warmCache() {
  const lower = memoryStore();
  const cache = createCache({ tiers: [memoryStore(), { ...lower, name: "disk" }] });
  await cache.set("k", 1);
  return cache;
}

const BAD: [
  string,
  (c: Awaited<ReturnType<typeof warmCache>>, key: string) => Promise<unknown>,
  RegExp,
][] = [
  [
    "get's tiers",
    (c, key) => c.get(key, { tiers: ["bogus"] }),
    /"tiers": expected the first tiers of the cache, in order \(memory, disk\), got/,
  ],
  [
    "get's tiers (not an array)",
    (c, key) => c.get(key, { tiers: "memory" as never }),
    /"tiers": expected/,
  ],
  [
    "get's options (not an object)",
    (c, key) => c.get(key, 5 as never),
    /"options": expected an object, got 5/,
  ],
  [
    "getOrSet's tiers",
    (c, key) => c.getOrSet(key, () => 2, { tiers: ["disk"] }),
    /"tiers": expected/,
  ],
  [
    "getOrSet's ttl",
    (c, key) => c.getOrSet(key, () => 2, { ttl: -1 }),
    /"ttl": expected a positive number of ms, got -1/,
  ],
  [
    "getOrSet's ttl (a string)",
    (c, key) => c.getOrSet(key, () => 2, { ttl: "60" as never }),
    /"ttl": expected a positive number of ms, got "60"/,
  ],
  [
    "getOrSet's staleWhileRevalidate",
    (c, key) => c.getOrSet(key, () => 2, { staleWhileRevalidate: "1" as never }),
    /"staleWhileRevalidate": expected/,
  ],
  [
    "getOrSet's tags",
    (c, key) => c.getOrSet(key, () => 2, { tags: "users" as never }),
    /"tags": expected an array of strings/,
  ],
  [
    "getOrSet's load",
    (c, key) => c.getOrSet(key, 2 as never),
    /"load": expected a function, got 2/,
  ],
  ["getMany's tiers", (c, key) => c.getMany([key], { tiers: ["bogus"] }), /"tiers": expected/],
  ["set's ttl (a string)", (c, key) => c.set(key, 3, { ttl: "60" as never }), /"ttl": expected/],
  ["get's key", (c) => c.get(1 as never), /"key": expected a string, got 1/],
  [
    "getOrSet's key",
    (c) => c.getOrSet(undefined as never, () => 2),
    /"key": expected a string, got undefined/,
  ],
  ["set's key", (c) => c.set({} as never, 3), /"key": expected a string/],
  ["delete's key", (c) => c.delete(7 as never), /"key": expected a string, got 7/],
  [
    "deleteMany's keys",
    (c) => c.deleteMany(["k", 7] as never),
    /"keys": expected an array of strings/,
  ],
  ["getMany's keys", (c) => c.getMany("k" as never), /"keys": expected an array of strings/],
  [
    "get's misspelt option",
    (c, key) => c.get(key, { teirs: ["memory"] } as never),
    /unknown option "teirs" \(did you mean "tiers"\?\)/,
  ],
  ["get's write-only option", (c, key) => c.get(key, { ttl: 5 } as never), /unknown option "ttl"/],
  ["getMany's misspelt option", (c, key) => c.getMany([key], { tier: [] } as never), /"tier"/],
  [
    "getOrSet's misspelt option",
    (c, key) => c.getOrSet(key, () => 2, { tll: 5 } as never),
    /unknown option "tll" \(did you mean "ttl"\?\)/,
  ],
  ["set's misspelt option", (c, key) => c.set(key, 3, { tag: ["a"] } as never), /"tag"/],
  [
    "setMany's misspelt field",
    (c, key) => c.setMany([{ key, value: 3, tls: 5 } as never]),
    /unknown option "tls"/,
  ],
  [
    "delete's options (it takes none: every tier drops the key)",
    (c, key) => (c.delete as (...a: unknown[]) => Promise<boolean>)(key, { tiers: ["bogus"] }),
    /"options": expected none/,
  ],
  [
    "delete's options (a number)",
    (c, key) => (c.delete as (...a: unknown[]) => Promise<boolean>)(key, 5),
    /"options": expected none.*got 5/,
  ],
  [
    "deleteMany's options",
    (c, key) =>
      (c.deleteMany as (...a: unknown[]) => Promise<number>)([key], { tiers: ["memory"] }),
    /"options": expected none/,
  ],
];

describe("a call's options are checked before any tier is asked", () => {
  it.each(BAD)(
    "%s: refused alike on a memory hit, a lower tier's hit and a miss",
    async (_, call, message) => {
      const cache = await warmCache();
      for (const key of ["k", "missing"]) {
        await expect(call(cache, key)).rejects.toMatchObject({ code: "E_BAD_OPTION" });
        await expect(call(cache, key)).rejects.toThrow(message);
      }
      // Nothing was asked of a tier, so nothing was counted.
      expect(cache.stats().hits + cache.stats().misses).toBe(0);
      expect(await cache.get("k")).toBe(1);
      await cache.close();
    },
  );

  it("a good call still answers from memory", async () => {
    const cache = await warmCache();
    expect(await cache.get("k", { tiers: ["memory"] })).toBe(1);
    expect(await cache.getOrSet("k", () => 2, { tiers: ["memory", "disk"], ttl: 1000 })).toBe(1);
    expect(await cache.getMany(["k", "x"], { tiers: ["memory"] })).toEqual([1, undefined]);
    await cache.close();
  });
});

describe("a namespace's calls refuse options they would ignore", () => {
  it("get, getMany, delete and deleteMany take none; set's misspelt option is named", async () => {
    const cache = await warmCache();
    const ns = cache.namespace("n") as unknown as Record<
      string,
      (...a: unknown[]) => Promise<unknown>
    >;
    await expect(ns.get!("k", { teirs: ["memory"] })).rejects.toThrow(/"options": expected none/);
    await expect(ns.getMany!(["k"], { tiers: ["memory"] })).rejects.toThrow(/expected none/);
    await expect(ns.delete!("k", 5)).rejects.toThrow(/expected none.*got 5/);
    await expect(ns.deleteMany!(["k"], {})).rejects.toThrow(/expected none/);
    await expect(ns.set!("k", 1, { tll: 5 })).rejects.toThrow(/unknown option "tll"/);
    await cache.close();
  });
});
