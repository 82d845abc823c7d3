import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterEach, expect, it, vi } from "vitest";
import type { SharedManifest } from "../../../src/adapter/node/modes/manifest-shared.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { raw, startOrigin, startProxy } from "../../app/proxy/harness.ts";
import { waitForLine } from "../../helpers/child.ts";
import { until } from "../../helpers/cluster.ts";
import { requireRedis } from "../../helpers/services.ts";

// Proxy nodes sharing Redis keep one manifest between them: the node holding the keeper's
// lease fetches the URLs, the others fetch none and serve its copies from Redis, and every
// node shows the same state. A keeper killed without a word (SIGKILL, in a process of its
// own) is replaced once its lease lapses; one that closes hands over at once.

const redis = await requireRedis();
const CHILD = join(import.meta.dirname, "fixtures", "manifest-node-child.ts");
const MANIFEST = ["/items/{1..3}"];
const PATHS = ["/items/1", "/items/2", "/items/3"];
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function countingOrigin() {
  const asked = new Map<string, number>();
  const origin = await startOrigin((req, res) => {
    asked.set(req.url!, (asked.get(req.url!) ?? 0) + 1);
    res.writeHead(200, { "cache-control": "max-age=600", "content-type": "text/plain" });
    res.end(`${req.url} ${asked.get(req.url!)}`);
  });
  cleanup.push(() => origin.close());
  return { url: origin.url, asked: (path: string) => asked.get(path) ?? 0 };
}

const setting = () => ({ url: redis.url, prefix: `test:${randomId()}:`, leaseMs: 1000 });

async function inProcess(origin: string, redisSetting: ReturnType<typeof setting>) {
  const proxy = await startProxy(origin, {
    now: Date.now,
    redis: redisSetting,
    manifest: MANIFEST,
  });
  cleanup.push(() => proxy.close());
  return { ...proxy, manifest: proxy.node.manifest as SharedManifest };
}

async function child(origin: string, redisSetting: ReturnType<typeof setting>) {
  const proc: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", CHILD, JSON.stringify({ origin, redis: redisSetting, manifest: MANIFEST })],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  cleanup.push(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  });
  const [, url] = (await waitForLine(proc, /listening (\S+)/)) as unknown as [string, string];
  return { proc, url };
}

interface ManifestBody {
  total: number;
  cached: number;
  keeper: string | null;
  /** The node that answered. */
  node: string | null;
  lastRunAt: number | null;
  urls: { url: string; state: string; fetchedAt?: number }[];
}
const manifestOf = async (url: string) =>
  JSON.parse((await raw(`${url}/_edgecache/manifest`)).text) as ManifestBody;

/** Two nodes on one Redis, A the keeper, once `waitFor`'s manifest shows every URL cached. */
async function twoNodes(waitFor: "a" | "b") {
  const origin = await countingOrigin();
  const shared = setting();
  const a = await inProcess(origin.url, shared);
  await until(() => a.manifest.keeping());
  const b = await inProcess(origin.url, shared);
  const watched = waitFor === "a" ? a : b;
  await until(async () => (await manifestOf(watched.url)).cached === 3, 20_000);
  return { origin, a, b };
}

