import type { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HIT, MISS_STORED, type Reply, reply, requestInit } from "../../app/harness.ts";
import { until } from "../../helpers/cluster.ts";
import { type EdgecacheWorkers, startEdgecacheWorkers } from "./edgecache-workers.ts";

// The EDGECACHE_* variables an operator sets on a deployed Worker, inside workerd: isolates
// of the edgecache Worker over one D1, KV namespace and change log, each with its own
// variables, as two deployments of one Worker would have. A variable wins over the option
// the Worker's code sets (OPTIONS), and a bad one fails the request naming it.

let w: EdgecacheWorkers;
let stdout = "";

beforeAll(async () => {
  w = await startEdgecacheWorkers({
    names: [
      "plain",
      "tuned",
      "off",
      "chatty",
      "bad-ttl",
      "negative-ttl",
      "bad-kv",
      "bad-level",
      "bad-region",
      "bad-capture",
      "bad-capture-schema",
    ],
    options: { ttl: 600, memoryBytes: 1_000_000 },
    vars: {
      tuned: { EDGECACHE_TTL: "120", EDGECACHE_MEMORY_BYTES: "1", EDGECACHE_KV: "off" },
      off: { EDGECACHE_CACHE: "off" },
      chatty: { EDGECACHE_LOG_LEVEL: "info" },
      "bad-ttl": { EDGECACHE_TTL: "abc" },
      "negative-ttl": { EDGECACHE_TTL: "-5" },
      "bad-kv": { EDGECACHE_KV: "maybe" },
      "bad-level": { EDGECACHE_LOG_LEVEL: "loud" },
      "bad-region": { EDGECACHE_LOG_MODE: "follower", EDGECACHE_REGION: "west europe" },
      "bad-capture": { EDGECACHE_CAPTURE_MS: "abc" },
      "bad-capture-schema": { EDGECACHE_CAPTURE_SCHEMA: "app; drop" },
    },
    stdio: (out: Readable, err: Readable) => {
      out.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
      });
      err.resume();
    },
  });
}, 60_000);

afterAll(async () => {
  await w?.close();
});

async function send(isolate: string, method: string, path: string, body?: unknown) {
  return reply(await w.fetch(isolate, path, requestInit(method, body)));
}
const get = (isolate: string, path: string) => send(isolate, "GET", path);
const status = (r: Reply) => r.headers.get("cache-status");
/** The admin API's view of a cached key. */
const inspect = (isolate: string, path: string) =>
  get(isolate, `/_edgecache/keys/${encodeURIComponent(`GET ${path}`)}`);
const stats = async (isolate: string) => (await get(isolate, "/_edgecache/stats")).json;

describe("Worker variables over the code's options", () => {
  it("EDGECACHE_TTL wins over the ttl option: entries stay fresh for its seconds", async () => {
    await get("tuned", "/v1/users?id=3");
    const tuned = (await inspect("tuned", "/v1/users?id=3")).json;
    expect(tuned.ttlSeconds).toBeGreaterThanOrEqual(118);
    expect(tuned.ttlSeconds).toBeLessThanOrEqual(120);
    // Without the variable, the option's 600 s.
    await get("plain", "/v1/users?id=4");
    expect((await inspect("plain", "/v1/users?id=4")).json.ttlSeconds).toBeGreaterThan(590);
  });

  it("EDGECACHE_MEMORY_BYTES bounds the memory tier: a larger entry stays out of memory", async () => {
    await get("tuned", "/v1/users?id=5");
    const tiers = (await inspect("tuned", "/v1/users?id=5")).json.tiers;
    expect(tiers).toEqual([
      { tier: "memory", present: false },
      { tier: "cache-api", present: true },
    ]);
    // The option's 1,000,000 bytes hold it.
    await get("plain", "/v1/users?id=6");
    expect((await inspect("plain", "/v1/users?id=6")).json.tiers[0]).toEqual({
      tier: "memory",
      present: true,
    });
  });

  it("EDGECACHE_KV=off leaves the KV tier out though CACHE is bound", async () => {
    const names = (s: Record<string, unknown>) =>
      (s.tiers as { name: string }[]).map((t) => t.name);
    expect(names(await stats("plain"))).toEqual(["memory", "cache-api", "kv"]);
    expect(names(await stats("tuned"))).toEqual(["memory", "cache-api"]);
  });
});

