/**
 * edgecache/sql: raw SQL on libSQL, better-sqlite3, postgres.js, node-postgres or D1, cached with the same registration
 * and change capture as the Drizzle adapter. See docs/guides/sql.md.
 *
 * @example
 * import { sqlCache } from "edgecache/sql";
 * import { memoryStore } from "edgecache/stores/memory";
 * const sql = sqlCache({ client, tiers: [memoryStore()] });
 * await sql.query("select * from users where id = ?", [1]);
 */

export type { SqlResult, SqlRow } from "../database/client.ts";
export { SqlCache, type SqlCacheOptions, type SqlCacheStats, sqlCache } from "./cache.ts";
