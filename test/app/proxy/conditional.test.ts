import { describe, expect, it } from "vitest";
import { proxied, cacheStatusOf as status } from "./harness.ts";

// A client's If-Modified-Since against a stored response, against a real origin.

describe("If-Modified-Since without Last-Modified (RFC 9110 13.1.3, RFC 9111 4.3.2)", () => {
  it("answers from the cache with 304 against the stored response's Date while it is fresh", async () => {
    const date = new Date(Date.now() - 60_000).toUTCString();
    const { origin, get } = await proxied((_, res) => {
      res.writeHead(200, { "cache-control": "max-age=600", date });
      res.end("no last-modified here");
    });
    await get("/dated");
    const later = await get("/dated", { "if-modified-since": new Date().toUTCString() });
    expect(later.status).toBe(304);
    expect(status(later)).toMatch(/^edgecache; hit/);
    const same = await get("/dated", { "if-modified-since": date });
    expect(same.status).toBe(304);
    const earlier = await get("/dated", {
      "if-modified-since": new Date(Date.now() - 3_600_000).toUTCString(),
    });
    expect(earlier.status).toBe(200);
    expect(earlier.text).toBe("no last-modified here");
    // Not an HTTP-date: the condition is ignored.
    const iso = await get("/dated", { "if-modified-since": new Date().toISOString() });
    expect(iso.status).toBe(200);
    expect(origin.count()).toBe(1);
  });
});

describe("a 304 that names no validator (RFC 9110 15.4.5, RFC 9111 4.3.4)", () => {
  it("revalidates the stored response it answers, with one conditional request", async () => {
    const seen: (string | undefined)[] = [];
    const { origin, get } = await proxied((req, res) => {
      seen.push(req.headers["if-none-match"]);
      // Some origins (cache-tests' server, Python's http.server) answer 304 bare.
      if (req.headers["if-none-match"] === '"abcd"') {
        res.writeHead(304, {});
        res.end();
        return;
      }
      res.writeHead(200, { "cache-control": "no-cache", etag: '"abcd"' });
      res.end("stored body");
    });
    await get("/bare");
    const again = await get("/bare");
    expect(again.status).toBe(200);
    expect(again.text).toBe("stored body");
    expect(status(again)).toMatch(/^edgecache; fwd=stale; fwd-status=304/);
    expect(seen).toEqual([undefined, '"abcd"']);
    expect(origin.count()).toBe(2);
  });
});

describe("an origin status outside the final range", () => {
  it("answers 502 for a status HTTP has no place for (999), not a 500", async () => {
    const { get } = await proxied((_, res) => {
      res.writeHead(999, { "content-type": "text/plain" });
      res.end("?");
    });
    const r = await get("/odd");
    expect(r.status).toBe(502);
    expect(JSON.parse(r.text).error.code).toBe("E_ORIGIN_UNAVAILABLE");
  });
});
