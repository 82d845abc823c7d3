import type { drizzle as drizzleType } from "drizzle-orm/postgres-js";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import {
  drizzleCache,
  type EdgecacheDrizzleCache,
  withTransactions,
} from "../../src/drizzle/index.ts";
import { postgresSource } from "../../src/sources/postgres.ts";
import { memoryStore } from "../../src/stores/memory.ts";

type Db = ReturnType<typeof drizzleType>;

/** A schema of its own with capture installed, and a Drizzle database whose cache follows it. */
export interface FollowingPostgres {
  schema: string;
  /** A client for writes made around Drizzle (and the setup). */
  admin: postgres.Sql;
  cache: EdgecacheDrizzleCache;
  /** Through the cache. */
  db: Db;
  /** Uncached, on `admin`: what a read must equal. */
  fresh: Db;
  close(): Promise<void>;
}

/**
 * Creates schema `schema` with `ddl(schema)`, installs capture there, and opens a Drizzle
 * database over postgres.js with a cache, once it follows capture (`probe` queries one of
 * the tables: an installation is followed once the application reads it). `prepare` sees
 * the cache before anything is applied to it.
 */
export async function followingPostgres(
  url: string,
  schema: string,
  ddl: (schema: string) => string,
  probe: (db: Db) => Promise<unknown>,
  prepare?: (cache: EdgecacheDrizzleCache) => void,
): Promise<FollowingPostgres> {
  const admin = postgres(url, { max: 2, onnotice: () => {} });
  await admin.unsafe(`create schema ${schema}`);
  await admin.unsafe(ddl(schema));
  const source = await postgresSource({ url, schema, max: 1 });
  await source.installCapture();
  await source.close();
  const client = postgres(url, { max: 4, onnotice: () => {} });
  const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
  prepare?.(cache);
  const db = withTransactions(drizzle(client, { cache })) as unknown as Db;
  await probe(db);
  const until = Date.now() + 10_000;
  while (cache.getStats().writes !== "capture") {
    if (Date.now() > until) throw new Error("capture not followed");
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    schema,
    admin,
    cache,
    db,
    fresh: drizzle(admin),
    async close() {
      await cache.close();
      await client.end();
      await admin.unsafe(`drop schema if exists ${schema} cascade`);
      await admin.unsafe(`drop schema if exists edgecache_${schema} cascade`);
      await admin.end();
    },
  };
}
