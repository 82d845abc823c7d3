import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { Logger } from "../../../src/adapter/node/logging.ts";
import { createNodeEdgecache } from "../../../src/adapter/node/modes/data-api.ts";
import { createNodeProxy } from "../../../src/adapter/node/modes/proxy.ts";
import type { Row } from "../../../src/core/data/query.ts";
import { HIT, send, tempDir } from "../../app/harness.ts";

// The cache never refuses to start because of its own file: a cache file on a read-only or
// full filesystem, or one that cannot be made, leaves the node serving from memory, with
// one warning, and `off` in health and stats; a disk that fills while it runs costs the
// file tier its writes (counted, and `degraded` in health), never a client an error.

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});
const mounts: string[] = [];
afterAll(() => {
  for (const m of mounts) {
    execFileSync("umount", [m]);
    rmSync(m, { recursive: true, force: true });
  }
});

function dir(): string {
  const d = tempDir("edgecache-fs-");
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/**
 * A tmpfs mounted at a new directory (root only). Outside CI a sandbox that may not mount
 * skips the test that needs one; in CI it fails, so the test always runs there.
 */
function tmpfs(options: string): string | undefined {
  const at = tempDir("edgecache-mount-");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", at], { stdio: "pipe" });
  } catch (err) {
    rmSync(at, { recursive: true, force: true });
    if (process.env.CI === "true") throw err;
    console.warn(`skipped: cannot mount a tmpfs here (${(err as Error).message.split("\n")[0]})`);
    return undefined;
  }
  mounts.push(at);
  return at;
}

/** A logger that keeps the warnings. */
function warnings(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  // pino's forms: (message) and (fields, message).
  const keep = (first: unknown, message?: string) => {
    lines.push(message ?? (typeof first === "string" ? first : JSON.stringify(first)));
  };
  const logger = {
    warn: keep,
    error: keep,
    info: () => {},
    debug: () => {},
    isLevelEnabled: () => false,
    child: () => logger,
  } as unknown as Logger;
  return { logger, lines };
}

const TOKEN = "fs-faults-token";
const base = (cwd: string) => ({
  cwd,
  demo: { users: 50, orders: 100 },
  port: 0,
  adminToken: TOKEN,
});
const AUTH = { authorization: `Bearer ${TOKEN}` };

async function servesFromMemory(
  cacheFile: string,
  code: RegExp,
): Promise<{ lines: string[]; health: unknown }> {
  const cwd = dir();
  const { logger, lines } = warnings();
  const ec = await createNodeEdgecache({ ...base(cwd), cacheFile, logger });
  cleanup.push(() => ec.close());
  expect(ec.tiers.map((t) => t.name)).toEqual(["memory"]);
  const user = (await send(ec, "GET", "/v1/users?limit=1")).json.data[0] as Row;
  await send(ec, "GET", `/v1/users/${user.id}`);
  const again = await send(ec, "GET", `/v1/users/${user.id}`);
  expect(again.status).toBe(200);
  expect(again.headers.get("cache-status")).toMatch(HIT);
  const said = lines.filter((l) => l.includes(cacheFile));
  expect(said).toHaveLength(1);
  expect(said[0]).toMatch(/memory tier only/);
  expect(said[0]).toMatch(code);
  const health = await send(ec, "GET", "/_edgecache/health");
  expect(health.status).toBe(200);
  expect(health.json.checks.cacheFile).toMatchObject({ ok: true, state: "off" });
  expect(health.json.checks.cacheFile.code).toMatch(code);
  const stats = (await send(ec, "GET", "/_edgecache/stats", undefined, AUTH)).json;
  expect(stats.cacheFile).toMatchObject({ state: "off", path: cacheFile });
  return { lines, health: health.json };
}

