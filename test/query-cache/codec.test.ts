import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decode, encode, Uncacheable } from "../../src/query-cache/codec.ts";

/** Values a driver hands Drizzle: scalars, dates, bigints, bytes, rows, arrays of them. */
const scalar = fc.oneof(
  fc.string(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.double(),
  fc.bigInt(),
  fc.date(),
  fc.uint8Array().map((b) => new Uint8Array(b)),
  fc.uint8Array().map((b) => Buffer.from(b)),
);
const value = fc.letrec((tie) => ({
  any: fc.oneof(
    { maxDepth: 3 },
    scalar,
    fc.array(tie("any"), { maxLength: 4 }),
    fc.dictionary(fc.string(), tie("any"), { maxKeys: 4 }),
  ),
})).any;

/** A row shaped like libSQL's: null prototype, hidden indexes and length, named columns. */
function libsqlRow(columns: string[], values: unknown[]): Record<string, unknown> {
  const row = Object.create(null);
  for (const [i, v] of values.entries()) {
    Object.defineProperty(row, i, { value: v, enumerable: false });
  }
  Object.defineProperty(row, "length", { value: values.length, enumerable: false });
  for (const [i, c] of columns.entries()) {
    Object.defineProperty(row, c, { value: values[i], enumerable: true });
  }
  return row;
}

function descriptors(v: unknown): unknown {
  if (typeof v !== "object" || v === null) return v;
  return {
    proto: Object.getPrototypeOf(v) === null ? "null" : Object.getPrototypeOf(v).constructor.name,
    props: Object.getOwnPropertyNames(v).map((n) => {
      const d = Object.getOwnPropertyDescriptor(v, n)!;
      return [n, d.enumerable, d.writable, d.configurable, descriptors(d.value)];
    }),
  };
}

describe("the result codec", () => {
  it("restores any driver value exactly (types, -0, NaN, undefined, bytes, Buffers)", () => {
    fc.assert(
      fc.property(value, (v) => {
        expect(decode(encode(v))).toStrictEqual(v);
      }),
      { numRuns: 300 },
    );
  });

  it("restores libSQL rows with their hidden indexes, so Drizzle can read them by index", () => {
    const row = libsqlRow(["id", "name", "big"], [1n, "Ann", new ArrayBuffer(2)]);
    const back = decode(encode([row])) as unknown[];
    expect(descriptors(back[0])).toEqual(descriptors(row));
    expect(Array.prototype.slice.call(back[0])).toEqual([1n, "Ann", new ArrayBuffer(2)]);
    // What plain JSON (Drizzle's Upstash cache) makes of it: the indexes are gone.
    const json = libsqlRow(["id", "name"], [1, "Ann"]);
    expect(Array.prototype.slice.call(JSON.parse(JSON.stringify(json)))).toEqual([]);
  });

  it("keeps a plain object whose key is the tag marker, and a __proto__ column", () => {
    const v = JSON.parse('[{"$":"d","v":1,"__proto__":{"x":1}}]');
    const back = decode(encode(v)) as Record<string, unknown>[];
    expect(back).toStrictEqual(v);
    expect(Object.getPrototypeOf(back[0])).toBe(Object.prototype);
  });

  it("refuses what it cannot restore, instead of caching it wrong", () => {
    for (const v of [[new Map()], [{ f: () => 1 }], [new Uint16Array(2)], [Symbol("s")]]) {
      expect(() => encode(v)).toThrow(Uncacheable);
    }
    const cyclic: unknown[] = [];
    cyclic.push(cyclic);
    expect(() => encode(cyclic)).toThrow(Uncacheable);
  });

  it("keeps the data of a driver's result object and strictly its rows", () => {
    class Result {
      rows = [{ at: new Date(5) }];
      rowCount = 1;
      parse = () => 1;
    }
    expect(decode(encode(new Result()))).toStrictEqual({
      rows: [{ at: new Date(5) }],
      rowCount: 1,
    });
    class Bad {
      rows = [{ m: new Map() }];
    }
    expect(() => encode(new Bad())).toThrow(Uncacheable);
  });
});
