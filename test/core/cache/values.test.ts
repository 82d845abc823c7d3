import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { createCache } from "../../../src/core/cache/index.ts";
import { localChangeLog } from "../../../src/core/change-log/in-process.ts";
import { EdgecacheError } from "../../../src/core/errors.ts";
import type { Store } from "../../../src/core/store.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { sqliteStore } from "../../../src/stores/sqlite.ts";

const dir = mkdtempSync(join(tmpdir(), "edgecache-values-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Memory over SQLite; `lower()` reads the SQLite tier alone, as after an eviction. */
function tiered() {
  const path = join(dir, `${Math.random().toString(36).slice(2)}.db`);
  const sqlite = sqliteStore({ path });
  const cache = createCache({ tiers: [memoryStore(), sqlite] });
  const lower = createCache({ tiers: [sqlite as Store], log: cache.log });
  return { cache, lower };
}

describe("library values", () => {
  it("round-trip Dates, BigInts, undefined, Maps, Sets, NaN and -0 through memory and SQLite", async () => {
    const { cache, lower } = tiered();
    const value = {
      at: new Date("2024-05-06T07:08:09.010Z"),
      big: 2n ** 70n,
      missing: undefined,
      byId: new Map([[1, { name: "Lane" }]]),
      set: new Set(["a", "b"]),
      nan: Number.NaN,
      negZero: -0,
      inf: Number.POSITIVE_INFINITY,
    };
    await cache.set("v", value);
    const fromMemory = await cache.get<typeof value>("v");
    const fromSqlite = await lower.get<typeof value>("v");
    for (const got of [fromMemory, fromSqlite]) {
      expect(got).toEqual(value);
      expect(got!.at).toBeInstanceOf(Date);
      expect(typeof got!.big).toBe("bigint");
      expect(Object.hasOwn(got!, "missing")).toBe(true);
      expect(got!.byId).toBeInstanceOf(Map);
      expect(Object.is(got!.negZero, -0)).toBe(true);
    }
  });

  it("any JSON-like value, with Dates and BigInts inside, reads back equal from a lower tier", async () => {
    const { cache, lower } = tiered();
    const arb = fc.anything({
      withDate: true,
      withBigInt: true,
      withMap: true,
      withSet: true,
      withNullPrototype: false,
      withBoxedValues: false,
      withTypedArray: false,
      withSparseArray: false,
    });
    let n = 0;
    await fc.assert(
      fc.asyncProperty(arb, async (value) => {
        const key = `k${n++}`;
        // An own "__proto__" key cannot round-trip (devalue refuses it): E_BAD_VALUE, checked below.
        if (hasProtoKey(value)) {
          await expect(cache.set(key, value)).rejects.toMatchObject({ code: "E_BAD_VALUE" });
          return;
        }
        await cache.set(key, value);
        expect(await lower.get(key)).toEqual(value);
        expect(await cache.get(key)).toEqual(value);
      }),
      { numRuns: 100 },
    );
  });

  it("refuses a class instance or a function with E_BAD_VALUE, storing nothing", async () => {
    const cache = createCache({ tiers: [memoryStore()] });
    class Point {
      constructor(readonly x: number) {}
    }
    await expect(cache.set("p", new Point(1))).rejects.toMatchObject({
      code: "E_BAD_VALUE",
      message: expect.stringContaining('"p" cannot be cached'),
    });
    await expect(cache.getOrSet("f", () => ({ f: () => 1 }))).rejects.toBeInstanceOf(
      EdgecacheError,
    );
    expect(await cache.get("p")).toBeUndefined();
    expect(await cache.get("f")).toBeUndefined();
  });

  it("hands every reader the same frozen value, so no caller can change what others read", async () => {
    const cache = createCache({ tiers: [memoryStore()] });
    const original = { name: "Lane", roles: ["reader"] };
    const got = await cache.getOrSet("u", () => original);
    expect(Object.isFrozen(original)).toBe(false); // the loader's own object is left alone
    expect(Object.isFrozen(got)).toBe(true);
    expect(Object.isFrozen(got.roles)).toBe(true);
    expect(() => got.roles.push("admin")).toThrow(TypeError);
    expect(await cache.get("u")).toBe(got);
  });

  it("decodes a value holding a Map anew per read: a reader's change stays its own", async () => {
    const cache = createCache({ tiers: [memoryStore()] });
    await cache.set("m", { byId: new Map([[1, "a"]]) });
    const first = await cache.get<{ byId: Map<number, string> }>("m");
    first!.byId.set(2, "b");
    const second = await cache.get<{ byId: Map<number, string> }>("m");
    expect([...second!.byId]).toEqual([[1, "a"]]);
  });

  it("still reads entries written as plain JSON", async () => {
    const cache = createCache({ tiers: [memoryStore()] });
    await cache.setEntry("old", {
      body: '{"a":1}',
      headers: { "content-type": "application/json" },
    });
    expect(await cache.get("old")).toEqual({ a: 1 });
  });

  it("validates per-call options in expected-X-got-Y form", async () => {
    const cache = createCache({ tiers: [memoryStore()] });
    await expect(cache.set("k", 1, { ttl: -5 })).rejects.toThrow(
      'option "ttl": expected a positive number of ms, got -5',
    );
    await expect(
      cache.getOrSet("k", () => 1, { staleWhileRevalidate: Number.NaN }),
    ).rejects.toThrow('option "staleWhileRevalidate": expected a number of ms >= 0, got NaN');
    await expect(cache.set("k", 1, { tags: "users" as unknown as string[] })).rejects.toThrow(
      'option "tags": expected an array of strings, got "users"',
    );
    expect(() => createCache({ tiers: [memoryStore()], ttl: -1 })).toThrow(
      'option "ttl": expected a positive number of ms, got -1',
    );
  });
});

describe("close", () => {
  it("waits for background work, then closes the log and the tiers that hold resources", async () => {
    const sqlite = sqliteStore({ path: join(dir, "close.db") });
    const closed: string[] = [];
    const log = localChangeLog();
    const cache = createCache({
      tiers: [memoryStore(), sqlite],
      log: { ...log, close: async () => void closed.push("log") },
    });
    await cache.set("k", 1);
    await cache.close();
    expect(closed).toEqual(["log"]);
    // The SQLite handle is released: the store can no longer be read.
    await expect(sqlite.get("k")).rejects.toThrow();
  });
});

/** Whether a value holds an object with an own "__proto__" key, at any depth. */
function hasProtoKey(value: unknown, seen = new Set<unknown>()): boolean {
  if (typeof value !== "object" || value === null || seen.has(value)) return false;
  seen.add(value);
  if (Object.hasOwn(value, "__proto__")) return true;
  const children =
    value instanceof Map
      ? [...value.keys(), ...value.values()]
      : value instanceof Set
        ? [...value]
        : Object.values(value);
  return children.some((child) => hasProtoKey(child, seen));
}