describe("EDGECACHE_CACHE=off", () => {
  it("sends every read to D1, stores nothing, and counts each as a bypass in the stats", async () => {
    const before = (await stats("off")) as { bypasses: number; hits: number; enabled: boolean };
    for (let i = 0; i < 3; i++) {
      const r = await get("off", "/v1/users?id=7");
      expect(r.status).toBe(200);
      expect(status(r)).toBe("edgecache; fwd=bypass; detail=cache-off");
    }
    const after = (await stats("off")) as typeof before;
    expect(after.enabled).toBe(false);
    expect(after.bypasses - before.bypasses).toBe(3);
    expect(after.hits).toBe(0);
    expect((await inspect("off", "/v1/users?id=7")).status).toBe(404);
    const metrics = await (await w.fetch("off", "/_edgecache/metrics")).text();
    expect(metrics).toMatch(/^edgecache_enabled 0$/m);
  });

  it("still logs its writes, so an isolate with caching on never serves what they changed", async () => {
    const [user] = (await get("off", "/v1/users?limit=1&offset=20")).json.data as { id: string }[];
    const path = `/v1/users?id=${user!.id}`;
    expect(status(await get("plain", path))).toMatch(MISS_STORED);
    expect(status(await get("plain", path))).toMatch(HIT);
    const patched = await send("off", "PATCH", `/v1/users/${user!.id}`, { firstName: "Switched" });
    expect(patched.status).toBe(200);
    // Loaded again, or the cached row patched in place by the write: either way, the new row.
    const r = await get("plain", path);
    expect((r.json.data as { firstName: string }[])[0]!.firstName).toBe("Switched");
  });
});

describe("a bad variable", () => {
  it.each([
    [
      "bad-ttl",
      'variable EDGECACHE_TTL: expected a number of seconds > 0 (such as 300), got "abc"',
    ],
    [
      "negative-ttl",
      'variable EDGECACHE_TTL: expected a number of seconds > 0 (such as 300), got "-5"',
    ],
    ["bad-kv", 'variable EDGECACHE_KV: expected "on" or "off", got "maybe"'],
    [
      "bad-level",
      'variable EDGECACHE_LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"',
    ],
    [
      "bad-region",
      'variable EDGECACHE_REGION: expected a region name (letters, digits, - or _), such as weur, got "west europe"',
    ],
    [
      "bad-capture",
      'variable EDGECACHE_CAPTURE_MS: expected a whole number of ms (such as 1000; 0 turns the drain off), got "abc"',
    ],
    [
      "bad-capture-schema",
      'variable EDGECACHE_CAPTURE_SCHEMA: expected a schema name (letters, digits, _ or $), got "app; drop"',
    ],
  ])(
    "%s: fails the first request and the next with E_BAD_OPTION naming it",
    async (isolate, message) => {
      for (let i = 0; i < 2; i++) {
        const r = await get(isolate, "/v1/users?id=1");
        expect(r.status).toBe(500);
        expect(r.json).toEqual({ error: { code: "E_BAD_OPTION", message } });
      }
    },
  );
});

describe("EDGECACHE_LOG_LEVEL", () => {
  it("info logs each request with its Cache-Status; the default (warn) logs none", async () => {
    await get("plain", "/v1/users?id=9");
    await get("chatty", "/v1/users?id=10");
    await until(() => stdout.includes("GET /v1/users?id=10 200"));
    expect(stdout).toMatch(
      /\[edgecache\] \[worker\] GET \/v1\/users\?id=10 200 [\d.]+ ms \(edgecache; fwd=miss; stored/,
    );
    expect(stdout).toContain("[edgecache] [worker] isolate started: caching on; ttl 600 s");
    expect(stdout).not.toContain("/v1/users?id=9 ");
  });
});
