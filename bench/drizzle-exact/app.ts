/**
 * One caching mode's Drizzle application over a database, and what a run reads of its
 * cache. Imports nothing of Node's but AsyncLocalStorage (statements.ts), so the runs in
 * this process and the D1 Worker (d1-entry.ts, `nodejs_als`) open it alike.
 */
import { eq } from "drizzle-orm";
import type { Cache } from "drizzle-orm/cache/core";
import type { ChangeLog } from "../../src/core/change-log/contract.ts";
import {
  type DrizzleCacheStats,
  drizzleCache,
  type EdgecacheDrizzleCache,
  withTransactions,
} from "../../src/drizzle/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import type { Driver } from "./databases.ts";
import type { AnyDb, DrizzleTables } from "./queries.ts";
import type { StatementCounter } from "./statements.ts";
import { TableKeyedCache } from "./table-keyed-cache.ts";

/**
 * `capture`: edgecache/drizzle following change capture (`withTransactions(db)`);
 * `tables`: edgecache/drizzle at table level (`withTransactions(db, { capture: false })`);
 * `table-keyed`: the Upstash-style model (TableKeyedCache).
 */
export const MODES = ["capture", "tables", "table-keyed"] as const;
export type Mode = (typeof MODES)[number];

/** What the application needs of its database. */
export interface AppDatabase extends DrizzleTables {
  driver: Driver;
  /** A Drizzle database on the application's client, with `cache`; `counter` counts its statements. */
  app(cache: Cache | undefined, counter: StatementCounter): AnyDb;
  /** Installs change capture on both tables, as `npx edgecache capture install` does. */
  installCapture(): Promise<void>;
}

export interface App {
  db: AnyDb;
  entries(): number;
  /** Cached entries removed by writes so far. */
  removed(): number;
  /** Resolves once the writes committed so far reach the cache (capture), at once otherwise. */
  catchUp(): Promise<void>;
  /** edgecache's own figures (undefined for the Upstash-style cache). */
  stats(): DrizzleCacheStats | undefined;
  /** Resolves once the cache's background work (reloads of hot selects) has settled. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

/** `log`: the change log edgecache's cache follows (on Workers, the Durable Object's). */
export async function openApp(
  db: AppDatabase,
  mode: Mode,
  counter: StatementCounter,
  log?: ChangeLog,
): Promise<App> {
  if (mode === "table-keyed") {
    const cache = new TableKeyedCache();
    return {
      db: db.app(cache, counter),
      entries: () => cache.entries(),
      removed: () => cache.removed,
      catchUp: async () => {},
      stats: () => undefined,
      idle: async () => {},
      close: async () => {},
    };
  }
  if (mode === "capture") await db.installCapture();
  const cache: EdgecacheDrizzleCache = drizzleCache({
    tiers: [memoryStore()],
    strategy: "all",
    ...(log && { log }),
  });
  const app = withTransactions(db.app(cache, counter), { capture: mode === "capture" });
  if (mode === "capture") {
    // An installation is followed once the application queries one of its tables.
    await app.select().from(db.users).where(eq(db.users.id, ""));
    await app.select().from(db.orders).where(eq(db.orders.id, ""));
    const until = Date.now() + 15_000;
    while ((cache.getStats().capture?.tables.length ?? 0) < 2) {
      if (Date.now() > until) throw new Error(`[bench] ${db.driver}: capture not followed`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return {
    db: app,
    entries: () => cache.getStats().keys,
    removed: () => cache.engine.stats().invalidations,
    catchUp: async () => {
      if (mode === "capture" && !(await cache.catchUp())) {
        throw new Error("[bench] capture could not catch up");
      }
    },
    stats: () => cache.getStats(),
    idle: () => cache.engine.drain(),
    close: () => cache.close(),
  };
}
