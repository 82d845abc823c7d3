import type { IncomingMessage, ServerResponse } from "node:http";
import { describe, expect, it } from "vitest";
import { proxied, cacheStatusOf as status } from "./proxy-harness.ts";

// Range requests (RFC 9110 14) through the proxy, against a real "video" origin that
// answers Range requests itself.

const VIDEO = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
const ETAG = '"v1"';
const LAST_MODIFIED = "Sun, 06 Nov 1994 08:49:37 GMT";

/** A video origin: the whole file, or the single range asked for (206). */
function videoOrigin(req: IncomingMessage, res: ServerResponse): void {
  const headers = {
    "content-type": "video/mp4",
    "cache-control": "max-age=600",
    etag: ETAG,
    "last-modified": LAST_MODIFIED,
    "accept-ranges": "bytes",
  };
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
  if (!m) {
    res.writeHead(200, headers);
    res.end(VIDEO);
    return;
  }
  const start = Number(m[1]);
  const end = m[2] ? Number(m[2]) : VIDEO.length - 1;
  res.writeHead(206, { ...headers, "content-range": `bytes ${start}-${end}/${VIDEO.length}` });
  res.end(VIDEO.subarray(start, end + 1));
}

describe("Range requests on a stored complete response (RFC 9110 14.2)", () => {
  it("answers a single, an open-ended and a suffix range with 206 and the right bytes, from one origin request", async () => {
    const { origin, get } = await proxied(videoOrigin);
    const first = await get("/video.mp4", { range: "bytes=0-99" });
    expect(first.status).toBe(206);
    expect(first.headers["content-range"]).toBe("bytes 0-99/1000");
    expect(first.body.equals(VIDEO.subarray(0, 100))).toBe(true);
    // The miss fetched (and stored) the whole file: the Range is this client's.
    expect(origin.requests[0]!.headers.range).toBeUndefined();

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

  it("lets the origin answer the Range of a response too large to store", async () => {
    const { origin, get } = await proxied(videoOrigin, { maxCacheableSize: 500 });
    const r = await get("/big.mp4", { range: "bytes=100-199" });
    expect(r.status).toBe(206);
    expect(r.headers["content-range"]).toBe("bytes 100-199/1000");
    expect(r.body.equals(VIDEO.subarray(100, 200))).toBe(true);
    expect(origin.requests.at(-1)!.headers.range).toBe("bytes=100-199");
  });
});
