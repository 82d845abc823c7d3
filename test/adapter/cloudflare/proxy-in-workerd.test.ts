import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundle, COMPATIBILITY_DATE } from "../../helpers/workerd.ts";

// Proxy mode as a Worker, inside workerd: two isolates of the proxy Worker in front of a
// real HTTP origin in this process, sharing KV, the Cache API and the Durable Object log.

let origin: Server;
let originRequests = 0;
let version = 1;
let mf: Miniflare;
/** The Range of each origin request for /video. */
const videoRanges: (string | undefined)[] = [];
const VIDEO = "0123456789";

/** A 10-byte file with a strong ETag: one range asked for (206), else whole. */
function video(range: string | undefined, res: ServerResponse): void {
  const headers = { "cache-control": "max-age=600", etag: '"v1"', "content-type": "video/mp4" };
  const m = /^bytes=(\d+)-(\d*)$/.exec(range ?? "");
  if (!m) {
    res.writeHead(200, headers);
    res.end(VIDEO);
    return;
  }
  const start = Number(m[1]);
  const end = m[2] ? Number(m[2]) : VIDEO.length - 1;
  res.writeHead(206, { ...headers, "content-range": `bytes ${start}-${end}/${VIDEO.length}` });
  res.end(VIDEO.slice(start, end + 1));
}

beforeAll(async () => {
  origin = createServer((req, res) => {
    originRequests++;
    if (req.url === "/video") {
      videoRanges.push(req.headers.range);
      video(req.headers.range, res);
      return;
    }
    if (req.method === "POST") version++;
    res.writeHead(200, { "content-type": "application/json", "cache-control": "max-age=600" });
    res.end(JSON.stringify({ path: req.url, version }));
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const { port } = origin.address() as AddressInfo;
  const script = await bundle(new URL("./proxy-entry.ts", import.meta.url));
  mf = new Miniflare({
    workers: ["p1", "p2", "p-off", "p-ignore"].map((name) => ({
      name,
      modules: true,
      script,
      compatibilityDate: COMPATIBILITY_DATE,
      kvNamespaces: { CACHE: "proxy-kv" },
      durableObjects: { CHANGE_LOG: { className: "ChangeLogObject", scriptName: "p1" } },
      bindings: {
        ORIGIN: `http://127.0.0.1:${port}`,
        ...(name === "p-off" && { EDGECACHE_CACHE: "off" }),
        ...(name === "p-ignore" && { CLIENT_DIRECTIVES: "ignore" }),
      },
    })),
  });
  await mf.ready;
}, 60_000);

afterAll(async () => {
  await mf?.dispose();
  await new Promise((resolve) => origin?.close(resolve));
});

async function send(
  isolate: string,
  path: string,
  method = "GET",
  headers: Record<string, string> = {},
) {
  const worker = (await mf.getWorker(isolate)) as unknown as { fetch: typeof fetch };
  const res = await worker.fetch(`http://127.0.0.1:8787${path}`, { method, headers });
  return {
    status: res.headers.get("cache-status") ?? "",
    code: res.status,
    range: res.headers.get("content-range"),
    body: await res.text(),
  };
}

describe("proxy mode on Workers", () => {
  it("stores a cacheable origin response, and another isolate finds it in a shared tier", async () => {
    expect((await send("p1", "/things/1")).status).toMatch(/fwd=uri-miss; stored/);
    expect((await send("p1", "/things/1")).status).toMatch(/^edgecache; hit/);
    expect((await send("p2", "/things/1")).status).toMatch(/^edgecache; hit/);
    expect(originRequests).toBe(1);
  });

  it("stores a 206 as a piece another isolate serves ranges from, and completes it", async () => {
    const first = await send("p1", "/video", "GET", { range: "bytes=0-4" });
    expect([first.code, first.range, first.body]).toEqual([206, "bytes 0-4/10", "01234"]);
    // The piece came through the shared tier's codec (KV, the Cache API) whole.
    const inside = await send("p2", "/video", "GET", { range: "bytes=1-3" });
    expect([inside.code, inside.range, inside.body]).toEqual([206, "bytes 1-3/10", "123"]);
    expect(inside.status).toMatch(/^edgecache; hit/);
    const whole = await send("p2", "/video");
    expect([whole.code, whole.body]).toEqual([200, VIDEO]);
    expect(whole.status).toMatch(/^edgecache; fwd=partial; stored/);
    expect(videoRanges).toEqual(["bytes=0-4", "bytes=5-"]);
  });

  it("a POST through one isolate invalidates the URL in the other's memory too", async () => {
    await send("p2", "/things/2");
    expect((await send("p2", "/things/2")).status).toMatch(/^edgecache; hit/);
    const before = originRequests;
    await send("p1", "/things/2", "POST");
    const after = await send("p2", "/things/2");
    expect(after.status).toMatch(/fwd=uri-miss; stored/);
    expect(JSON.parse(after.body).version).toBe(version);
    expect(originRequests).toBe(before + 2);
  });

  it("with EDGECACHE_CACHE=off sends every GET to the origin, counted as a bypass", async () => {
    const before = originRequests;
    for (let i = 0; i < 3; i++) {
      expect((await send("p-off", "/things/off")).status).toBe(
        "edgecache; fwd=bypass; detail=cache-off",
      );
    }
    expect(originRequests).toBe(before + 3);
    const worker = (await mf.getWorker("p-off")) as unknown as { fetch: typeof fetch };
    const res = await worker.fetch("http://127.0.0.1:8787/_edgecache/stats", {
      headers: { "cf-connecting-ip": "127.0.0.1" },
    });
    const stats = await res.json();
    expect(stats).toMatchObject({ enabled: false, bypasses: 3, hits: 0, misses: 0 });
    // Its POSTs still go through the log: an isolate with caching on drops its copy.
    await send("p1", "/things/3");
    expect((await send("p1", "/things/3")).status).toMatch(/^edgecache; hit/);
    await send("p-off", "/things/3", "POST");
    expect((await send("p1", "/things/3")).status).toMatch(/fwd=uri-miss; stored/);
  });

  it("with clientDirectives ignore answers a browser's reload from the cache, not the origin", async () => {
    const reloads: Record<string, string>[] = [
      { "cache-control": "max-age=0" },
      { "cache-control": "no-cache", pragma: "no-cache" },
    ];
    expect((await send("p-ignore", "/things/reload")).status).toMatch(/fwd=uri-miss; stored/);
    const before = originRequests;
    for (const headers of reloads) {
      expect((await send("p-ignore", "/things/reload", "GET", headers)).status).toMatch(
        /^edgecache; hit/,
      );
    }
    expect(originRequests).toBe(before);
    // The isolates that follow clients' directives (the default) still go to the origin.
    await send("p1", "/things/followed");
    await send("p1", "/things/followed", "GET", reloads[1]);
    expect(originRequests).toBe(before + 2);
  });

  it("answers GET /_edgecache/health with its tiers and log, never asking the origin", async () => {
    const before = originRequests;
    const worker = (await mf.getWorker("p1")) as unknown as { fetch: typeof fetch };
    const res = await worker.fetch("http://127.0.0.1:8787/_edgecache/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      status: "ok",
      checks: {
        tiers: { ok: true },
        log: { ok: true, name: "durable-log", node: expect.any(String) },
      },
    });
    expect(originRequests).toBe(before);
  });
});
