import postgres from "postgres";
import { postgresSource } from "../../src/sources/postgres.ts";

/**
 * Resolves once a query cache (raw SQL, Kysely's, Prisma's) follows capture: a bound for the
 * test, not a measurement.
 */
export async function following(cache: { getStats(): { writes: string } }): Promise<void> {
  const until = Date.now() + 10_000;
  while (cache.getStats().writes !== "capture") {
    if (Date.now() > until) throw new Error("capture not followed");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A PostgreSQL schema of its own, made by `ddl`, with capture installed; `drop` removes both. */
export interface CapturedSchema {
  schema: string;
  /** A postgres.js client for the setup and the writes made around the cache. */
  admin: postgres.Sql;
  drop(): Promise<void>;
}

/** Creates schema `<prefix>_<pid>_<random>` with `ddl(schema)` and installs capture there. */
export async function capturedSchema(
  url: string,
  prefix: string,
  ddl: (schema: string) => string,
): Promise<CapturedSchema> {
  const schema = `${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create schema ${schema}; ${ddl(schema)}`);
  const source = await postgresSource({ url, schema, max: 1 });
  await source.installCapture();
  await source.close();
  return {
    schema,
    admin,
    async drop() {
      await admin.unsafe(`drop schema if exists ${schema} cascade`);
      await admin.unsafe(`drop schema if exists edgecache_${schema} cascade`);
      await admin.end();
    },
  };
}
