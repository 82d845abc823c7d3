import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createNodeEdgecache } from "../../../src/adapter/node/modes/data-api.ts";
import type { Row } from "../../../src/core/data/query.ts";
import { HIT, reply, send, tempDir } from "../../app/harness.ts";
import { CLI } from "../../helpers/built-cli.ts";
import { waitForLine } from "../../helpers/child.ts";
import { cutShort, keptAside, overwritePages } from "../../helpers/damage.ts";

// The cache never refuses to start because of its own cache: a damaged cache file is kept
// aside as <name>.damaged-<time> with one warning, and the cache goes on with a new one.

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function dir(): string {
  const d = tempDir("edgecache-damaged-");
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const aside = (cwd: string) => keptAside(join(cwd, "edgecache.cache.db"));
const options = (cwd: string) => ({ cwd, demo: { users: 100, orders: 200 }, port: 0 });

/** Runs the demo once, reading every user, and stops cleanly: a real cache file, no WAL. */
async function realCacheFile(cwd: string): Promise<string[]> {
  const ec = await createNodeEdgecache(options(cwd));
  const users = (await send(ec, "GET", "/v1/users?limit=100")).json.data as Row[];
  const paths = users.map((u) => `/v1/users/${u.id}`);
  for (const path of paths) await send(ec, "GET", path);
  await ec.close();
  return paths;
}

describe("a damaged cache file", () => {
  it("of random bytes: `edgecache serve` starts, says so in one warning, keeps the file aside and caches in a new one", async () => {
    const cwd = dir();
    writeFileSync(join(cwd, "edgecache.cache.db"), randomBytes(64 * 1024));
    const { PORT: _p, EDGECACHE_ADMIN_TOKEN: _t, REDIS_URL: _r, ...env } = process.env;
    const child = spawn(process.execPath, [CLI, "serve", "--port", "0"], {
      cwd,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    cleanup.push(async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((done) => child.once("exit", done));
      child.kill("SIGTERM");
      await exited;
    });
    const [, url] = await waitForLine(child, /data API:\s+(http:\/\/[^/\s]+)\/v1\//);
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /edgecache\.cache\.db is damaged \(.*not a database.*\): kept aside as /,
    );
    expect(aside(cwd)).toHaveLength(1);
    expect(lines[0]).toContain(aside(cwd)[0]);

    await fetch(`${url}/v1/users?limit=3`);
    const again = await reply(await fetch(`${url}/v1/users?limit=3`));
    expect(again.headers.get("cache-status")).toMatch(HIT);
    const stats = (await reply(await fetch(`${url}/_edgecache/stats`))).json;
    expect(stats.tiers[1]).toMatchObject({ name: "sqlite", entries: 1, errors: 0 });
  }, 60_000);

  it("cut short mid-page: the next start succeeds with one warning and caches in a new file", async () => {
    const cwd = dir();
    const [item] = await realCacheFile(cwd);
    cutShort(join(cwd, "edgecache.cache.db"));

    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const ec = await createNodeEdgecache(options(cwd));
    cleanup.push(() => ec.close());
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toMatch(/is damaged \(.*malformed.*\): kept aside as /);
    expect(aside(cwd)).toHaveLength(1);
    await send(ec, "GET", item!);
    expect((await send(ec, "GET", item!)).headers.get("cache-status")).toMatch(HIT);
    expect(ec.cache.stats().tiers[1]).toMatchObject({ entries: 1, errors: 0 });
  });

  it("corrupt but opening (overwritten pages): the first call that meets the damage replaces the file with one warning, and the tier works on, with no error counted", async () => {
    const cwd = dir();
    const paths = await realCacheFile(cwd);
    overwritePages(join(cwd, "edgecache.cache.db"));

    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const ec = await createNodeEdgecache(options(cwd));
    cleanup.push(() => ec.close());
    // Listing the tier for a prefix meets every page.
    await ec.cache.invalidate({ prefix: "GET /v1/users/" });
    for (const path of paths) await send(ec, "GET", path);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toMatch(/is damaged \(.*malformed.*\): kept aside as /);
    expect(aside(cwd)).toHaveLength(1);
    expect(ec.cache.stats().tiers[1]).toMatchObject({ entries: paths.length, errors: 0 });
    expect((await send(ec, "GET", paths[0]!)).headers.get("cache-status")).toMatch(HIT);
  });
});
