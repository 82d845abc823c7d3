import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker } from "../helpers/workerd.ts";

let mf: Miniflare;

beforeAll(async () => {
  mf = await startWorker(new URL("./d1-entry.ts", import.meta.url), { d1Databases: ["DB"] });
}, 60_000);

afterAll(async () => {
  await mf?.dispose();
});

describe("edgecache/sql on D1 inside workerd (table level)", () => {
  it("caches reads, execute empties the reads of its table only, every read equals D1", async () => {
    const res = await mf.dispatchFetch("http://localhost/");
    const body = (await res.json()) as Record<string, unknown>;
    expect(body.first).toEqual([{ id: 1, name: "Ann" }]);
    expect(body.hit).toEqual([{ id: 1, name: "Ann" }]);
    expect(body.written).toMatchObject({ rowsAffected: 1 });
    expect(body.afterUpdate).toEqual([{ id: 1, name: "Cy" }]);
    // user1 missed twice (before and after the update), post1 once then hit.
    expect(body.before).toMatchObject({ hits: 2, misses: 3, writes: "tables", faults: 0 });
    expect(body.mismatches).toBe(0);
    expect((body.stats as { hits: number }).hits).toBeGreaterThan(2);
  }, 30_000);
});
