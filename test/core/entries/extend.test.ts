import { describe, expect, it } from "vitest";
import { extend } from "../../../src/core/entries/extend.ts";

describe("extend", () => {
  it("is the spread of both: a copy of the base with the fields over it, neither changed", () => {
    const base = { a: 1, b: 2 };
    const fields = { b: 3, c: 4 };
    const out = extend(base, fields);
    expect(out).toEqual({ ...base, ...fields });
    expect(Object.keys(out)).toEqual(["a", "b", "c"]);
    expect(base).toEqual({ a: 1, b: 2 });
    expect(out).not.toBe(base);
  });

  it("copies what a spread copies: own enumerable fields, a getter's value, no prototype", () => {
    const proto = { inherited: true };
    const base = Object.create(proto, {
      shown: { value: 1, enumerable: true },
      hidden: { value: 2, enumerable: false },
      got: { get: () => 3, enumerable: true },
    });
    const out = extend(base, { more: 4 });
    expect(out).toEqual({ ...base, more: 4 });
    expect(Object.getOwnPropertyDescriptor(out, "got")).toMatchObject({ value: 3 });
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
  });

  it("keeps a field named __proto__ a field, as a spread does, and the copy's prototype plain", () => {
    const base = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as Record<string, unknown>;
    const out = extend(base, { b: 2 });
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.hasOwn(out, "__proto__")).toBe(true);
    expect((out as Record<string, unknown>).polluted).toBeUndefined();
    expect(out).toEqual({ ...base, b: 2 });
  });
});
