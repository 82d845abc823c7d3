/**
 * edgecache/drizzle: a Drizzle ORM cache on edgecache's engine. drizzle-orm is an optional
 * peer dependency: this module imports only its types.
 *
 * @example
 * import { drizzle } from "drizzle-orm/libsql";
 * import { drizzleCache, withTransactions } from "edgecache/drizzle";
 * import { memoryStore } from "edgecache/stores/memory";
 * const db = withTransactions(
 *   drizzle(client, { cache: drizzleCache({ tiers: [memoryStore()], strategy: "all" }) }),
 * );
 * await db.select().from(users).where(eq(users.id, 1)); // cached
 * await db.update(users).set({ name: "Jane" }).where(eq(users.id, 1)); // invalidates
 */
export {
  type DrizzleCacheOptions,
  type DrizzleCacheStats,
  drizzleCache,
  EdgecacheDrizzleCache,
  type InvalidateOptions,
  ttlOf,
} from "./cache.ts";
export { type TableRef, tableName } from "./tables.ts";
export { type WithTransactionsOptions, withTransactions } from "./transactions.ts";
