import { describe, expect, it } from "vitest";
import { counting, proxied, SECOND, cacheStatusOf as status } from "./harness.ts";

// Expires and Age as RFC 9111 reads them, against a real origin.

const LONG_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/** `Sunday, 06-Nov-94 08:49:37 GMT`, the obsolete RFC 850 form. */
function rfc850(ms: number): string {
  const d = new Date(ms);
  const [, day, month, year, time] = d.toUTCString().split(" ");
  return `${LONG_DAYS[d.getUTCDay()]}, ${day}-${month}-${year!.slice(2)} ${time} GMT`;
}

/** `Sun Nov  6 08:49:37 1994`, the obsolete asctime form. */
function asctime(ms: number): string {
  const [wd, day, month, year, time] = new Date(ms).toUTCString().replace(",", "").split(" ");
  return `${wd} ${month} ${day!.replace(/^0/, " ")} ${time} ${year}`;
}

describe("Expires (RFC 9111 5.3, RFC 9110 5.6.7)", () => {
  it.each([
    ["an RFC 850 date", rfc850],
    ["an asctime date", asctime],
  ])(
    "takes %s in the future as fresh (a recipient must accept the obsolete forms)",
    async (_, format) => {
      const { origin, proxy, get } = await proxied((_, res) => {
        const now = Date.now();
        res.writeHead(200, {
          date: new Date(now).toUTCString(),
          expires: format(now + 100 * SECOND),
        });
        res.end("x");
      });
      expect(status(await get("/old-form"))).toMatch(/stored; ttl=(99|100)$/);
      proxy.clock.advance(50 * SECOND);
      expect(status(await get("/old-form"))).toMatch(/^edgecache; hit/);
      expect(origin.count()).toBe(1);
    },
  );

  it.each([
    ["an upper-case weekday", (d: string) => d.replace(/^(\w+)/, (w) => w.toUpperCase())],
    ["an upper-case month", (d: string) => d.replace(/ (\w{3}) (\d{4}) /, (m) => m.toUpperCase())],
    ["a mixed-case zone", (d: string) => d.replace("GMT", "gMT")],
  ])(
    "takes an Expires with %s in the future as fresh (RFC 9111 4.2: any case)",
    async (_, recase) => {
      const { origin, get } = await proxied((_, res) => {
        const now = Date.now();
        res.writeHead(200, {
          date: new Date(now).toUTCString(),
          expires: recase(new Date(now + 100 * SECOND).toUTCString()),
        });
        res.end("x");
      });
      expect(status(await get("/any-case"))).toMatch(/stored; ttl=(99|100)$/);
      expect(status(await get("/any-case"))).toMatch(/^edgecache; hit/);
      expect(origin.count()).toBe(1);
    },
  );

  it.each([
    ["a one-digit hour", (d: string) => d.replace(/ 0(\d):/, " $1:")],
    ["dashes", (d: string) => d.replace(/^(\w+), (\d+) (\w+) (\d+)/, "$1, $2-$3-$4")],
    ["UTC instead of GMT", (d: string) => d.replace("GMT", "UTC")],
    ["a missing comma", (d: string) => d.replace(",", "")],
    ["doubled spaces", (d: string) => d.replace(" ", "  ")],
  ])("takes an Expires with %s as already expired (RFC 9111 5.3)", async (_, spoil) => {
    const { origin, get } = await proxied((_, res) => {
      // 09:05:00 has a leading zero to lose, whatever the day.
      const future = new Date(Date.now() + 86_400_000);
      future.setUTCHours(9, 5, 0);
      res.writeHead(200, { expires: spoil(future.toUTCString()) });
      res.end("x");
    });
    expect(status(await get("/bad-date"))).toBe("edgecache; fwd=uri-miss; detail=not-fresh");
    await get("/bad-date");
    expect(origin.count()).toBe(2);
  });
});

describe("Age (RFC 9111 5.1)", () => {
  it("ignores an Age with a fraction, rather than rounding it", async () => {
    const { get } = await proxied(counting({ "cache-control": "max-age=60", age: "50.5" }));
    const miss = await get("/frac");
    expect(status(miss)).toBe("edgecache; fwd=uri-miss; stored; ttl=60");
    expect(miss.headers.age).toBe("0");
  });
});