describe("a cache file the node cannot use", () => {
  it("under a path through a regular file (ENOTDIR): the data API starts without the file tier and says so", async () => {
    const cwd = dir();
    writeFileSync(join(cwd, "plain"), "");
    await servesFromMemory(join(cwd, "plain", "x.cache.db"), /ENOTDIR/);
  });

  it("a directory in its place: the data API starts without the file tier", async () => {
    const cwd = dir();
    mkdirSync(join(cwd, "adir.cache.db"));
    await servesFromMemory(join(cwd, "adir.cache.db"), /SQLITE_CANTOPEN|EISDIR|EEXIST/);
  });

  it("on a read-only filesystem (EROFS): the data API and the proxy start without the file tier", async () => {
    const ro = tmpfs("size=64k,ro");
    if (!ro) return;
    await servesFromMemory(join(ro, "x.cache.db"), /EROFS/);
    const { logger, lines } = warnings();
    const proxy = await createNodeProxy({
      origins: [{ origin: "http://127.0.0.1:9" }],
      cwd: dir(),
      cacheFile: join(ro, "p.cache.db"),
      logger,
    });
    cleanup.push(() => proxy.close());
    expect(proxy.tiers.map((t) => t.name)).toEqual(["memory"]);
    expect(lines.filter((l) => l.includes("memory tier only"))).toHaveLength(1);
    expect(readdirSync(ro)).toEqual([]);
  });

  it("on a full filesystem (ENOSPC, SQLITE_FULL): the data API starts without the file tier", async () => {
    const full = tmpfs("size=64k");
    if (!full) return;
    fill(full);
    await servesFromMemory(join(full, "x.cache.db"), /ENOSPC|SQLITE_FULL/);
    // The lock's content is written aside before it is linked into place: a write that
    // failed there (ENOSPC) must not leave that file behind.
    expect(readdirSync(full).filter((f) => f.includes(".lock"))).toEqual([]);
  });

  it("a node stopped on a full disk starts again on it: from memory, saying so, degraded in health", async () => {
    const at = tmpfs("size=1m");
    if (!at) return;
    const cwd = dir();
    const cacheFile = join(at, "x.cache.db");
    const first = await createNodeEdgecache({ ...base(cwd), cacheFile, logger: warnings().logger });
    const users = (await send(first, "GET", "/v1/users?limit=20")).json.data as Row[];
    for (const user of users) await send(first, "GET", `/v1/users/${user.id}`);
    fill(at);
    await first.close();

    // The stamp could not be left, so this start empties the file (a delete: SQLITE_FULL).
    const { logger, lines } = warnings();
    const again = await createNodeEdgecache({ ...base(cwd), cacheFile, logger });
    cleanup.push(() => again.close());
    expect(again.tiers.map((t) => t.name)).toEqual(["memory"]);
    const said = lines.filter((l) => l.includes(cacheFile));
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/memory tier only/);
    expect(said[0]).toMatch(/SQLITE_FULL|ENOSPC/);
    const user = await send(again, "GET", `/v1/users/${users[0]!.id}`);
    expect(user.status).toBe(200);
    const health = await send(again, "GET", "/_edgecache/health");
    expect(health.status).toBe(200);
    expect(health.json.status).toBe("degraded");
    expect(health.json.checks.cacheFile).toMatchObject({ ok: true, state: "off" });
    expect(health.json.checks.cacheFile.code).toMatch(/SQLITE_FULL|ENOSPC/);
    const stats = (await send(again, "GET", "/_edgecache/stats", undefined, AUTH)).json;
    expect(stats.cacheFile).toMatchObject({ state: "off", path: cacheFile });
    // Off: the file's lock is not held, and nothing was left beside it.
    expect(readdirSync(at).filter((f) => f.includes(".lock"))).toEqual([]);
  });
});

/** Fills a filesystem to its last byte. */
function fill(at: string, name = "filler"): void {
  try {
    for (let i = 0; ; i++) writeFileSync(join(at, `${name}-${i}`), Buffer.alloc(4096, 1));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  }
  // The last blocks, byte by byte is too slow: a file of one byte at a time few times.
  for (let i = 0; i < 64; i++) {
    try {
      writeFileSync(join(at, `${name}-tail-${i}`), "x");
    } catch {
      break;
    }
  }
}

