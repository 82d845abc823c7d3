import { describe, expect, it } from "vitest";
import type { CacheEntry } from "../../src/core/entry.ts";
import { entrySize } from "../../src/core/entry.ts";
import { EdgecacheError } from "../../src/core/errors.ts";
import type { MemoryStoreOptions } from "../../src/stores/memory.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { storeConformance } from "./conformance.ts";

storeConformance("memory", ({ now }) => memoryStore({ now }));

const MINUTE = 60_000;

/** An entry that counts exactly `size` bytes under a one-character key (no headers, no tags). */
function sized(size: number): CacheEntry {
  const entry: CacheEntry = {
    body: new Uint8Array(size - 64 - 1),
    headers: {},
    status: 200,
    createdAt: 0,
    freshUntil: 0,
    staleUntil: 0,
    etag: '"x"',
    tags: [],
  };
  expect(entrySize(entry) + 1).toBe(size);
  return entry;
}

describe("memory store bounds", () => {
  it("evicts the least recently used entry when the byte bound is reached, and counts it", async () => {
    const store = memoryStore({ maxBytes: 3000 });
    await store.set("a", sized(1000), MINUTE);
    await store.set("b", sized(1000), MINUTE);
    await store.set("c", sized(1000), MINUTE);
    // A hit through peek makes "a" recent, so "b" is now the oldest.
    expect(store.peek("a")).toBeDefined();

    await store.set("d", sized(1000), MINUTE);

    expect(store.peek("b")).toBeUndefined();
    for (const key of ["a", "c", "d"]) expect(store.peek(key)).toBeDefined();
    expect(store.size()).toEqual({ entries: 3, bytes: 3000, evictions: 1 });
  });

  it("never holds more bytes than maxBytes", async () => {
    const store = memoryStore({ maxBytes: 10_000 });
    for (let i = 0; i < 100; i++) await store.set(`k${i}`, sized(100 + ((i * 37) % 900)), MINUTE);
    expect(store.size().bytes).toBeLessThanOrEqual(10_000);
    expect(store.size().evictions).toBeGreaterThan(0);
  });

  it("evicts the least recently used entry when the entry-count bound is reached", async () => {
    const store = memoryStore({ maxEntries: 2 });
    await store.set("a", sized(100), MINUTE);
    await store.set("b", sized(100), MINUTE);
    await store.get("a");
    await store.set("c", sized(100), MINUTE);

    expect(await store.get("b")).toBeUndefined();
    expect(await store.get("a")).toBeDefined();
    expect(await store.get("c")).toBeDefined();
    expect(store.size()).toMatchObject({ entries: 2, evictions: 1 });
  });

  it("does not store an entry larger than maxBytes, nor evict others for it", async () => {
    const store = memoryStore({ maxBytes: 1000 });
    await store.set("s", sized(500), MINUTE);
    await store.set("h", sized(1001), MINUTE);

    expect(store.peek("h")).toBeUndefined();
    expect(store.peek("s")).toBeDefined();
    expect(store.size()).toEqual({ entries: 1, bytes: 500, evictions: 0 });
  });

  it("an oversized write still removes the older entry under that key", async () => {
    const store = memoryStore({ maxBytes: 1000 });
    await store.set("k", sized(500), MINUTE);
    await store.set("k", sized(2000), MINUTE);
    expect(store.peek("k")).toBeUndefined();
    expect(store.size().evictions).toBe(0);
  });

  it("counts each key's length in the byte bound, so long keys cannot outgrow it", async () => {
    const store = memoryStore({ maxBytes: 100_000 });
    const long = "x".repeat(10_000);
    for (let i = 0; i < 50; i++) await store.set(`${long}${i}`, sized(100), MINUTE);
    const { entries, bytes } = store.size();
    expect(bytes).toBeLessThanOrEqual(100_000);
    expect(entries).toBeLessThan(10);
  });
});

describe("memory store peek", () => {
  it("peek returns the entry synchronously, the same one get resolves", async () => {
    const store = memoryStore();
    const entry = sized(100);
    await store.set("k", entry, MINUTE);
    expect(store.peek("k")).toBe(entry);
    expect(await store.get("k")).toBe(entry);
  });

  it("peek does not return an entry after its ttl, and frees its bytes", async () => {
    let time = Date.UTC(2025, 0, 1);
    const store = memoryStore({ now: () => time });
    await store.set("k", sized(100), 1000);
    time += 999;
    expect(store.peek("k")).toBeDefined();
    time += 1;
    expect(store.peek("k")).toBeUndefined();
    expect(store.size()).toEqual({ entries: 0, bytes: 0, evictions: 0 });
  });

  it("expiry follows the injected clock even at time 0", async () => {
    let time = 0;
    const store = memoryStore({ now: () => time });
    await store.set("k", sized(100), 10);
    time = 10;
    expect(store.peek("k")).toBeUndefined();
  });
});

describe("memory store options", () => {
  const bad: Array<[string, unknown]> = [
    ["maxBytes", 0],
    ["maxBytes", -1],
    ["maxBytes", 1.5],
    ["maxBytes", "50mb"],
    ["maxBytes", Number.NaN],
    ["maxBytes", Number.POSITIVE_INFINITY],
    ["maxEntries", 0],
    ["maxEntries", 2.5],
    ["maxEntries", "10"],
    ["now", 5],
  ];

  it.each(bad)("rejects %s = %s at the factory call with E_BAD_OPTION", (option, value) => {
    const call = () => memoryStore({ [option]: value } as MemoryStoreOptions);
    expect(call).toThrow(EdgecacheError);
    expect(call).toThrow(/^\[edgecache\] \[memory\] option "\w+": expected .+, got .+$/);
    try {
      call();
    } catch (error) {
      expect((error as EdgecacheError).code).toBe("E_BAD_OPTION");
      expect((error as Error).message).toContain(`option "${option}"`);
    }
  });

  it("rejects options that are not an object", () => {
    expect(() => memoryStore("big" as unknown as MemoryStoreOptions)).toThrow(
      'option "options": expected an object, got "big"',
    );
  });

  it("accepts no options", () => {
    expect(memoryStore().name).toBe("memory");
  });
});
