import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { linkSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { lockFile } from "../../../src/adapter/node/file-lock.ts";
import { EdgecacheError } from "../../../src/core/errors.ts";
import { sqliteStore } from "../../../src/stores/sqlite.ts";
import { reply, tempDir } from "../../app/harness.ts";
import { CLI } from "../../helpers/built-cli.ts";
import { waitForLine } from "../../helpers/child.ts";
import { storedEntry } from "../../helpers/entries.ts";

// One process per cache file: a second one is refused with the first one's pid, and the
// first keeps its files and serves correctly.

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function dir(): string {
  const d = tempDir("edgecache-lock-");
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function env(): NodeJS.ProcessEnv {
  const { PORT: _p, EDGECACHE_ADMIN_TOKEN: _t, REDIS_URL: _r, ...rest } = process.env;
  for (const name of Object.keys(rest)) if (/^npm_/i.test(name)) delete rest[name];
  return rest;
}

function serve(cwd: string, ...args: string[]): ChildProcess {
  const child = spawn(process.execPath, [CLI, "serve", "--port", "0", ...args], {
    cwd,
    env: env(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  cleanup.push(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once("exit", done));
    child.kill("SIGTERM");
    await exited;
  });
  return child;
}

/** Waits for the exit; resolves with the code and what the process wrote to stderr. */
function exit(child: ChildProcess): Promise<{ code: number | null; stderr: string }> {
  let stderr = "";
  child.stderr!.on("data", (chunk) => {
    stderr += chunk;
  });
  return new Promise((done) => child.once("exit", (code) => done({ code, stderr })));
}

const json = async (url: string, init?: RequestInit) => {
  const r = await reply(await fetch(url, init));
  return { status: r.status, cache: r.headers.get("cache-status"), body: r.json };
};

describe("one process per cache file", () => {
  it("a second `edgecache serve` on the same files exits 1 with one line naming the first's pid and the file; the first keeps its entries and serves writes correctly", async () => {
    const cwd = dir();
    const first = serve(cwd);
    const [, url] = await waitForLine(first, /data API:\s+(http:\/\/[^/\s]+)\/v1\//);
    const user = (await json(`${url}/v1/users?limit=1`)).body.data[0];
    const item = `${url}/v1/users/${user.id}`;
    await json(item);
    expect((await json(item)).cache).toMatch(/hit/);
    const stats = (await json(`${url}/_edgecache/stats`)).body;

    const second = serve(cwd);
    const outcome = await Promise.race([
      exit(second),
      waitForLine(second, /data API:/).then(() => ({ code: "started", stderr: "" })),
    ]);
    const { code, stderr } = outcome;
    expect(code).toBe(1);
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`pid ${first.pid}`);
    expect(lines[0]).toContain(join(cwd, "edgecache.cache.db"));
    expect(lines[0]).toContain("--redis");

    // Nothing of the first one's was touched: its file still holds what it stored.
    expect((await json(`${url}/_edgecache/stats`)).body.tiers[1].entries).toBe(
      stats.tiers[1].entries,
    );
    const patched = await json(item, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ lastName: "Locked" }),
    });
    expect(patched.status).toBe(200);
    expect((await json(item)).body.lastName).toBe("Locked");
  }, 60_000);

  it("a second process on another cache file over the same database starts", async () => {
    const cwd = dir();
    const first = serve(cwd);
    await waitForLine(first, /data API:/);
    const second = serve(cwd, "--cache-file", "other.cache.db");
    await waitForLine(second, /data API:/);
  }, 60_000);

  it("a lock left by a process that died (kill -9) is taken over", async () => {
    const cwd = dir();
    const first = serve(cwd);
    await waitForLine(first, /data API:/);
    const died = new Promise((done) => first.once("exit", done));
    first.kill("SIGKILL");
    await died;
    expect(readFileSync(join(cwd, "edgecache.cache.db.lock"), "utf8")).toContain(String(first.pid));
    const second = serve(cwd);
    await waitForLine(second, /data API:/);
  }, 60_000);
});

