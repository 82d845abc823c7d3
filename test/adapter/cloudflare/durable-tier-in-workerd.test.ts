import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MIN_PRECOMPUTE_MS } from "../../../src/adapter/cloudflare/cache-tier-object.ts";
import { shardOf } from "../../../src/stores/durable-object.ts";
import { until } from "../../helpers/cluster.ts";
import { bundle, COMPATIBILITY_DATE } from "../../helpers/workerd.ts";

/**
 * The Durable Object tier between isolates, inside workerd: two Workers (two isolates, each
 * with its own memory and the Cache API tier), one change log, one tier (see tier-entry.ts),
 * whose class precomputes `totals` every MIN_PRECOMPUTE_MS on its alarm.
 */
let mf: Miniflare;

/**
 * Workers a and b (their own isolates) with `vars`; the objects are a's classes. `stderr`
 * gets what workerd writes there.
 */
async function deployment(
  vars: Record<string, string> = {},
  stderr?: (text: string) => void,
  /** A directory the objects' storage persists in, across deployments. */
  persist?: string,
): Promise<Miniflare> {
  const script = await bundle(new URL("./tier-entry.ts", import.meta.url));
  const worker = (name: string) => ({
    name,
    modules: true,
    script,
    compatibilityDate: COMPATIBILITY_DATE,
    bindings: { NAME: name, ...vars },
    durableObjects: {
      CHANGE_LOG: { className: "ChangeLogObject", scriptName: "a", useSQLite: true },
      CACHE_TIER: { className: "CacheTierObject", scriptName: "a", useSQLite: true },
    },
  });
  const made = new Miniflare({
    workers: [worker("a"), worker("b")],
    ...(persist && { durableObjectsPersist: persist }),
    ...(stderr && {
      handleRuntimeStdio: (out: Readable, err: Readable) => {
        out.resume();
        err.on("data", (chunk: Buffer) => stderr(chunk.toString()));
      },
    }),
  });
  await made.ready;
  return made;
}

beforeAll(async () => {
  mf = await deployment();
}, 60_000);

afterAll(async () => {
  await mf?.dispose();
});

async function ask<T>(isolate: string, path: string, on = mf): Promise<T> {
  const worker = (await on.getWorker(isolate)) as unknown as { fetch: typeof fetch };
  const res = await worker.fetch(`http://tier${path}`);
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}
const totals = async (isolate: string, on = mf) =>
  (await ask<{ value: { run: number } | null }>(isolate, "/get?key=totals", on)).value?.run ?? 0;
type Stats = {
  loads: number;
  refused: number;
  tiers: { name: string; hits: number }[];
};
const tierHits = (stats: Stats) => stats.tiers.find((t) => t.name === "durable-object")!.hits;

describe("the Durable Object tier's precompute", () => {
  it("runs on the object's alarm every MIN_PRECOMPUTE_MS, far below cron's minute, with no cron trigger", async () => {
    // The first request of an isolate with CACHE_TIER bound arms the alarm.
    await until(async () => (await totals("a")) >= 1, 5000);
    const first = await totals("a");
    const started = Date.now();
    await until(async () => (await totals("a")) >= first + 2, 4 * MIN_PRECOMPUTE_MS);
    // Two more runs took about two intervals: not a minute.
    expect(Date.now() - started).toBeLessThan(4 * MIN_PRECOMPUTE_MS);
    const stats = await ask<{ every: number; runs: number; failures: number }>("a", "/precompute");
    expect(stats).toMatchObject({ every: MIN_PRECOMPUTE_MS, failures: 0 });
    expect(stats.runs).toBeGreaterThanOrEqual(first + 2);
  });

  it("every isolate reads the newest run at once: its memory copy goes at the run's log record", async () => {
    // a's memory holds a run; reads on both sides of b's agree, so b read the same one.
    let agreed = false;
    for (let i = 0; i < 10 && !agreed; i++) {
      const before = await totals("a");
      const other = await totals("b");
      const after = await totals("a");
      if (before === after) {
        expect(other).toBe(before);
        agreed = true;
      }
    }
    expect(agreed).toBe(true);
    // The entries live a minute, yet the next run replaces a's memory copy within an interval.
    const held = await totals("a");
    await until(async () => (await totals("a")) > held, 2 * MIN_PRECOMPUTE_MS + 500);
  });
});

