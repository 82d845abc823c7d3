import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { createCache } from "../../../src/core/cache/index.ts";
import { localChangeLog } from "../../../src/core/change-log/in-process.ts";
import { keyPattern } from "../../../src/core/fence/pattern.ts";
import type { BatchStore } from "../../../src/core/store.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { sqliteStore } from "../../../src/stores/sqlite.ts";

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

/** A real store whose batch and single calls are counted (the calls go through unchanged). */
function counted<S extends BatchStore>(store: S) {
  const calls = { get: 0, getMany: 0, set: 0, setMany: 0 };
  const wrapped: S = {
    ...store,
    get(key) {
      calls.get++;
      return store.get(key);
    },
    getMany(keys) {
      calls.getMany++;
      return store.getMany(keys);
    },
    set(key, entry, ttl) {
      calls.set++;
      return store.set(key, entry, ttl);
    },
    setMany(writes) {
      calls.setMany++;
      return store.setMany(writes);
    },
  };
  return { store: wrapped, calls };
}

describe("batches through the tiers' own batch operations", () => {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-batches-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const sqlite = () => sqliteStore({ path: join(dir, `${++n}.db`) });

  it("setMany writes the SQLite tier in one batch; getMany after memory eviction reads it in one, and back-fills memory", async () => {
    const { store, calls } = counted(sqlite());
    const memory = memoryStore();
    const cache = createCache({ tiers: [memory, store] });
    const keys = Array.from({ length: 40 }, (_, i) => `user:${i}`);
    await cache.setMany(keys.map((key, i) => ({ key, value: { i }, tags: [`u${i}`] })));
    expect(calls).toMatchObject({ setMany: 1, set: 0 });

    // Memory loses most of them (eviction, a restart of the memory tier).
    await memory.delete(keys.slice(0, 30));
    const before = cache.stats();
    expect(await cache.getMany([...keys, "user:none"])).toEqual([
      ...keys.map((_, i) => ({ i })),
      undefined,
    ]);
    expect(calls).toMatchObject({ getMany: 1, get: 0 });
    const after = cache.stats();
    expect(after.tiers[1]!.hits - before.tiers[1]!.hits).toBe(30);
    expect(after.hits - before.hits).toBe(40);
    // Back in memory: the next read is a memory hit, no tier call.
    for (const key of keys.slice(0, 30)) expect(cache.peek(key)).toBeDefined();
    await cache.getMany(keys);
    expect(calls).toMatchObject({ getMany: 1, get: 0 });
    // Tags still reach entries read back from the lower tier.
    expect(await cache.invalidate({ tags: ["u3"] })).toBe(1);
    expect(await cache.getMany(["user:3", "user:4"])).toEqual([undefined, { i: 4 }]);
    await cache.close();
  });

  it("getMany refuses what another node left in a lower tier before a write it has applied, like get", async () => {
    const log = localChangeLog();
    const shared = sqlite();
    const writer = createCache({ tiers: [memoryStore(), shared], log });
    await writer.setMany([
      { key: "page:1", value: "old 1" },
      { key: "page:2", value: "old 2" },
    ]);
    const reader = createCache({ tiers: [memoryStore(), shared], log });
    // An entry written under an old position, put back after the invalidation removed it.
    const stale = (await shared.get("page:1"))!;
    await reader.invalidate({ keys: ["page:1"] });
    await shared.set("page:1", stale, 60_000);
    expect(await reader.getMany(["page:1", "page:2"])).toEqual([undefined, "old 2"]);
    expect(reader.stats().refused).toBe(1);
    expect(await shared.get("page:1")).toBeUndefined();
    await writer.close();
    await reader.close();
  });
});
