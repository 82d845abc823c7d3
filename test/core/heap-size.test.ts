import { describe, expect, it } from "vitest";
import type { CacheEntry } from "../../src/core/entry.ts";
import { ENTRY_OVERHEAD, heapBytes, heldBytes } from "../../src/core/heap-size.ts";

const entry: CacheEntry = {
  body: new Uint8Array(10),
  headers: {},
  status: 200,
  createdAt: 0,
  freshUntil: 0,
  staleUntil: 0,
  etag: "",
  tags: [],
};

describe("heapBytes", () => {
  it("counts strings by length, twice for text beyond Latin-1", () => {
    expect(heapBytes("users#12")).toBe(16 + 8);
    expect(heapBytes("ü")).toBe(16 + 1);
    expect(heapBytes("用户")).toBe(16 + 4);
  });

  it("counts objects and arrays by their slots and what they hold", () => {
    expect(heapBytes({ resource: "users" })).toBe(32 + 16 + (16 + 8) + (16 + 5));
    expect(heapBytes(["a", 1])).toBe(32 + 16 + 17 + 16 + 16);
    expect(heapBytes(null)).toBe(0);
  });

  it("stops at a depth, so a cycle in memory-only meta cannot hang it", () => {
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    expect(heapBytes(loop)).toBeGreaterThan(0);
  });
});

describe("heldBytes", () => {
  it("counts the fixed cost, the body, the key and every field a client can make large", () => {
    const bare = heldBytes("k", entry);
    expect(bare).toBe(ENTRY_OVERHEAD + 10 + 17 + 32 + 16 + 32);
    expect(heldBytes("k".repeat(1001), entry)).toBe(bare + 1000);
    expect(heldBytes("k", { ...entry, tags: ["users#1"] })).toBe(bare + 16 + 23);
    expect(heldBytes("k", { ...entry, meta: { id: "x" } })).toBeGreaterThan(bare);
    const list = { table: "t", filters: [], sort: [], offset: 0, limit: 20, count: 0 };
    expect(heldBytes("k", { ...entry, lists: [list] })).toBeGreaterThan(bare + 100);
  });
});
