import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { type CacheEntry, deferredEntry } from "../../../src/core/entries/entry.ts";
import { ENTRY_OVERHEAD, heapBytes, heldBytes } from "../../../src/core/entries/heap-size.ts";
import { plainJsonSize } from "../../../src/core/library/plain-json.ts";

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

  it("counts a body not made yet as the value it will encode, without making it", () => {
    const rows = Array.from({ length: 20 }, (_, i) => ({
      id: `o-${i}`,
      status: "paid",
      total: i + 0.5,
      createdAt: `2026-01-${10 + i}T00:00:00Z`,
    }));
    const value = { data: rows, limit: 20, offset: 0 };
    const text = JSON.stringify(value);
    const encode = vi.fn(() => new TextEncoder().encode(text));
    const { json: length, heap } = plainJsonSize(value)!;
    const { body: _, etag: __, ...fields } = entry;
    const later = deferredEntry(fields, { value, encode, length, heap }, () => '"e"');
    const held = heldBytes("k", later);
    expect(encode).not.toHaveBeenCalled();
    // On the high side of what the value takes, as for any field.
    expect(held - heldBytes("k", entry)).toBeGreaterThanOrEqual(heapBytes(value));
    expect(later.body.byteLength).toBe(text.length);
    expect(heldBytes("k", later)).toBeLessThan(held);
  });
});

describe("plainJsonSize", () => {
  it("takes only values JSON gives back equal, with a heap no smaller than heapBytes counts", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const size = plainJsonSize(value);
        if (!size) return;
        expect(JSON.parse(JSON.stringify(value))).toStrictEqual(value);
        expect(size.heap).toBeGreaterThanOrEqual(heapBytes(value));
      }),
    );
    const refused = [new Date(0), -0, Number.NaN, undefined, [1, undefined], { a: 1n }];
    for (const value of refused) expect(plainJsonSize({ data: [value] })).toBeUndefined();
    const deep = [[[[[[[[["nine"]]]]]]]]];
    expect(plainJsonSize(deep)).toBeUndefined();
    expect(plainJsonSize(deep[0])).toBeDefined();
  });

  it("answers for an object as for a fresh copy of it, again and at any depth (a guard for any memo of rows a patch keeps), and takes a value that is no object", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const first = plainJsonSize(value);
        expect(plainJsonSize(value)).toEqual(first);
        const copy = () => structuredClone(value);
        expect(plainJsonSize({ data: [value, value] })).toEqual(
          plainJsonSize({ data: [copy(), copy()] }),
        );
      }),
    );
    // A value at the top that is no object (an item's column, a count) is plain too.
    expect(plainJsonSize("x")).toEqual({ json: 3, heap: 18 });
    expect(plainJsonSize(5)).toEqual({ json: 8, heap: 16 });
    expect(plainJsonSize(null)).toEqual({ json: 4, heap: 0 });
    expect(plainJsonSize(true)).toEqual({ json: 5, heap: 0 });
    const row = { id: 1, tags: { a: { b: 1 } } };
    expect(plainJsonSize(row)).toBeDefined();
    // Six levels down, its deepest object is past the depth plainJson checks.
    expect(plainJsonSize([[[[[[row]]]]]])).toBeUndefined();
    expect(plainJsonSize([[[[[[structuredClone(row)]]]]]])).toBeUndefined();
    expect(plainJsonSize([[[[[row]]]]])).toBeDefined();
  });

  it("counts a page of rows within a tenth of its JSON's length", () => {
    const rows = Array.from({ length: 20 }, (_, i) => ({
      id: `o-${1000 + i}`,
      userId: `u-${i}`,
      status: "shipped",
      total: 100 + i,
      createdAt: `2026-01-${10 + i}T00:00:00Z`,
    }));
    const value = { data: rows, limit: 20, offset: 40 };
    const { json } = plainJsonSize(value)!;
    const text = JSON.stringify(value).length;
    expect(Math.abs(json - text)).toBeLessThan(text / 10);
  });
});