describe("a cache file that fails later in the start", () => {
  it("a stamp that cannot be consumed (a directory in its place): the node starts without the file tier", async () => {
    const cwd = dir();
    const cacheFile = join(cwd, "x.cache.db");
    const first = await createNodeEdgecache({ ...base(cwd), cacheFile, logger: warnings().logger });
    await first.close();
    rmSync(`${cacheFile}-stamp`, { force: true });
    mkdirSync(`${cacheFile}-stamp`);
    const { logger, lines } = warnings();
    const again = await createNodeEdgecache({ ...base(cwd), cacheFile, logger });
    cleanup.push(() => again.close());
    expect(again.tiers.map((t) => t.name)).toEqual(["memory"]);
    expect(lines.filter((l) => l.includes(cacheFile) && /memory tier only/.test(l))).toHaveLength(
      1,
    );
    expect((await send(again, "GET", "/v1/users?limit=1")).status).toBe(200);
    const health = await send(again, "GET", "/_edgecache/health");
    expect(health.json).toMatchObject({
      status: "degraded",
      checks: { cacheFile: { state: "off" } },
    });
    // Its lock went with it: another node may take the file.
    expect(readdirSync(cwd).filter((f) => f.includes(".lock"))).toEqual([]);
  });

  it("a start that fails after the lock was taken (the database is away) leaves no lock", async () => {
    const cwd = dir();
    await expect(
      createNodeEdgecache({ ...base(cwd), database: "postgres://127.0.0.1:1/none" }),
    ).rejects.toThrow(/E_SOURCE_UNAVAILABLE|cannot open database/);
    expect(readdirSync(cwd).filter((f) => f.includes(".lock"))).toEqual([]);
  });
});

describe("a disk that fills while the node runs", () => {
  it("costs the file tier its writes (counted, `degraded` in health), never a client an error, and the node closes cleanly", async () => {
    const at = tmpfs("size=1m");
    if (!at) return;
    const cwd = dir();
    const { logger, lines } = warnings();
    const cacheFile = join(at, "x.cache.db");
    const ec = await createNodeEdgecache({ ...base(cwd), cacheFile, logger });
    let closed = false;
    cleanup.push(() => (closed ? undefined : ec.close()));
    expect(ec.tiers.map((t) => t.name)).toEqual(["memory", "sqlite"]);
    const users = (await send(ec, "GET", "/v1/users?limit=50")).json.data as Row[];
    await send(ec, "GET", `/v1/users/${users[0]!.id}`);
    fill(at);
    for (const user of users) {
      const r = await send(ec, "GET", `/v1/users/${user.id}`);
      expect(r.status).toBe(200);
    }
    const patched = await send(ec, "PATCH", `/v1/users/${users[0]!.id}`, { lastName: "Full" });
    expect(patched.status).toBe(200);
    expect((await send(ec, "GET", `/v1/users/${users[0]!.id}`)).json.lastName).toBe("Full");
    const stats = (await send(ec, "GET", "/_edgecache/stats", undefined, AUTH)).json;
    const sqlite = stats.tiers.find((t: { name: string }) => t.name === "sqlite");
    expect(sqlite.errors).toBeGreaterThan(0);
    expect(Object.values(sqlite.failing).join()).toMatch(/SQLITE_FULL|SQLITE_IOERR/);
    const health = await send(ec, "GET", "/_edgecache/health");
    expect(health.status).toBe(200);
    expect(health.json.status).toBe("degraded");
    expect(health.json.checks.tiers).toMatchObject({ ok: true, degraded: ["sqlite"] });
    expect(health.json.checks.tiers.code).toMatch(/SQLITE_FULL|SQLITE_IOERR/);
    expect(lines.some((l) => /\[sqlite\] set failed/.test(l))).toBe(true);
    // Room again: the next writes succeed and the tier is no longer failing.
    for (const f of readdirSync(at)) if (f.startsWith("filler")) rmSync(join(at, f));
    await send(ec, "PATCH", `/v1/users/${users[0]!.id}`, { lastName: "Room" });
    await send(ec, "GET", `/v1/users?id=${users[1]!.id}`);
    const after = (await send(ec, "GET", "/_edgecache/stats", undefined, AUTH)).json.tiers[1];
    expect(after.failing).toBeUndefined();
    expect((await send(ec, "GET", "/_edgecache/health")).json.status).toBe("ok");
    fill(at);
    closed = true;
    await ec.close();
  });
});
