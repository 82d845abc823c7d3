import { describe, expect, it } from "vitest";
import {
  contentRange,
  ifRangeHolds,
  isSingleRange,
  joinSpans,
  missingRange,
  selectRange,
} from "../../../src/app/http-caching/ranges.ts";

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

describe("contentRange (RFC 9110 14.4)", () => {
  it.each([
    ["bytes 0-499/1234", { start: 0, end: 499, size: 1234 }],
    ["Bytes 10-10/11", { start: 10, end: 10, size: 11 }],
    ["bytes 0-499/*", undefined],
    ["bytes */1234", undefined],
    ["bytes 500-400/1234", undefined],
    ["bytes 0-1234/1234", undefined],
    ["items 0-1/2", undefined],
    [undefined, undefined],
  ])("%s", (value, expected) => {
    expect(contentRange(value)).toEqual(expected);
  });
});

describe("isSingleRange: the Range a stored piece can be asked by", () => {
  it.each([
    ["bytes=0-99", true],
    ["bytes=100-", true],
    ["bytes=-5", true],
    ["bytes=0-1,5-6", false],
    ["bytes=9-1", false],
    ["items=0-1", false],
    [null, false],
  ])("%s", (value, expected) => {
    expect(isSingleRange(value)).toBe(expected);
  });
});

describe("missingRange and joinSpans (RFC 9111 3.4)", () => {
  const bytes = (from: number, to: number) =>
    Uint8Array.from({ length: to - from + 1 }, (_, i) => from + i);
  const span = (start: number, end: number) => ({
    span: { start, end, size: 10 },
    body: bytes(start, end),
  });

  it("asks for the tail of a head, the head of a tail, and nothing one Range can say for a middle", () => {
    expect(missingRange({ start: 0, end: 3, size: 10 })).toBe("bytes=4-");
    expect(missingRange({ start: 6, end: 9, size: 10 })).toBe("bytes=0-5");
    expect(missingRange({ start: 2, end: 5, size: 10 })).toBeUndefined();
  });

  it("joins two spans that cover the whole, overlapping or adjoining, in either order", () => {
    expect(joinSpans(span(0, 3), span(4, 9))).toEqual(bytes(0, 9));
    expect(joinSpans(span(5, 9), span(0, 6))).toEqual(bytes(0, 9));
  });

  it("refuses a gap, another length, or a body that is not its span's length", () => {
    expect(joinSpans(span(0, 3), span(5, 9))).toBeUndefined();
    expect(
      joinSpans(span(0, 3), { span: { start: 4, end: 9, size: 11 }, body: bytes(4, 9) }),
    ).toBeUndefined();
    expect(
      joinSpans(span(0, 3), { span: { start: 4, end: 9, size: 10 }, body: bytes(4, 8) }),
    ).toBeUndefined();
  });
});
