import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import type { CacheEntry } from "../../src/core/entries/entry.ts";
import { heldBytes } from "../../src/core/entries/heap-size.ts";
import { EdgecacheError } from "../../src/core/errors.ts";
import type { MemoryStoreOptions } from "../../src/stores/memory.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { storeConformance } from "../../src/testing/index.ts";

storeConformance("memory", ({ now }) => memoryStore({ now }));

const MINUTE = 60_000;

/** An entry that counts exactly `size` bytes under a one-character key (no headers, no tags). */
function sized(size: number): CacheEntry {
  const entry: CacheEntry = {
    body: new Uint8Array(0),
    headers: {},
    status: 200,
    createdAt: 0,
    freshUntil: 0,
    staleUntil: 0,
    etag: '"x"',
    tags: [],
  };
  entry.body = new Uint8Array(size - heldBytes("k", entry));
  expect(heldBytes("k", entry)).toBe(size);
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
    const store = memoryStore({ maxBytes: 30_000 });
    for (let i = 0; i < 100; i++) await store.set(`k${i}`, sized(1000 + ((i * 37) % 900)), MINUTE);
    expect(store.size().bytes).toBeLessThanOrEqual(30_000);
    expect(store.size().evictions).toBeGreaterThan(0);
  });

  it("evicts the least recently used entry when the entry-count bound is reached", async () => {
    const store = memoryStore({ maxEntries: 2 });
    await store.set("a", sized(1000), MINUTE);
    await store.set("b", sized(1000), MINUTE);
    await store.get("a");
    await store.set("c", sized(1000), MINUTE);

    expect(await store.get("b")).toBeUndefined();
    expect(await store.get("a")).toBeDefined();
    expect(await store.get("c")).toBeDefined();
    expect(store.size()).toMatchObject({ entries: 2, evictions: 1 });
  });

  it("does not store an entry larger than maxBytes, nor evict others for it", async () => {
    const store = memoryStore({ maxBytes: 2000 });
    await store.set("s", sized(1000), MINUTE);
    await store.set("h", sized(2001), MINUTE);

    expect(store.peek("h")).toBeUndefined();
    expect(store.peek("s")).toBeDefined();
    expect(store.size()).toEqual({ entries: 1, bytes: 1000, evictions: 0 });
  });

  it("an oversized write still removes the older entry under that key", async () => {
    const store = memoryStore({ maxBytes: 2000 });
    await store.set("k", sized(1000), MINUTE);
    await store.set("k", sized(4000), MINUTE);
    expect(store.peek("k")).toBeUndefined();
    expect(store.size().evictions).toBe(0);
  });

  it("counts each key's length in the byte bound, so long keys cannot outgrow it", async () => {
    const store = memoryStore({ maxBytes: 100_000 });
    const long = "x".repeat(10_000);
    for (let i = 0; i < 50; i++) await store.set(`${long}${i}`, sized(1000), MINUTE);
    const { entries, bytes } = store.size();
    expect(bytes).toBeLessThanOrEqual(100_000);
    expect(entries).toBeLessThan(10);
  });
});

/** A full collection, twice with a turn between: finalizers run and what they free goes too. */
async function collectedHeap(): Promise<number> {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  gc();
  await new Promise((r) => setTimeout(r, 10));
  gc();
  return process.memoryUsage().heapUsed;
}

describe("memory store heap", () => {
  it("takes no more heap than maxBytes, whatever the number of distinct keys stored", async () => {
    // Entries as the data API stores a list: small body, shared headers, a list predicate.
    const headers = {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-cache",
    };
    const position = { log: "0123456789ab", seq: 0 };
    const maxBytes = 8 * 1024 * 1024;
    const store = memoryStore({ maxBytes, maxEntries: 1_000_000 });
    const before = await collectedHeap();
    for (let i = 0; i < 60_000; i++) {
      const body = new TextEncoder().encode(`{"data":[],"limit":20,"offset":0,"n":${i}}`);
      await store.set(
        `GET /v1/users?firstName=junk-${i}`,
        {
          body,
          headers,
          status: 200,
          createdAt: Date.now(),
          freshUntil: Date.now() + MINUTE,
          staleUntil: Date.now() + MINUTE,
          etag: `"${i.toString(16).padStart(24, "0")}"`,
          tags: ["users"],
          lists: [
            {
              table: "users",
              filters: [{ column: "firstName", op: "eq", value: `junk-${i}` }],
              sort: [{ column: "id", desc: false }],
              offset: 0,
              limit: 20,
              count: 0,
            },
          ],
          meta: { resource: "users" },
          position,
        },
        MINUTE,
      );
    }
    const grown = (await collectedHeap()) - before;
    expect(store.size().bytes).toBeLessThanOrEqual(maxBytes);
    expect(store.size().evictions).toBeGreaterThan(0);
    // What the store counts is what it takes, give or take what the heap does besides.
    expect(grown).toBeLessThanOrEqual(maxBytes * 1.25);
    expect(store.size().entries).toBeGreaterThan(0);
  });
});

describe("memory store peek", () => {
  it("peek returns the entry synchronously, the same one get resolves", async () => {
    const store = memoryStore();
    const entry = sized(1000);
    await store.set("k", entry, MINUTE);
    expect(store.peek("k")).toBe(entry);
    expect(await store.get("k")).toBe(entry);
  });

  it("peek does not return an entry after its ttl, and frees its bytes", async () => {
    let time = Date.UTC(2025, 0, 1);
    const store = memoryStore({ now: () => time });
    await store.set("k", sized(1000), 1000);
    time += 999;
    expect(store.peek("k")).toBeDefined();
    time += 1;
    expect(store.peek("k")).toBeUndefined();
    expect(store.size()).toEqual({ entries: 0, bytes: 0, evictions: 0 });
  });

  it("expiry follows the injected clock even at time 0", async () => {
    let time = 0;
    const store = memoryStore({ now: () => time });
    await store.set("k", sized(1000), 10);
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