describe("reads of the Durable Object tier", () => {
  it("one isolate's load is another isolate's hit from the tier, without a load of its own", async () => {
    const loaded = await ask<{ value: unknown }>("a", "/load?key=shared");
    const before = await ask<Stats>("b", "/stats");
    const read = await ask<{ value: unknown }>("b", "/load?key=shared");
    const after = await ask<Stats>("b", "/stats");
    expect(read.value).toEqual(loaded.value);
    expect(after.loads).toBe(before.loads);
    expect(tierHits(after)).toBe(tierHits(before) + 1);
  });

  it("a copy an invalidation's delete never reached is refused against the log, not served", async () => {
    const old = await ask<{ value: { by: string } }>("a", "/load?key=k");
    expect(old.value.by).toBe("a");
    // b sets k through a cache without the tier: the log has the change, the tier keeps the old copy.
    await ask("b", "/set-around?key=k");
    const before = await ask<Stats>("a", "/stats");
    const read = await ask<{ value: unknown }>("a", "/load?key=k");
    const after = await ask<Stats>("a", "/stats");
    expect(read.value).not.toEqual(old.value);
    expect(after.refused).toBe(before.refused + 1);
    expect(after.loads).toBe(before.loads + 1);
  });
});

describe("EDGECACHE_TIER_SHARDS", () => {
  it("sets the shard count once for the Worker and the precompute: the precomputed value is found", async () => {
    // With 3 shards `totals` lives in shard 1: had the object kept its default of one shard,
    // its run would land in shard 0, where the Worker never looks.
    expect(shardOf("totals", 3)).not.toBe(0);
    const sharded = await deployment({ EDGECACHE_TIER_SHARDS: "3" });
    try {
      await until(async () => (await totals("b", sharded)) >= 1, 5000);
      const stats = await ask<Stats>("b", "/stats", sharded);
      expect(tierHits(stats)).toBeGreaterThanOrEqual(1);
    } finally {
      await sharded.dispose();
    }
  });

  it("refuses a count out of range with an error naming the variable", async () => {
    const bad = await deployment({ EDGECACHE_TIER_SHARDS: "0" });
    try {
      await expect(ask("a", "/get?key=x", bad)).rejects.toThrow(/EDGECACHE_TIER_SHARDS.*1 to 256/);
    } finally {
      await bad.dispose();
    }
  });
});

describe("the precompute's counters", () => {
  it("outlive the object: a restart between runs keeps runs and the last run", async () => {
    type Counters = { runs: number; lastRunAt: number | null; every: number };
    const dir = mkdtempSync(join(tmpdir(), "edgecache-precompute-"));
    let made = await deployment({}, undefined, dir);
    try {
      await ask("a", "/get?key=x", made);
      await until(async () => (await ask<Counters>("a", "/precompute", made)).runs >= 2, 10_000);
      const before = await ask<Counters>("a", "/precompute", made);
      await made.dispose();
      // A new runtime: every object starts anew, as one evicted between two runs.
      made = await deployment({}, undefined, dir);
      const after = await ask<Counters>("a", "/precompute", made);
      expect(after.runs).toBeGreaterThanOrEqual(before.runs);
      expect(after.lastRunAt).toBeGreaterThanOrEqual(before.lastRunAt!);
      expect(after.every).toBe(MIN_PRECOMPUTE_MS);
    } finally {
      await made.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the objects' log lines", () => {
  it("follow EDGECACHE_LOG_LEVEL: a failing precompute is logged at warn, not at silent", async () => {
    const failures = async (level: string) => {
      let stderr = "";
      const vars = { FAIL_PRECOMPUTE: "1", EDGECACHE_LOG_LEVEL: level };
      const made = await deployment(vars, (text) => {
        stderr += text;
      });
      try {
        await ask("a", "/get?key=x", made);
        await until(
          async () => (await ask<{ failures: number }>("a", "/precompute", made)).failures >= 2,
          5000,
        );
        return stderr;
      } finally {
        await made.dispose();
      }
    };
    expect(await failures("warn")).toContain("the precompute failed on purpose");
    expect(await failures("silent")).not.toContain("the precompute failed on purpose");
  });
});
