import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createCache } from "../../src/core/cache.ts";
import { localChangeLog } from "../../src/core/change-log.ts";
import { keyPattern } from "../../src/core/pattern.ts";
import { memoryStore } from "../../src/stores/memory.ts";

/** A glob matcher written the slow, obvious way: the reference for the property test. */
function globMatches(pattern: string, key: string): boolean {
  if (pattern === "") return key === "";
  const [p, rest] = [pattern[0]!, pattern.slice(1)];
  if (p === "*") {
    for (let i = 0; i <= key.length; i++) if (globMatches(rest, key.slice(i))) return true;
    return false;
  }
  if (key === "") return false;
  return (p === "?" || p === key[0]) && globMatches(rest, key.slice(1));
}

describe("invalidation by pattern", () => {
  it("removes content:*:123:* and nothing else", async () => {
    const cache = createCache({ tiers: [memoryStore()] });
    const keys = [
      "content:page:123:en",
      "content:post:123:fr",
      "content:page:1234:en",
      "other:x:123:en",
    ];
    for (const k of keys) await cache.set(k, k);
    expect(await cache.invalidate({ patterns: ["content:*:123:*"] })).toBe(2);
    expect(await cache.getMany(keys)).toEqual([
      undefined,
      undefined,
      "content:page:1234:en",
      "other:x:123:en",
    ]);
  });

  it("matches exactly what a glob matches (property)", () => {
    const chars = fc.constantFrom("a", "b", ":", "*", "?", ".", "(");
    fc.assert(
      fc.property(
        fc.string({ unit: chars, maxLength: 8 }),
        fc.string({ unit: chars, maxLength: 8 }),
        (p, k) => {
          const key = k.replaceAll("*", "x").replaceAll("?", "y");
          expect(keyPattern(p).test(key)).toBe(globMatches(p, key));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("reaches entries another process left in a lower tier, and refuses them on read", async () => {
    const log = localChangeLog();
    const shared = memoryStore();
    const writer = createCache({ tiers: [memoryStore(), shared], log });
    await writer.set("content:page:7:en", "old");
    // A second node on the same log, whose index never saw the key.
    const reader = createCache({ tiers: [memoryStore(), shared], log });
    await reader.invalidate({ patterns: ["content:*:7:*"] });
    expect(await reader.get("content:page:7:en")).toBeUndefined();
    expect(await writer.get("content:page:7:en")).toBeUndefined();
  });
});

describe("events", () => {
  it("emit runs the named rule and invalidates what it returns", async () => {
    const cache = createCache({
      tiers: [memoryStore()],
      invalidateOn: {
        "content.update": (id: number) => ({ tags: [`content#${id}`], patterns: [`list:*:${id}`] }),
      },
    });
    await cache.set("page:1", "p1", { tags: ["content#1"] });
    await cache.set("page:2", "p2", { tags: ["content#2"] });
    await cache.set("list:home:1", "l1");
    expect(await cache.emit("content.update", 1)).toBe(2);
    expect(await cache.getMany(["page:1", "page:2", "list:home:1"])).toEqual([
      undefined,
      "p2",
      undefined,
    ]);
  });

  it("an event without a rule is an error, not a silent no-op", async () => {
    const cache = createCache({
      tiers: [memoryStore()],
      invalidateOn: { "content.update": () => ({}) },
    });
    await expect(cache.emit("content.updated", 1)).rejects.toThrow(
      'option "event": expected an event named in invalidateOn (content.update), got "content.updated"',
    );
    expect(() => createCache({ tiers: [memoryStore()], invalidateOn: { x: 1 as never } })).toThrow(
      'option "invalidateOn.x": expected a function, got 1',
    );
  });
});

describe("batches", () => {
  it("setMany, getMany and deleteMany", async () => {
    const cache = createCache({ tiers: [memoryStore(), memoryStore()] });
    await cache.setMany([
      { key: "a", value: 1 },
      { key: "b", value: { n: 2 }, tags: ["t"] },
      { key: "c", value: new Date(3) },
    ]);
    expect(await cache.getMany(["a", "b", "c", "d"])).toEqual([
      1,
      { n: 2 },
      new Date(3),
      undefined,
    ]);
    expect(await cache.deleteMany(["a", "c", "d"])).toBe(2);
    expect(await cache.getMany(["a", "b", "c"])).toEqual([undefined, { n: 2 }, undefined]);
  });

  it("setMany checks every value before writing any", async () => {
    const cache = createCache({ tiers: [memoryStore()] });
    await expect(
      cache.setMany([
        { key: "ok", value: 1 },
        { key: "bad", value: () => 1 },
      ]),
    ).rejects.toMatchObject({
      code: "E_BAD_VALUE",
    });
    expect(await cache.get("ok")).toBeUndefined();
  });
});
