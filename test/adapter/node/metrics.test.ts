import { afterEach, describe, expect, it } from "vitest";
import { type Harness, startEdgecache } from "../../app/harness.ts";
import {
  type Origin,
  type ProxyHarness,
  startOrigin,
  startProxy,
} from "../../app/proxy/harness.ts";
import { exchange } from "./raw-client.ts";

// /_edgecache/metrics through prom-client: latency histograms by the tier that answered
// (memory hits on the raw-socket path included) and of source loads, beside the counters.

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** The value of one sample line, e.g. `edgecache_read_duration_seconds_count{tier="memory"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("data API node", () => {
  let h: Harness;
  afterEach(() => h?.close());

  it("histograms count every read by its tier, raw-socket memory hits included, and every load", async () => {
    h = await startEdgecache({ rehydrate: false });
    const running = await h.edgecache.listen();
    let reachedHttp = 0;
    running.server.prependListener("request", () => reachedHttp++);
    const port = Number(new URL(running.url).port);
    const get = (target: string) => `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`;

    // A miss (a source load), then four hits pipelined on one keep-alive connection.
    await exchange(port, get("/v1/users?limit=3"), ["GET"]);
    const before = reachedHttp;
    const hits = await exchange(port, get("/v1/users?limit=3").repeat(4), [
      "GET",
      "GET",
      "GET",
      "GET",
    ]);
    expect(hits.replies.map((r) => r.header("cache-status"))).toEqual(
      Array(4).fill(expect.stringMatching(/^edgecache; hit/)),
    );
    expect(reachedHttp - before).toBeLessThan(4); // some went the raw path, past node:http
    // A read the SQLite tier answers: the memory tier no longer holds the entry.
    await h.edgecache.tiers[0]!.delete(["GET /v1/users?limit=3"]);
    await exchange(port, get("/v1/users?limit=3"), ["GET"]);

    const res = await fetch(`${running.url}/_edgecache/metrics`);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toContain("# TYPE edgecache_read_duration_seconds histogram");
    expect(text).toContain("# TYPE edgecache_source_load_duration_seconds histogram");
    expect(text).not.toMatch(/^# TYPE \S+ summary$/m);
    const stats = h.edgecache.cache.stats();
    const memory = sample(text, 'edgecache_read_duration_seconds_count{tier="memory"}');
    expect(memory).toBe(4);
    expect(memory).toBe(stats.tiers[0]!.hits);
    expect(sample(text, 'edgecache_read_duration_seconds_count{tier="sqlite"}')).toBe(1);
    expect(sample(text, 'edgecache_read_duration_seconds_bucket{le="+Inf",tier="memory"}')).toBe(4);
    const loads = sample(text, 'edgecache_source_load_duration_seconds_count{outcome="ok"}');
    expect(loads).toBe(1);
    expect(loads).toBe(stats.loads);
    // Buckets are cumulative.
    const buckets = text
      .split("\n")
      .filter(
        (l) =>
          l.startsWith('edgecache_read_duration_seconds_bucket{le="') &&
          l.includes('tier="memory"'),
      )
      .map((l) => Number(l.split(" ")[1]));
    expect(buckets).toEqual([...buckets].sort((a, b) => a - b));
    // The counters keep their names.
    expect(sample(text, "edgecache_hits_total")).toBe(stats.hits);
    expect(sample(text, 'edgecache_tier_entries{tier="sqlite"}')).toBe(1);
    // Redis commands by kind: none here (no Redis), requests as the node served them.
    expect(sample(text, 'edgecache_redis_commands_total{kind="hit"}')).toBe(0);
    expect(sample(text, 'edgecache_redis_requests_total{kind="hit"}')).toBe(
      stats.redis.requests.hit,
    );
  });
});

describe("proxy node", () => {
  let origin: Origin;
  let proxy: ProxyHarness;
  afterEach(async () => {
    await proxy?.close();
    await origin?.close();
  });

  it("origin fetches are source loads; hits are reads of the memory tier", async () => {
    origin = await startOrigin((_req, res) => {
      res.writeHead(200, { "cache-control": "max-age=600" });
      res.end("hello");
    });
    proxy = await startProxy(origin.url);
    for (let i = 0; i < 3; i++) await fetch(`${proxy.url}/a`).then((r) => r.text());
    const text = await fetch(`${proxy.url}/_edgecache/metrics`).then((r) => r.text());
    expect(sample(text, 'edgecache_source_load_duration_seconds_count{outcome="ok"}')).toBe(1);
    expect(
      sample(text, 'edgecache_read_duration_seconds_count{tier="memory"}'),
    ).toBeGreaterThanOrEqual(2);
  });
});