describe("one process per cache file, under any of its names", () => {
  it("a second `edgecache serve` on a hard link of the first one's cache file exits 1 with one line; the first's file stays intact", async () => {
    const cwd = dir();
    const first = serve(cwd);
    const [, url] = await waitForLine(first, /data API:\s+(http:\/\/[^/\s]+)\/v1\//);
    const users = (await json(`${url}/v1/users?limit=20`)).body.data as { id: number }[];
    for (const u of users) await json(`${url}/v1/users/${u.id}`);
    linkSync(join(cwd, "edgecache.cache.db"), join(cwd, "hard.cache.db"));
    symlinkSync(join(cwd, "edgecache.cache.db"), join(cwd, "soft.cache.db"));
    for (const name of ["hard.cache.db", "soft.cache.db"]) {
      const second = serve(cwd, "--cache-file", name);
      const outcome = await Promise.race([
        exit(second),
        waitForLine(second, /data API:/).then(() => ({ code: "started", stderr: "" })),
      ]);
      expect(outcome.code).toBe(1);
      const lines = outcome.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/is in use by another edgecache/);
      expect(lines[0]).toContain(name);
    }
    // The first one serves on, from its file: every entry it stored is there and a hit.
    for (const u of users) expect((await json(`${url}/v1/users/${u.id}`)).cache).toMatch(/hit/);
    const stats = (await json(`${url}/_edgecache/stats`)).body;
    expect(stats.tiers[1].entries).toBeGreaterThanOrEqual(users.length);
    expect(stats.tiers[1].errors).toBe(0);
  }, 60_000);

  it.each([
    ["a hard link", (file: string, other: string) => linkSync(file, other)],
    ["a symlink", (file: string, other: string) => symlinkSync(file, other)],
  ])(
    "a second exclusive sqliteStore on %s of the file is refused with E_IN_USE; the first's entries stay",
    async (_, link) => {
      const d = dir();
      const file = join(d, "a.cache.db");
      const first = sqliteStore({ path: file, exclusive: true, repair: true });
      await first.set("k", storedEntry({ etag: '"kept"' }), 60_000);
      link(file, join(d, "b.cache.db"));
      expect(() =>
        sqliteStore({ path: join(d, "b.cache.db"), exclusive: true, repair: true }),
      ).toThrow(expect.objectContaining({ code: "E_IN_USE" }));
      await first.set("k2", storedEntry({ etag: '"also"' }), 60_000);
      expect((await first.get("k"))?.etag).toBe('"kept"');
      expect(first.size().entries).toBe(2);
      await first.close();
      const after = sqliteStore({ path: join(d, "b.cache.db"), exclusive: true });
      expect((await after.get("k2"))?.etag).toBe('"also"');
      await after.close();
    },
  );
});

describe("lockFile", () => {
  it("refuses a second lock in the same process, and allows one after release", () => {
    const file = join(dir(), "a.db");
    const lock = lockFile(file);
    expect(() => lockFile(file)).toThrow(EdgecacheError);
    expect(() => lockFile(file)).toThrow(
      /in use by another edgecache \(this process; lock .*a\.db\.lock\)/,
    );
    lock.release();
    lockFile(file).release();
  });

  it.each([
    ["a pid that is gone", () => ({ pid: deadPid() })],
    [
      "this process's own pid, which it does not hold (a restarted container)",
      () => ({ pid: process.pid }),
    ],
    ["a live pid that started at another time (reused)", () => ({ pid: process.ppid, start: "1" })],
  ])("takes over a lock left by %s", (_, holder) => {
    const file = join(dir(), "b.db");
    writeFileSync(`${file}.lock`, JSON.stringify(holder()));
    const lock = lockFile(file);
    expect(JSON.parse(readFileSync(`${file}.lock`, "utf8")).pid).toBe(process.pid);
    lock.release();
  });

  it("takes over a lock file that is not one (cut short, or garbage)", () => {
    const file = join(dir(), "c.db");
    writeFileSync(`${file}.lock`, '{"pi');
    lockFile(file).release();
  });

  it("refuses a lock a live process holds, naming its pid", () => {
    const file = join(dir(), "d.db");
    writeFileSync(`${file}.lock`, JSON.stringify({ pid: process.ppid }));
    expect(() => lockFile(file)).toThrow(new RegExp(`pid ${process.ppid}`));
  });

  /** Two names of one file in `d`: the one locked first, and the other. */
  const linkToFile = (d: string, made: boolean): [string, string] => {
    if (made) writeFileSync(join(d, "f.db"), "");
    symlinkSync(join(d, "f.db"), join(d, "link.db"));
    return [join(d, "f.db"), join(d, "link.db")];
  };
  it.each([
    ["a symlink to the file", (d: string) => linkToFile(d, true)],
    ["a symlink to the file not made yet", (d: string) => linkToFile(d, false)],
    [
      "a symlinked directory, the file not made yet",
      (d: string): [string, string] => {
        mkdirSync(join(d, "real"));
        symlinkSync(join(d, "real"), join(d, "linked"));
        return [join(d, "real", "f.db"), join(d, "linked", "f.db")];
      },
    ],
  ])("refuses the same file reached through %s", (_, names) => {
    const [file, other] = names(dir());
    const lock = lockFile(file);
    expect(() => lockFile(other)).toThrow(/in use by another edgecache/);
    lock.release();
    lockFile(other).release();
  });

  it("release removes only its own lock", () => {
    const file = join(dir(), "e.db");
    const lock = lockFile(file);
    writeFileSync(`${file}.lock`, JSON.stringify({ pid: process.ppid }));
    lock.release();
    expect(readFileSync(`${file}.lock`, "utf8")).toContain(String(process.ppid));
  });
});

/** The pid of a process that has exited. */
function deadPid(): number {
  return spawnSync(process.execPath, ["-e", "0"]).pid!;
}
