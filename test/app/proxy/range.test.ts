import type { IncomingMessage, ServerResponse } from "node:http";
import { describe, expect, it, onTestFinished } from "vitest";
import { tempDir } from "../harness.ts";
import { proxied, raw, startOrigin, startProxy, cacheStatusOf as status } from "./harness.ts";

// Range requests (RFC 9110 14) through the proxy, against a real "video" origin that
// answers Range requests itself.

const VIDEO = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
const ETAG = '"v1"';
const LAST_MODIFIED = "Sun, 06 Nov 1994 08:49:37 GMT";

/** A video origin that answers the range asked for whatever If-Range says. */
const videoOrigin = rangeOrigin(() => ({ body: VIDEO, etag: ETAG, lastModified: LAST_MODIFIED }), {
  ifRange: false,
});

describe("Range requests on a stored complete response (RFC 9110 14.2)", () => {
  it("answers a single, an open-ended and a suffix range with 206 and the right bytes, from one origin request", async () => {
    const { origin, get } = await proxied(videoOrigin);
    await get("/video.mp4");
    const first = await get("/video.mp4", { range: "bytes=0-99" });
    expect(first.status).toBe(206);
    expect(first.headers["content-range"]).toBe("bytes 0-99/1000");
    expect(first.body.equals(VIDEO.subarray(0, 100))).toBe(true);
    expect(status(first)).toMatch(/^edgecache; hit/);

    const open = await get("/video.mp4", { range: "bytes=900-" });
    expect(open.status).toBe(206);
    expect(open.headers["content-range"]).toBe("bytes 900-999/1000");
    expect(open.headers["content-length"]).toBe("100");
    expect(open.body.equals(VIDEO.subarray(900))).toBe(true);
    expect(status(open)).toMatch(/^edgecache; hit/);

    const suffix = await get("/video.mp4", { range: "bytes=-10" });
    expect(suffix.status).toBe(206);
    expect(suffix.headers["content-range"]).toBe("bytes 990-999/1000");
    expect(suffix.body.equals(VIDEO.subarray(990))).toBe(true);

    const whole = await get("/video.mp4");
    expect(whole.status).toBe(200);
    expect(whole.body.equals(VIDEO)).toBe(true);
    expect(origin.count()).toBe(1);
  });

  it("answers an unsatisfiable range with 416 and the length (RFC 9110 15.5.17)", async () => {
    const { get } = await proxied(videoOrigin);
    await get("/video.mp4");
    const r = await get("/video.mp4", { range: "bytes=5000-" });
    expect(r.status).toBe(416);
    expect(r.headers["content-range"]).toBe("bytes */1000");
    expect(r.body.byteLength).toBe(0);
  });

  it("honours If-Range (RFC 9110 13.1.5): the range while the validator matches, else the whole body", async () => {
    const { get } = await proxied(videoOrigin);
    await get("/video.mp4");
    const same = await get("/video.mp4", { range: "bytes=0-9", "if-range": ETAG });
    expect(same.status).toBe(206);
    const byDate = await get("/video.mp4", { range: "bytes=0-9", "if-range": LAST_MODIFIED });
    expect(byDate.status).toBe(206);
    const changed = await get("/video.mp4", { range: "bytes=0-9", "if-range": '"v0"' });
    expect(changed.status).toBe(200);
    expect(changed.body.equals(VIDEO)).toBe(true);
  });

  it("ignores Range on a HEAD and on a conditional request that gets a 304", async () => {
    const { get } = await proxied(videoOrigin);
    await get("/video.mp4");
    const head = await get("/video.mp4", { range: "bytes=0-9" }, "HEAD");
    expect(head.status).toBe(200);
    expect(head.headers["content-length"]).toBe("1000");
    const notModified = await get("/video.mp4", { range: "bytes=0-9", "if-none-match": ETAG });
    expect(notModified.status).toBe(304);
  });

  it("lets the origin answer the Range of a response too large to store, in one request", async () => {
    const { origin, get } = await proxied(videoOrigin, { maxCacheableSize: 500 });
    const r = await get("/big.mp4", { range: "bytes=100-199" });
    expect(r.status).toBe(206);
    expect(r.headers["content-range"]).toBe("bytes 100-199/1000");
    expect(r.body.equals(VIDEO.subarray(100, 200))).toBe(true);
    expect(origin.requests.map((q) => q.headers.range)).toEqual(["bytes=100-199"]);
  });

  it("asks the origin for a Range it cannot keep a piece of (several ranges) once the whole is too large", async () => {
    const { origin, get } = await proxied(videoOrigin, { maxCacheableSize: 500 });
    const r = await get("/big.mp4", { range: "bytes=0-9, 20-29" });
    // The origin sent it whole (it answers one range only), too large to store.
    expect(r.status).toBe(200);
    expect(r.body.equals(VIDEO)).toBe(true);
    expect(origin.requests.map((q) => q.headers.range)).toEqual([undefined, "bytes=0-9, 20-29"]);
  });
});