redis.describe("a manifest on proxy nodes sharing Redis", () => {
  it("is kept by one node: the other fetches none, serves its copies, and shows the same state", async () => {
    const { origin, a, b } = await twoNodes("a");
    for (const path of PATHS) expect(origin.asked(path), path).toBe(1);
    expect(b.manifest.keeping()).toBe(false);

    const { node: nodeA, ...seenA } = await manifestOf(a.url);
    const { node: nodeB, ...seenB } = await manifestOf(b.url);
    expect(seenB).toEqual(seenA);
    expect(seenA.keeper).toEqual(expect.any(String));
    // Each node shows its own name, in its manifest, stats and health: the keeper's is its.
    expect(nodeA).toBe(seenA.keeper);
    expect(nodeB).toEqual(expect.any(String));
    expect(nodeB).not.toBe(nodeA);
    for (const [url, name] of [
      [a.url, nodeA],
      [b.url, nodeB],
    ] as const) {
      expect(JSON.parse((await raw(`${url}/_edgecache/stats`)).text).log.node).toBe(name);
      expect(JSON.parse((await raw(`${url}/_edgecache/health`)).text).checks.log).toMatchObject({
        node: name,
      });
    }
    expect(seenA.lastRunAt).toBe(Math.max(...seenA.urls.map((u) => u.fetchedAt!)));
    const stats = JSON.parse((await raw(`${b.url}/_edgecache/stats`)).text);
    expect(stats.manifest).toMatchObject({ total: 3, cached: 3 });

    // The node that keeps nothing answers from the shared tier, without the origin.
    const res = await raw(`${b.url}/items/2`);
    expect(res.headers["cache-status"]).toMatch(/^edgecache; hit/);
    expect(res.text).toBe("/items/2 1");
    expect(origin.asked("/items/2")).toBe(1);

    // A purge through the node that never read /items/3 counts the keeper's copy in Redis.
    const purged = await raw(`${b.url}/_edgecache/purge`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ urls: ["/items/3"] }),
    });
    expect(JSON.parse(purged.text)).toEqual({ purged: 1 });

    // Closing, the keeper gives the lease back: the other takes over at its next renewal,
    // from the saved state (nothing is due, so the origin is not asked again).
    await a.close();
    await until(() => b.manifest.keeping());
    const after = await manifestOf(b.url);
    expect(after.keeper).toBe(await b.manifest.view.keeper());
    expect(after.keeper).not.toBe(seenA.keeper);
    expect(after.urls).toEqual(seenA.urls);
    expect(after.node).toBe(after.keeper);
    for (const path of PATHS) expect(origin.asked(path), path).toBe(1);
  });

  it("a node's manifest page and scrapes read the URLs' states from Redis once a second at most", async () => {
    const { b } = await twoNodes("b");
    // Every node's client is an ioredis Redis here: its HGETALLs are the states' reads.
    const reads = vi.spyOn(Redis.prototype, "hgetall");
    cleanup.push(() => reads.mockRestore());
    const pages = await Promise.all([
      ...Array.from({ length: 5 }, () => manifestOf(b.url)),
      ...Array.from({ length: 5 }, () => raw(`${b.url}/_edgecache/stats`)),
      ...Array.from({ length: 5 }, () => raw(`${b.url}/_edgecache/metrics`)),
    ]);
    expect(pages).toHaveLength(15);
    // Each of the 15 read them before (15 HGETALLs); now one, or a few where the requests
    // span more than MANIFEST_VIEW_MS on a loaded machine.
    expect(reads.mock.calls.length).toBeLessThanOrEqual(3);
    expect(await manifestOf(b.url)).toMatchObject({ total: 3, cached: 3 });
  });

  it("is taken over within the lease when its keeper dies without a word", async () => {
    const origin = await countingOrigin();
    const shared = setting();
    const a = await child(origin.url, shared);
    await until(async () => (await manifestOf(a.url)).cached === 3, 30_000);
    const keeperA = (await manifestOf(a.url)).keeper;
    expect(keeperA).not.toBeNull();
    const b = await inProcess(origin.url, shared);
    // B has renewed (tried to take) the lease at least once and lost: A holds it.
    await until(async () => (await manifestOf(b.url)).keeper === keeperA);
    expect(b.manifest.keeping()).toBe(false);
    expect({ ...(await manifestOf(b.url)), node: null }).toEqual({
      ...(await manifestOf(a.url)),
      node: null,
    });

    a.proc.kill("SIGKILL");
    await until(() => b.manifest.keeping(), 20_000);
    const after = await manifestOf(b.url);
    expect(after.keeper).not.toBe(keeperA);
    expect(after).toMatchObject({ total: 3, cached: 3 });
    for (const path of PATHS) expect(origin.asked(path), path).toBe(1);
  });
});
