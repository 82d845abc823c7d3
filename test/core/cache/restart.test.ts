import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, expect, it } from "vitest";
import { randomId } from "../../../src/core/random-id.ts";
import { requireRedis } from "../../helpers/services.ts";

const run = promisify(execFile);
const CHILD = join(import.meta.dirname, "..", "fixtures", "restart-child.ts");
const dir = mkdtempSync(join(tmpdir(), "edgecache-restart-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs one step in a new process; what it read, and each tier's hits. */
async function step(args: object): Promise<{ value: { title: string }; hits: number[] }> {
  const { stdout } = await run(process.execPath, ["--import", "tsx", CHILD, JSON.stringify(args)], {
    timeout: 30_000,
  });
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

const redis = await requireRedis();

it("memory + SQLite, the log resumed from the last clean shutdown: a tag invalidated in a new process is not served", async () => {
  const base = { tier: "sqlite", path: join(dir, "cache.db") };
  const first = join(dir, "log-1.json");
  expect((await step({ ...base, step: "load", snapshotOut: first })).value.title).toBe("v1");
  // A new process that only reads is served the entry the first one stored (tier 1 hit):
  // the entry survives a restart, so what follows can fail.
  const control = await step({ ...base, step: "read", snapshotIn: first });
  expect(control).toEqual({ value: { title: "v1" }, hits: [0, 1] });
  // Another new process, whose index has never seen the entry, invalidates its tag, then reads.
  const second = join(dir, "log-2.json");
  const after = await step({
    ...base,
    step: "invalidate-then-read",
    snapshotIn: first,
    snapshotOut: second,
  });
  expect(after.value.title).toBe("v2");
  // And the process after that reads the new value too.
  expect((await step({ ...base, step: "read", snapshotIn: second })).value.title).toBe("v2");
}, 60_000);

it("memory + SQLite, the default log kept in the file: the next process serves what nothing since concerns", async () => {
  const base = { tier: "sqlite", path: join(dir, "kept.db"), defaultLog: true };
  const first = (await step({ ...base, step: "pages" })).value as unknown as { loaded: number[] };
  expect(first.loaded).toEqual([1, 2, 3]);
  // The next process serves all three from the file; the one after invalidates page 2
  // first: the other two are still served, page 2 is loaded again.
  expect(
    ((await step({ ...base, step: "pages" })).value as unknown as typeof first).loaded,
  ).toEqual([]);
  const after = (await step({ ...base, step: "invalidate-page-2" }))
    .value as unknown as typeof first;
  expect(after.loaded).toEqual([2]);
  expect(
    ((await step({ ...base, step: "pages" })).value as unknown as typeof first).loaded,
  ).toEqual([]);
}, 60_000);

it("memory + SQLite, no log kept between processes: a restart never serves an older entry", async () => {
  const base = { tier: "sqlite", path: join(dir, "fresh.db") };
  expect((await step({ ...base, step: "load" })).value.title).toBe("v1");
  expect((await step({ ...base, step: "invalidate-then-read" })).value.title).toBe("v2");
}, 60_000);

redis.describe("restart over Redis", () => {
  it("memory + Redis with the Redis log: a tag invalidated in a new process is not served", async () => {
    const base = { tier: "redis", redis: redis.url, prefix: `test-restart-${randomId()}:` };
    expect((await step({ ...base, step: "load" })).value.title).toBe("v1");
    const control = await step({ ...base, step: "read" });
    expect(control).toEqual({ value: { title: "v1" }, hits: [0, 1] });
    expect((await step({ ...base, step: "invalidate-then-read" })).value.title).toBe("v2");
    expect((await step({ ...base, step: "read" })).value.title).toBe("v2");
  }, 60_000);
});