/**
 * An origin that answers one byte range (RFC 9110 14) of `file()`: the 206 while If-Range
 * (a strong entity tag) names the current representation, else the whole; `ifRange: false`
 * answers the range whatever If-Range says (a broken origin); `ranges: false` answers 200.
 */
function rangeOrigin(
  file: () => { body: Buffer; etag?: string; lastModified?: string },
  options: { ifRange?: boolean; ranges?: boolean } = {},
) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const { body, etag, lastModified } = file();
    const headers = {
      "content-type": "video/mp4",
      "cache-control": "max-age=600",
      "accept-ranges": "bytes",
      ...(etag && { etag }),
      ...(lastModified && { "last-modified": lastModified }),
    };
    const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? "");
    const ifRange = req.headers["if-range"];
    const current = ifRange === undefined || ifRange === etag || options.ifRange === false;
    if (!m || !current || options.ranges === false) {
      res.writeHead(200, headers);
      res.end(body);
      return;
    }
    const [start, end] =
      m[1] === ""
        ? [body.length - Number(m[2]), body.length - 1]
        : [Number(m[1]), m[2] ? Math.min(Number(m[2]), body.length - 1) : body.length - 1];
    res.writeHead(206, { ...headers, "content-range": `bytes ${start}-${end}/${body.length}` });
    res.end(body.subarray(start, end + 1));
  };
}

const V1 = { body: VIDEO, etag: '"v1"' };
const V2 = { body: Buffer.from(VIDEO.map((b) => 255 - b)), etag: '"v2"' };
const ranges = (origin: { requests: { headers: IncomingMessage["headers"] }[] }) =>
  origin.requests.map((q) => [q.headers.range, q.headers["if-range"]]);

