import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker } from "../helpers/workerd.ts";
import { FOLLOWING_BINDINGS, post } from "../query-cache/d1-follow.ts";
import { plain, random, write } from "../query-cache/group-shapes.ts";

// Group patches' shapes (issue 71) on D1, inside workerd: edgecache/sql on a D1 binding
// following D1 change capture, with the joined and aggregated reads and the writes of
// test/query-cache/group-patches.test.ts (SQLite, PostgreSQL). Random writes, half through
// the entry and half straight into D1; after each, every cached read equals D1's answer.
// Group patches are off on D1: their statement, run once a write's record is applied, was
// seen never to settle here, holding every reload queued behind it. The entry reports
// none, and each write's background work is done before its answer.

let mf: Miniflare;

beforeAll(async () => {
  mf = await startWorker(new URL("./d1-groups-entry.ts", import.meta.url), FOLLOWING_BINDINGS);
  await post(mf, "/setup");
}, 60_000);

afterAll(async () => {
  await mf?.dispose();
});

type Read = { text: string; params: unknown[]; cached: unknown[]; fresh: unknown[] };

describe("group patches on D1 (workerd)", () => {
  it("random writes through and around the entry: every cached read equals D1's (group patches off)", async () => {
    const readAll = async (step: number) => {
      for (const r of (await post(mf, "/read", { step })) as Read[]) {
        expect(plain(r.cached), `${r.text} ${JSON.stringify(r.params)} after step ${step}`).toEqual(
          plain(r.fresh),
        );
      }
    };
    const d1 = { p: () => "?", t: (n: string) => n };
    const next = random(71);
    await readAll(0);
    await readAll(0);
    for (let step = 1; step <= 40; step++) {
      const [text, params] = write(d1, next, step);
      const around = step % 2 === 1;
      const reply = (await post(mf, "/write", { text, params, around })) as { caughtUp?: boolean };
      if (around) expect(reply.caughtUp).toBe(true);
      await readAll(step);
      await readAll(step);
    }
    const stats = (await post(mf, "/stats")) as {
      writes: string;
      hits: number;
      groupPatches: { patched: number; statements: number };
    };
    expect(stats.writes).toBe("capture");
    expect(stats.groupPatches).toMatchObject({ patched: 0, statements: 0 });
    expect(stats.hits).toBeGreaterThan(0);
  }, 120_000);
});
