import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "../../helpers/cluster.ts";
import { bundle, COMPATIBILITY_DATE } from "../../helpers/workerd.ts";

// The proxy Worker's manifest inside workerd: two isolates of the proxy in front of a real
// HTTP origin in this process, sharing KV and the Durable Object log; the manifest's Durable
// Object (manifest-entry.ts) keeps the URLs cached on its alarm. No client asks for a manifest
// URL unless a test says so: what the origin sees is the object's doing.

const MANIFEST = ["/m/page/{1..3}", "/m/short", "/m/refuse", "/m/private"].join("\n");
/** The host clients name: paths in the manifest are fetched for it. */
const EDGE = "http://edge.test";
/** The manifest's retry delays (manifest-entry.ts). */
const RETRY = { minMs: 200, maxMs: 1600 };

let origin: Server;
/** When the origin was asked for each path, ms. */
const asked = new Map<string, number[]>();
const hits = (path: string) => asked.get(path)?.length ?? 0;
/** Origin requests in flight, and the most at once. */
let inflight = 0;
let mostInflight = 0;
const PAGES = ["/m/page/1", "/m/page/2", "/m/page/3"];
let mf: Miniflare;
let script: string;

beforeAll(async () => {
  origin = createServer((req, res) => {
    const path = req.url ?? "";
    asked.set(path, [...(asked.get(path) ?? []), Date.now()]);
    mostInflight = Math.max(mostInflight, ++inflight);
    res.on("finish", () => inflight--);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (path === "/m/refuse") {
      res.writeHead(503, headers);
    } else {
      headers["cache-control"] =
        path === "/m/short" ? "max-age=2" : path === "/m/private" ? "private" : "max-age=600";
      res.writeHead(200, headers);
    }
    // Slow enough that fetches overlap unless something holds them back.
    const body = JSON.stringify({ path, n: hits(path) });
    setTimeout(() => res.end(body), 100);
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const { port } = origin.address() as AddressInfo;
  script = (await bundle(new URL("./manifest-entry.ts", import.meta.url))).replace(
    "ORIGIN_URL",
    `http://127.0.0.1:${port}`,
  );
  mf = new Miniflare({
    workers: [
      worker("p1", { EDGECACHE_MANIFEST: MANIFEST }),
      worker("p2", { EDGECACHE_MANIFEST: MANIFEST }),
      worker("p-bad", { EDGECACHE_MANIFEST: "/m/ok\nm/no-slash" }),
      worker("p-unbound", { EDGECACHE_MANIFEST: "/m/ok" }, false),
      worker("p-none", {}, false),
      // MANIFEST bound to another class: the manifest's object never answers as one.
      {
        ...worker("p-wrong", { EDGECACHE_MANIFEST: "/m/ok" }, false),
        durableObjects: {
          CHANGE_LOG: { className: "ChangeLogObject", scriptName: "p1" },
          MANIFEST: { className: "ChangeLogObject", scriptName: "p1" },
        },
      },
    ],
  });
  await mf.ready;
}, 60_000);

function worker(name: string, bindings: Record<string, string>, manifest = true) {
  return {
    name,
    modules: true,
    script,
    compatibilityDate: COMPATIBILITY_DATE,
    kvNamespaces: { CACHE: "proxy-kv" },
    durableObjects: {
      CHANGE_LOG: { className: "ChangeLogObject", scriptName: "p1" },
      ...(manifest && {
        MANIFEST: { className: "ManifestObject", scriptName: "p1", useSQLite: true },
      }),
    },
    bindings: { EDGECACHE_ALLOWED_HOSTS: "edge.test", ...bindings },
  };
}

afterAll(async () => {
  await mf?.dispose();
  await new Promise((resolve) => origin?.close(resolve));
});

async function send(isolate: string, path: string, on = mf) {
  const worker = (await on.getWorker(isolate)) as unknown as { fetch: typeof fetch };
  return worker.fetch(`${EDGE}${path}`, { headers: { "cf-connecting-ip": "127.0.0.1" } });
}

interface UrlReport {
  url: string;
  state: string;
  failures?: number;
  freshUntil?: number;
  nextFetch?: number;
  error?: string;
}
interface ManifestReport {
  total: number;
  cached: number;
  failing: number;
  uncacheable: number;
  pending: number;
  urls: UrlReport[];
}
const manifest = async (isolate = "p1", query = "", on = mf) =>
  (await (await send(isolate, `/_edgecache/manifest${query}`, on)).json()) as ManifestReport;

describe("a proxy Worker's manifest", () => {
  it("is fetched by its Durable Object once an isolate starts: no client asks for a URL", async () => {
    // Any request starts the isolate, which starts the manifest's object.
    expect((await send("p1", "/_edgecache/health")).status).toBe(200);
    await until(() => PAGES.every((p) => hits(p) === 1), 10_000);
    await until(async () => (await manifest()).cached === 4, 10_000);
    expect(hits("/m/private")).toBe(1);
    // Six URLs due at once, fetched manifestConcurrency (2) at a time.
    expect(mostInflight).toBe(2);
  });

  it("is served from a shared tier by another isolate, as a hit, without the origin", async () => {
    const before = hits("/m/page/2");
    const res = await send("p2", "/m/page/2");
    expect(res.headers.get("cache-status")).toMatch(/^edgecache; hit/);
    expect(JSON.parse(await res.text())).toEqual({ path: "/m/page/2", n: 1 });
    expect(hits("/m/page/2")).toBe(before);
  });

  it("refreshes a URL before it expires, so readers keep hitting a fresh copy", async () => {
    const start = hits("/m/short");
    // max-age=2: fetched again a tenth of the lifetime before expiry, about every 1.8 s.
    await until(() => hits("/m/short") >= start + 2, 8000);
    const report = (await manifest()).urls.find((u) => u.url === `${EDGE}/m/short`)!;
    expect(report.state).toBe("cached");
    expect(report.freshUntil! - Date.now()).toBeGreaterThan(0);
    const res = await send("p2", "/m/short");
    expect(res.headers.get("cache-status")).toMatch(/^edgecache; hit/);
  });

  it("retries a refusing URL with growing delays, never hammering the origin", async () => {
    await until(() => hits("/m/refuse") >= 5, 10_000);
    const times = asked.get("/m/refuse")!;
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    // After the n-th failure the wait is half to all of minMs * 2^(n-1), capped at maxMs.
    gaps.forEach((gap, i) => {
      const full = Math.min(RETRY.maxMs, RETRY.minMs * 2 ** i);
      expect(gap, `gap ${i + 1}`).toBeGreaterThanOrEqual(full / 2 - 20);
    });
    const report = (await manifest("p1", "?state=failing")).urls;
    expect(report).toMatchObject([{ url: `${EDGE}/m/refuse`, state: "failing" }]);
    expect(report[0]!.failures).toBeGreaterThanOrEqual(4);
  });

  it("GET /_edgecache/manifest, /stats and /metrics answer from the object, on any isolate", async () => {
    const body = await manifest("p2");
    // Both isolates started it; one object keeps it: each page was fetched once.
    for (const page of PAGES) expect(hits(page), page).toBe(1);
    expect(body).toMatchObject({ total: 6, cached: 4, failing: 1, uncacheable: 1, pending: 0 });
    const states = Object.fromEntries(body.urls.map((u) => [u.url.slice(EDGE.length), u.state]));
    expect(states).toEqual({
      "/m/page/1": "cached",
      "/m/page/2": "cached",
      "/m/page/3": "cached",
      "/m/short": "cached",
      "/m/refuse": "failing",
      "/m/private": "uncacheable",
    });
    const stats = (await (await send("p2", "/_edgecache/stats")).json()) as {
      manifest: unknown;
    };
    expect(stats.manifest).toEqual({ total: 6, cached: 4, failing: 1, uncacheable: 1, pending: 0 });
    const metrics = await (await send("p1", "/_edgecache/metrics")).text();
    expect(metrics).toContain('edgecache_manifest_urls{state="cached"} 4');
    expect(metrics).toContain('edgecache_manifest_urls{state="failing"} 1');
    // The reason it is not kept is the origin's: private, not a generic one.
    const privateUrl = body.urls.find((u) => u.url === `${EDGE}/m/private`);
    expect(privateUrl).toMatchObject({ error: "not stored (private)" });
  });

  it("a purge through an isolate counts the copy the object stored, which the isolate never read", async () => {
    const worker = (await mf.getWorker("p2")) as unknown as { fetch: typeof fetch };
    const res = await worker.fetch(`${EDGE}/_edgecache/purge`, {
      method: "POST",
      headers: { "cf-connecting-ip": "127.0.0.1", "content-type": "application/json" },
      body: JSON.stringify({ urls: ["/m/page/3"] }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ purged: 1 });
    const before = hits("/m/page/3");
    const next = await send("p2", "/m/page/3");
    expect(next.headers.get("cache-status")).toMatch(/^edgecache; fwd=uri-miss; stored/);
    expect(hits("/m/page/3")).toBe(before + 1);
  });

  it("a bad line fails the isolate's start with E_BAD_OPTION naming the line", async () => {
    const res = await send("p-bad", "/m/page/1");
    expect(res.status).toBe(500);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe("E_BAD_OPTION");
    expect(error.message).toBe(
      'EDGECACHE_MANIFEST:2: "m/no-slash": expected a path starting with "/" or an http(s) URL',
    );
  });

  it("a manifest without the MANIFEST binding fails with E_BAD_OPTION naming it", async () => {
    const res = await send("p-unbound", "/m/page/1");
    expect(res.status).toBe(500);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error).toMatchObject({ code: "E_BAD_OPTION" });
    expect(error.message).toContain("env.MANIFEST");
  });

  it("with the manifest's object out of reach, /stats still answers, with the fault in its place", async () => {
    const res = await send("p-wrong", "/_edgecache/stats");
    expect(res.status).toBe(200);
    const stats = (await res.json()) as { hits: number; manifest: { error: string } };
    expect(stats.hits).toBe(0);
    expect(stats.manifest.error).toMatch(/^\[edgecache\] \[manifest-object\] summary: /);
    const metrics = await send("p-wrong", "/_edgecache/metrics");
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).not.toContain("edgecache_manifest_urls");
    expect((await send("p-wrong", "/_edgecache/manifest")).status).toBe(503);
  });

  it("without a manifest, GET /_edgecache/manifest is a 404 that says how to have one", async () => {
    const res = await send("p-none", "/_edgecache/manifest");
    expect(res.status).toBe(404);
    const { error } = (await res.json()) as { error: { message: string } };
    expect(error.message).toContain("EDGECACHE_MANIFEST");
    const stats = (await (await send("p-none", "/_edgecache/stats")).json()) as object;
    expect(stats).not.toHaveProperty("manifest");
  });
});

describe("a proxy Worker's manifest across a restart", () => {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-manifest-"));
  const options = () => ({
    workers: [worker("p1", { EDGECACHE_MANIFEST: "/r/page/{1..2}" })],
    durableObjectsPersist: join(dir, "do"),
    kvPersist: join(dir, "kv"),
    cachePersist: join(dir, "cache"),
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("keeps each URL's state in the object's SQLite: a restarted object fetches nothing anew", async () => {
    let restarted = new Miniflare(options());
    try {
      await send("p1", "/_edgecache/health", restarted);
      await until(async () => (await manifest("p1", "", restarted)).cached === 2, 10_000);
      const before = (await manifest("p1", "", restarted)).urls;
      await restarted.dispose();
      restarted = new Miniflare(options());
      // The first thing the new object is asked: the states it saved, not pending ones.
      const after = await manifest("p1", "", restarted);
      expect(after).toMatchObject({ total: 2, cached: 2, pending: 0 });
      expect(after.urls).toEqual(before);
      expect(hits("/r/page/1") + hits("/r/page/2")).toBe(2);
    } finally {
      await restarted.dispose();
    }
  });
});

describe("a proxy Worker's manifest with the Durable Object tier bound", () => {
  let tiered: Miniflare;
  beforeAll(async () => {
    const tierWorker = (name: string) => {
      const w = worker(name, { EDGECACHE_MANIFEST: "/t/page/1" });
      // No KV: the copies isolates find are the Durable Object tier's (and the Cache API's).
      return {
        ...w,
        kvNamespaces: {},
        durableObjects: {
          CHANGE_LOG: { className: "ChangeLogObject", scriptName: "t1" },
          MANIFEST: { className: "ManifestObject", scriptName: "t1", useSQLite: true },
          CACHE_TIER: { className: "CacheTierObject", scriptName: "t1", useSQLite: true },
        },
      };
    };
    tiered = new Miniflare({ workers: [tierWorker("t1"), tierWorker("t2")] });
    await tiered.ready;
  }, 60_000);
  afterAll(() => tiered?.dispose());

  it("stores into the Durable Object tier, where another isolate reads it first", async () => {
    await send("t1", "/_edgecache/health", tiered);
    await until(async () => (await manifest("t1", "", tiered)).cached === 1, 10_000);
    const res = await send("t2", "/t/page/1", tiered);
    expect(res.headers.get("cache-status")).toMatch(/^edgecache; hit/);
    expect(hits("/t/page/1")).toBe(1);
    const stats = (await (await send("t2", "/_edgecache/stats", tiered)).json()) as {
      tiers: { name: string; hits: number }[];
    };
    expect(stats.tiers.find((t) => t.name === "durable-object")?.hits).toBe(1);
  });
});