describe("206 responses stored as pieces (RFC 9111 3.3) and completed (RFC 9111 3.4)", () => {
  it("sends a Range miss on, stores the 206 and answers ranges within it from the cache", async () => {
    const { origin, get } = await proxied(rangeOrigin(() => V1));
    const first = await get("/video.mp4", { range: "bytes=100-199" });
    expect(first.status).toBe(206);
    expect(first.headers["content-range"]).toBe("bytes 100-199/1000");
    expect(first.body.equals(VIDEO.subarray(100, 200))).toBe(true);
    expect(status(first)).toMatch(/^edgecache; fwd=uri-miss; stored;/);

    const inside = await get("/video.mp4", { range: "bytes=150-159" });
    expect(inside.status).toBe(206);
    expect(inside.headers["content-range"]).toBe("bytes 150-159/1000");
    expect(inside.headers["content-length"]).toBe("10");
    expect(inside.body.equals(VIDEO.subarray(150, 160))).toBe(true);
    expect(status(inside)).toMatch(/^edgecache; hit/);
    // The piece knows the complete length: a range past it is a 416 (RFC 9110 15.5.17).
    const past = await get("/video.mp4", { range: "bytes=5000-" });
    expect(past.status).toBe(416);
    expect(past.headers["content-range"]).toBe("bytes */1000");
    expect(ranges(origin)).toEqual([["bytes=100-199", undefined]]);
  });

  it("completes a piece with what it lacks under its strong ETag, then answers the whole and every range", async () => {
    const { origin, get } = await proxied(rangeOrigin(() => V1));
    await get("/video.mp4", { range: "bytes=0-99" });
    // A plain GET must not get the piece (nor the fast path serve it).
    const whole = await get("/video.mp4");
    expect(whole.status).toBe(200);
    expect(whole.headers["content-range"]).toBeUndefined();
    expect(whole.headers.etag).toBe('"v1"');
    expect(whole.body.equals(VIDEO)).toBe(true);
    expect(status(whole)).toMatch(/^edgecache; fwd=partial; stored;/);
    expect(ranges(origin)).toEqual([
      ["bytes=0-99", undefined],
      ["bytes=100-", '"v1"'],
    ]);
    const tail = await get("/video.mp4", { range: "bytes=-10" });
    expect(tail.headers["content-range"]).toBe("bytes 990-999/1000");
    expect(tail.body.equals(VIDEO.subarray(990))).toBe(true);
    expect((await get("/video.mp4", {}, "HEAD")).headers["content-length"]).toBe("1000");
    expect(origin.count()).toBe(2);
  });

  it("completes a tail piece with its head, and a range outside a piece gets its bytes from the whole", async () => {
    const { origin, get } = await proxied(rangeOrigin(() => V1));
    await get("/video.mp4", { range: "bytes=-100" });
    const head = await get("/video.mp4", { range: "bytes=0-9" });
    expect(head.status).toBe(206);
    expect(head.headers["content-range"]).toBe("bytes 0-9/1000");
    expect(head.body.equals(VIDEO.subarray(0, 10))).toBe(true);
    expect(ranges(origin)).toEqual([
      ["bytes=-100", undefined],
      ["bytes=0-899", '"v1"'],
    ]);
    expect((await get("/video.mp4")).body.equals(VIDEO)).toBe(true);
    expect(origin.count()).toBe(2);
  });

  it("takes the whole when the representation changed since the piece (If-Range sends it whole)", async () => {
    let file = V1;
    const { origin, get } = await proxied(rangeOrigin(() => file));
    await get("/video.mp4", { range: "bytes=0-99" });
    file = V2;
    const whole = await get("/video.mp4");
    expect(whole.headers.etag).toBe('"v2"');
    expect(whole.body.equals(V2.body)).toBe(true);
    expect(origin.count()).toBe(2);
  });

  it("never joins pieces of two representations: a 206 under another ETag is asked for again whole", async () => {
    let file = V1;
    const { origin, get } = await proxied(rangeOrigin(() => file, { ifRange: false }));
    await get("/video.mp4", { range: "bytes=0-99" });
    file = V2;
    const whole = await get("/video.mp4");
    expect(whole.status).toBe(200);
    expect(whole.body.equals(V2.body)).toBe(true);
    expect(ranges(origin)).toEqual([
      ["bytes=0-99", undefined],
      ["bytes=100-", '"v1"'],
      [undefined, undefined],
    ]);
  });

  it("asks for the rest of a piece without a validator; a 200 completes it, a 206 cannot be joined", async () => {
    const plain = { body: VIDEO };
    const fits = await proxied(rangeOrigin(() => plain));
    await fits.get("/a", { range: "bytes=0-99" });
    // This origin answers ranges: its 206 has no validator to join it by (RFC 9110 15.3.7.3).
    const whole = await fits.get("/a");
    expect(whole.body.equals(VIDEO)).toBe(true);
    expect(ranges(fits.origin)).toEqual([
      ["bytes=0-99", undefined],
      ["bytes=100-", undefined],
      [undefined, undefined],
    ]);
    // The suite's case (cache-tests partial-store-partial-complete): the rest asked for,
    // answered whole.
    let n = 0;
    const once = await proxied((req, res) =>
      n++ === 0
        ? rangeOrigin(() => plain)(req, res)
        : rangeOrigin(() => plain, { ranges: false })(req, res),
    );
    await once.get("/b", { range: "bytes=0-99" });
    expect((await once.get("/b")).body.equals(VIDEO)).toBe(true);
    expect(ranges(once.origin)).toEqual([
      ["bytes=0-99", undefined],
      ["bytes=100-", undefined],
    ]);
  });

  it("sends the origin's 206 for another range than the client's as it came, in one request, and keeps it", async () => {
    const { origin, get } = await proxied((_, res) => {
      res.writeHead(206, {
        "cache-control": "max-age=600",
        "content-range": "bytes 0-4/10",
      });
      res.end("01234");
    });
    const r = await get("/p", { range: "bytes=-5" });
    expect(r.status).toBe(206);
    expect(r.headers["content-range"]).toBe("bytes 0-4/10");
    expect(r.text).toBe("01234");
    expect(status(await get("/p", { range: "bytes=1-2" }))).toMatch(/^edgecache; hit/);
    expect(origin.count()).toBe(1);
  });

  it("never stores a 206 whose body is not the length its Content-Range names", async () => {
    const { origin, get } = await proxied((_, res) => {
      res.writeHead(206, { "cache-control": "max-age=600", "content-range": "bytes 4-9/10" });
      res.end("01234");
    });
    const r = await get("/p", { range: "bytes=-5" });
    expect(r.text).toBe("01234");
    expect(status(r)).toMatch(/detail=partial-content/);
    await get("/p", { range: "bytes=-5" });
    expect(origin.count()).toBe(2);
  });

  it("asks for another range of a piece whose whole is too large to store, not for the rest", async () => {
    const { origin, get } = await proxied(
      rangeOrigin(() => V1),
      { maxCacheableSize: 500 },
    );
    await get("/big.mp4", { range: "bytes=0-99" });
    const far = await get("/big.mp4", { range: "bytes=900-949" });
    expect(far.status).toBe(206);
    expect(far.body.equals(VIDEO.subarray(900, 950))).toBe(true);
    const again = await get("/big.mp4", { range: "bytes=910-919" });
    expect(again.body.equals(VIDEO.subarray(910, 920))).toBe(true);
    expect(status(again)).toMatch(/^edgecache; hit/);
    expect(ranges(origin)).toEqual([
      ["bytes=0-99", undefined],
      ["bytes=900-949", undefined],
    ]);
  });

  it("revalidates a stale piece with the client's range and keeps it on a 304", async () => {
    const { origin, proxy, get } = await proxied((req, res) => {
      if (req.headers["if-none-match"] === '"v1"') {
        res.writeHead(304, { etag: '"v1"', "cache-control": "max-age=600" });
        res.end();
        return;
      }
      rangeOrigin(() => V1)(req, res);
    });
    await get("/video.mp4", { range: "bytes=0-99" });
    proxy.clock.advance(601_000);
    const r = await get("/video.mp4", { range: "bytes=10-19" });
    expect(r.status).toBe(206);
    expect(r.body.equals(VIDEO.subarray(10, 20))).toBe(true);
    expect(origin.requests[1]!.headers.range).toBe("bytes=10-19");
    expect(origin.requests[1]!.headers["if-none-match"]).toBe('"v1"');
    expect(status(await get("/video.mp4", { range: "bytes=50-59" }))).toMatch(/^edgecache; hit/);
    expect(origin.count()).toBe(2);
  });

  it("lets a write to the URL invalidate its piece (RFC 9111 4.4)", async () => {
    const { origin, get } = await proxied((req, res) => {
      if (req.method === "POST") {
        res.writeHead(204);
        res.end();
        return;
      }
      rangeOrigin(() => V1)(req, res);
    });
    await get("/video.mp4", { range: "bytes=0-99" });
    await get("/video.mp4", {}, "POST");
    const r = await get("/video.mp4", { range: "bytes=0-9" });
    expect(status(r)).toMatch(/^edgecache; fwd=uri-miss; stored;/);
    expect(origin.requests.map((q) => [q.method, q.headers.range])).toEqual([
      ["GET", "bytes=0-99"],
      ["POST", undefined],
      ["GET", "bytes=0-9"],
    ]);
  });

  it("keeps a piece in the cache file across a restart", async () => {
    const origin = await startOrigin(rangeOrigin(() => V1));
    onTestFinished(() => origin.close());
    const cwd = tempDir("edgecache-proxy-range-");
    const first = await startProxy(origin.url, { cacheFile: "cache.db" }, cwd);
    await raw(`${first.url}/video.mp4`, { headers: { range: "bytes=0-99" } });
    await first.node.close();
    const second = await startProxy(origin.url, { cacheFile: "cache.db" }, cwd);
    onTestFinished(() => second.close());
    const r = await raw(`${second.url}/video.mp4`, { headers: { range: "bytes=20-29" } });
    expect(r.status).toBe(206);
    expect(r.body.equals(VIDEO.subarray(20, 30))).toBe(true);
    expect(status(r)).toMatch(/^edgecache; hit/);
    expect(ranges(origin)).toEqual([["bytes=0-99", undefined]]);
  });
});
