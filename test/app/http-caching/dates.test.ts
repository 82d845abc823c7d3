import { describe, expect, it } from "vitest";
import { parseCacheDate, parseHttpDate } from "../../../src/app/http-caching/rules.ts";

// RFC 9110 5.6.7: the three HTTP-date forms, and nothing else.
const NOV_6_1994 = Date.UTC(1994, 10, 6, 8, 49, 37);

describe("parseHttpDate (RFC 9110 5.6.7)", () => {
  it("reads IMF-fixdate and the obsolete RFC 850 and asctime forms", () => {
    const now = Date.UTC(2026, 0, 1);
    expect(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT", now)).toBe(NOV_6_1994);
    expect(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT", now)).toBe(NOV_6_1994);
    expect(parseHttpDate("Sun Nov  6 08:49:37 1994", now)).toBe(NOV_6_1994);
    expect(parseHttpDate("Sun Nov 16 08:49:37 1994", now)).toBe(NOV_6_1994 + 10 * 86_400_000);
  });

  it("reads a two-digit year more than 50 years ahead as the last century's", () => {
    const now = Date.UTC(2026, 0, 1);
    expect(new Date(parseHttpDate("Friday, 01-Jan-27 00:00:00 GMT", now)!).getUTCFullYear()).toBe(
      2027,
    );
    expect(new Date(parseHttpDate("Monday, 01-Jan-80 00:00:00 GMT", now)!).getUTCFullYear()).toBe(
      1980,
    );
  });

  it.each([
    ["a one-digit hour", "Sun, 06 Nov 1994 8:49:37 GMT"],
    ["dashes in IMF-fixdate", "Sun, 06-Nov-1994 08:49:37 GMT"],
    ["UTC instead of GMT", "Sun, 06 Nov 1994 08:49:37 UTC"],
    ["a missing comma", "Sun 06 Nov 1994 08:49:37 GMT"],
    ["doubled spaces", "Sun,  06 Nov 1994 08:49:37 GMT"],
    ["a lower-case month", "Sun, 06 nov 1994 08:49:37 GMT"],
    ["an hour past 23", "Sun, 06 Nov 1994 24:49:37 GMT"],
    ["31 February", "Tue, 31 Feb 1994 08:49:37 GMT"],
    ["an ISO date", "1994-11-06T08:49:37Z"],
    ["a number", "0"],
    ["nothing", ""],
  ])("refuses %s", (_, value) => {
    expect(parseHttpDate(value)).toBeUndefined();
  });
});

describe("parseCacheDate (RFC 9111 4.2: a cache matches names in any case)", () => {
  const now = Date.UTC(2026, 0, 1);

  it.each([
    ["IMF-fixdate", "SUN, 06 nov 1994 08:49:37 gmt"],
    ["RFC 850", "sunday, 06-NOV-94 08:49:37 Gmt"],
    ["asctime", "sUN nOV  6 08:49:37 1994"],
  ])("reads %s whatever the case of its names", (_, value) => {
    expect(parseCacheDate(value, now)).toBe(NOV_6_1994);
  });

  it.each([
    ["UTC instead of GMT", "Sun, 06 Nov 1994 08:49:37 utc"],
    ["doubled spaces", "Sun,  06 Nov 1994 08:49:37 GMT"],
    ["a number", "0"],
  ])("still refuses %s", (_, value) => {
    expect(parseCacheDate(value, now)).toBeUndefined();
  });
});
