import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker } from "../helpers/workerd.ts";

let mf: Miniflare;

beforeAll(async () => {
  mf = await startWorker(new URL("./d1-entry.ts", import.meta.url), {
    d1Databases: ["DB"],
  });
}, 60_000);

afterAll(async () => {
  await mf?.dispose();
});

describe("edgecache/drizzle on D1 inside workerd", () => {
  it("caches selects, returns dates as Dates from a hit, invalidates on update and by table", async () => {
    const res = await mf.dispatchFetch("http://localhost/");
    const body = (await res.json()) as Record<string, unknown>;
    const ann = [{ id: 1, name: "Ann", at: new Date(1700000000123).toISOString() }];
    expect(body.first).toEqual(ann);
    expect(body.hit).toEqual(ann);
    expect(body.hitIsDate).toBe(true);
    expect(body.afterUpdate).toEqual([{ ...ann[0], name: "Bea" }]);
    expect(body.afterInvalidate).toEqual([{ ...ann[0], name: "direct" }]);
    expect(body.stats).toMatchObject({ hits: 3, misses: 3, faults: 0, uncacheable: 0 });
    // No change log fed by a capture drain (no Durable Object): table level, and it says so.
    expect(body.stats).toMatchObject({ writes: "tables" });
    expect(body.stats).toMatchObject({ registrations: { exact: 3, widened: 0, table: 0 } });
  }, 30_000);
});
