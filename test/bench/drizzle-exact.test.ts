import { describe, expect, it } from "vitest";
import type { Driver } from "../../bench/drizzle-exact/databases.ts";
import { type ExactOptions, type Mode, runDrizzleExact } from "../../bench/drizzle-exact/run.ts";
import { requirePostgres } from "../helpers/services.ts";

const pg = await requirePostgres();

/**
 * bench:drizzle-exact end to end, small: the workload's sequence through Drizzle with every
 * other write around the ORM. edgecache following capture reads nothing stale; the
 * Upstash-style cache, which never hears of the writes around it, does, so the oracle is
 * awake.
 */
const tiny = (drivers: Driver[], modes: Mode[]): ExactOptions => ({
  users: 150,
  orders: 600,
  requests: 800,
  writeRatios: [0.05],
  connections: 4,
  seed: 3,
  drivers,
  modes,
  pg: pg.url,
  aroundEvery: 2,
  pgCollateC: true,
});

function expectExact(records: Awaited<ReturnType<typeof runDrizzleExact>>): void {
  const capture = records.find((r) => r.mode === "capture")!;
  expect(capture.staleReads).toBe(0);
  expect(capture.errors).toBe(0);
  expect(capture.reads).toBeGreaterThan(0);
  expect(capture.aroundWrites).toBeGreaterThan(0);
  expect(capture.writes).toBeGreaterThan(capture.aroundWrites);
  expect(capture.hitRate).toBeGreaterThan(0);
  expect(capture.dbQueriesPerRequest).toBeGreaterThan(0);
  expect(capture.registrations!.exact).toBeGreaterThan(0);
}

describe("drizzle-exact benchmark (smoke)", () => {
  it.each([
    ["libSQL", "libsql"],
    ["D1 in workerd", "d1"],
  ] as const)(
    "%s: no stale read following capture; the Upstash-style cache serves writes around the ORM stale",
    async (_, driver) => {
      const records = await runDrizzleExact(tiny([driver], ["capture", "table-keyed"]));
      expectExact(records);
      const keyed = records.find((r) => r.mode === "table-keyed")!;
      expect(keyed.staleReads).toBeGreaterThan(0);
      expect(keyed.requests).toBe(records[0]!.requests);
    },
    180_000,
  );
});

describe("orm-exact benchmark on D1 (smoke)", () => {
  it("Kysely and Prisma in workerd: no stale read following capture, writes around the ORM included; results patched in place", async () => {
    const records = await runDrizzleExact({
      ...tiny(["d1"], ["capture"]),
      orms: ["kysely", "prisma"],
      requests: 400,
    });
    expect(records.map((r) => r.orm)).toEqual(["kysely", "prisma"]);
    for (const r of records) expectExact([r]);
    // The log's object orders what it drains; Prisma's results are typed again when patched.
    for (const r of records) expect(r.patched).toBeGreaterThan(0);
  }, 180_000);
});

pg.describe("drizzle-exact benchmark on postgres.js (smoke)", () => {
  it("no stale read following capture", async () => {
    expectExact(await runDrizzleExact(tiny(["postgres-js"], ["capture"])));
  }, 60_000);
});
