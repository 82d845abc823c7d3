import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { CacheEntry } from "../../../src/core/entries/entry.ts";
import { decodeEntry, encodeEntry } from "../../../src/core/entries/entry.ts";

function entry(overrides: Partial<CacheEntry> = {}): CacheEntry {
  return {
    body: new TextEncoder().encode('{"id":1}'),
    headers: { "content-type": "application/json" },
    status: 200,
    createdAt: 1_735_689_600_000,
    freshUntil: 1_735_689_660_000,
    staleUntil: 1_735_689_720_000,
    etag: '"v1"',
    tags: ["users", "users#1"],
    ...overrides,
  };
}

// As JSON holds it: -0 comes back as 0, which is JSON's doing, not the codec's.
const json: fc.Arbitrary<unknown> = fc.jsonValue().map((v) => JSON.parse(JSON.stringify(v)));
const arbitraryEntry: fc.Arbitrary<CacheEntry> = fc.record(
  {
    body: fc.uint8Array({ maxLength: 300 }),
    headers: fc.dictionary(fc.string(), fc.string()),
    status: fc.integer({ min: 100, max: 599 }),
    createdAt: fc.integer(),
    freshUntil: fc.oneof(fc.integer(), fc.constant(Number.POSITIVE_INFINITY)),
    staleUntil: fc.oneof(fc.integer(), fc.constant(Number.POSITIVE_INFINITY)),
    etag: fc.string(),
    tags: fc.array(fc.string({ unit: "grapheme" })),
    meta: json,
  },
  {
    requiredKeys: [
      "body",
      "headers",
      "status",
      "createdAt",
      "freshUntil",
      "staleUntil",
      "etag",
      "tags",
    ],
  },
);

describe("encodeEntry / decodeEntry", () => {
  it("any entry with JSON meta decodes equal to what was encoded", () => {
    fc.assert(
      fc.property(arbitraryEntry, (written) => {
        const read = decodeEntry(encodeEntry(written));
        expect(read).toEqual(written);
        expect(read.body.constructor).toBe(Uint8Array);
      }),
    );
  });

  it("keeps fields it does not know, so an entry gaining a field needs no new encoding", () => {
    const written = { ...entry(), priority: 3, origin: { region: "eu" } } as CacheEntry;
    expect(decodeEntry(encodeEntry(written))).toEqual(written);
  });

  it("keeps times that never come (a ttl of Infinity), which JSON alone would turn into null", () => {
    const written = entry({
      freshUntil: Number.POSITIVE_INFINITY,
      staleUntil: Number.POSITIVE_INFINITY,
    });
    const read = decodeEntry(encodeEntry(written));
    expect(read.freshUntil).toBe(Number.POSITIVE_INFINITY);
    expect(read.staleUntil).toBe(Number.POSITIVE_INFINITY);
    expect(written.freshUntil).toBe(Number.POSITIVE_INFINITY); // the input is not modified
  });

  it("reads from a Node Buffer at an offset, and returns a plain Uint8Array body", () => {
    const bytes = encodeEntry(entry({ body: new Uint8Array([0, 255, 13, 10]) }));
    const pooled = Buffer.alloc(bytes.byteLength + 7);
    pooled.set(bytes, 7);
    const read = decodeEntry(pooled.subarray(7));
    expect(read.body.constructor).toBe(Uint8Array);
    expect(Array.from(read.body)).toEqual([0, 255, 13, 10]);
  });

  it("stores the body as is after a short header", () => {
    const body = new Uint8Array(10_000).fill(7);
    const bytes = encodeEntry(entry({ body }));
    expect(bytes.byteLength).toBeLessThan(body.byteLength + 300);
    expect(Array.from(bytes.subarray(bytes.byteLength - body.byteLength))).toEqual(
      Array.from(body),
    );
  });

  it("meta that JSON cannot hold (BigInt) throws at encoding", () => {
    expect(() => encodeEntry(entry({ meta: 1n }))).toThrow(TypeError);
  });

  const whole = encodeEntry(entry());
  const headerEnd = 5 + new DataView(whole.buffer).getUint32(1);
  const withHeader = (header: string): Uint8Array => {
    const json = new TextEncoder().encode(header);
    const bytes = new Uint8Array(5 + json.byteLength);
    bytes[0] = 1;
    new DataView(bytes.buffer).setUint32(1, json.byteLength);
    bytes.set(json, 5);
    return bytes;
  };
  const corrupt: Array<[string, Uint8Array]> = [
    ["no bytes", new Uint8Array(0)],
    ["plain text", new TextEncoder().encode("not an entry at all")],
    ["another format version", Uint8Array.from(whole, (b, i) => (i === 0 ? 2 : b))],
    ["a header cut short", whole.subarray(0, headerEnd - 1)],
    ["a header that is not UTF-8", withHeader("\u0000").map((b, i) => (i === 5 ? 0xff : b))],
    ["a header that is not JSON", withHeader("{nope")],
    ["a header that is an array", withHeader("[1,2]")],
    ["a header without tags", withHeader(JSON.stringify({ ...entry(), body: undefined, tags: 1 }))],
    ["a header with a text time", withHeader(JSON.stringify({ ...entry(), createdAt: "soon" }))],
  ];

  it.each(corrupt)("throws for %s, never returns an entry", (_name, bytes) => {
    expect(() => decodeEntry(bytes)).toThrow();
  });
});
