import { describe, expect, it } from "vitest";
import { ifRangeHolds, selectRange } from "../../src/core/range.ts";

// RFC 9110 14: which bytes of a 1000-byte body a Range header selects.

describe("selectRange (RFC 9110 14.1.2)", () => {
  it.each([
    ["bytes=0-499", { kind: "part", start: 0, end: 499 }],
    ["bytes=500-", { kind: "part", start: 500, end: 999 }],
    ["bytes=-200", { kind: "part", start: 800, end: 999 }],
    ["bytes=-5000", { kind: "part", start: 0, end: 999 }],
    ["bytes=900-5000", { kind: "part", start: 900, end: 999 }],
    ["Bytes = 10-19", { kind: "part", start: 10, end: 19 }],
    ["bytes=1000-", { kind: "unsatisfiable" }],
    ["bytes=-0", { kind: "unsatisfiable" }],
    ["bytes=500-400", { kind: "whole" }],
    ["bytes=0-1,5-6", { kind: "whole" }],
    ["items=0-1", { kind: "whole" }],
    ["bytes=abc", { kind: "whole" }],
    ["", { kind: "whole" }],
  ])("%s", (range, answer) => {
    expect(selectRange(range, 1000)).toEqual(answer);
  });
});

describe("ifRangeHolds (RFC 9110 13.1.5)", () => {
  const lm = "Sun, 06 Nov 1994 08:49:37 GMT";
  it("holds for the same strong ETag or the same Last-Modified date, else not", () => {
    expect(ifRangeHolds(undefined, '"a"', lm)).toBe(true);
    expect(ifRangeHolds('"a"', '"a"', lm)).toBe(true);
    expect(ifRangeHolds('"b"', '"a"', lm)).toBe(false);
    expect(ifRangeHolds('W/"a"', 'W/"a"', lm)).toBe(false);
    expect(ifRangeHolds('"a"', 'W/"a"', lm)).toBe(false);
    expect(ifRangeHolds(lm, "", lm)).toBe(true);
    expect(ifRangeHolds("Mon, 07 Nov 1994 08:49:37 GMT", "", lm)).toBe(false);
    expect(ifRangeHolds(lm, "", undefined)).toBe(false);
  });
});
