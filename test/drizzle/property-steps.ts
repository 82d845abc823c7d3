import { expect } from "vitest";
import { createCache } from "../../src/core/cache/index.ts";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import type { AnyDb } from "./drivers.ts";

/** What the property tests of registrations add up over their runs. */
export type Totals = Record<
  "reads" | "hits" | "tableLevelHits" | "exact" | "widened" | "table" | "patched",
  number
>;
type Cache = ReturnType<typeof drizzleCache>;

/**
 * Runs `steps` on a cache registering by shapes and on one that drops whole tables on each
 * write (the baseline): every read of either equals a fresh query. Adds to `totals`, and
 * the fallback reasons to `reasons` when given.
 */
export async function checkSteps<W>(
  h: { db(cache?: Cache): AnyDb },
  fresh: AnyDb,
  steps: ({ read: number } | { write: W })[],
  applyTo: (caches: Cache[], w: W) => Promise<void>,
  select: (db: AnyDb, read: number) => Promise<unknown>,
  totals: Totals,
  reasons?: Record<string, number>,
): Promise<void> {
  const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
  const db = withTransactions(h.db(cache));
  const tableLevel = drizzleCache({
    cache: createCache({ tiers: [memoryStore()], policy: "table" }),
    strategy: "all",
  });
  const tableDb = withTransactions(h.db(tableLevel));
  try {
    await run();
  } finally {
    // Each cache reads the catalog (and follows capture) on a timer until closed: a property
    // run makes two per case, hundreds in all, which left open load the database and this
    // process more with every case.
    await Promise.all([cache.close(), tableLevel.close()]);
  }

  async function run() {
    for (const s of steps) {
      if ("write" in s) {
        await applyTo([cache, tableLevel], s.write);
        continue;
      }
      const want = await select(fresh, s.read);
      expect(await select(db, s.read), `read ${s.read}`).toEqual(want);
      expect(await select(tableDb, s.read)).toEqual(want);
      totals.reads++;
    }
    const stats = cache.getStats();
    totals.hits += stats.hits;
    totals.tableLevelHits += tableLevel.getStats().hits;
    // A write drops a subset of what dropping its table does: never fewer hits.
    expect(stats.hits).toBeGreaterThanOrEqual(tableLevel.getStats().hits);
    totals.exact += stats.registrations.exact;
    totals.widened += stats.registrations.widened;
    totals.table += stats.registrations.table;
    totals.patched += stats.patched;
    for (const [k, n] of Object.entries(stats.registrations.reasons)) {
      if (reasons) reasons[k] = (reasons[k] ?? 0) + n;
    }
  }
}
