import pgLib from "pg";
import postgres from "postgres";
import { demoViews } from "../../src/demo/seed.ts";
import { seedPostgresDemo } from "../../src/demo/seed-postgres.ts";
import { postgresSource } from "../../src/sources/postgres.ts";
import { CASCADE_SQL, CONFORMANCE_SIZE, sourceConformance } from "../../src/testing/index.ts";
import { requirePostgres } from "../helpers/services.ts";

// In CI a PostgreSQL server that cannot be reached fails this file (requirePostgres).
const pg = await requirePostgres();
const { Pool } = pgLib;

pg.describe("PostgreSQL", () => {
  sourceConformance("postgres", async () => {
    // A schema of its own, which the source serves through its `schema` option.
    const schema = `ec_conformance_${process.pid}_${Date.now() % 100_000}`;
    const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    await admin.unsafe(`CREATE SCHEMA ${schema}`);
    const client = postgres(pg.url, {
      max: 4,
      onnotice: () => {},
      connection: { search_path: schema },
    });
    await seedPostgresDemo(client, CONFORMANCE_SIZE);
    for (const sql of CASCADE_SQL) await client.unsafe(sql);
    // A linguistic collation orders "a" < "B" < "é" < "Z"; the source must still compare
    // by code point, as the planner does, whatever the columns declare.
    for (const [table, column] of [
      ["users", "firstName"],
      ["users", "lastName"],
      ["users", "email"],
      ["orders", "status"],
    ]) {
      await client.unsafe(
        `ALTER TABLE ${table} ALTER COLUMN "${column}" TYPE text COLLATE "und-x-icu"`,
      );
    }
    const source = await postgresSource({ sql: client, schema, views: demoViews });
    return {
      source,
      close: async () => {
        await source.close();
        await client.end();
        await admin.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await admin.end();
      },
    };
  });
});

pg.describe("PostgreSQL on node-postgres", () => {
  sourceConformance("postgres (node-postgres Pool)", async () => {
    const schema = `ec_conformance_pg_${process.pid}_${Date.now() % 100_000}`;
    const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    await admin.unsafe(`CREATE SCHEMA ${schema}`);
    // The demo's seed is written for postgres.js: it seeds, and the source reads through pg.
    const seeder = postgres(pg.url, {
      max: 1,
      onnotice: () => {},
      connection: { search_path: schema },
    });
    await seedPostgresDemo(seeder, CONFORMANCE_SIZE);
    for (const sql of CASCADE_SQL) await seeder.unsafe(sql);
    await seeder.end();
    const pool = new Pool({
      connectionString: pg.url,
      max: 4,
      options: `-c search_path=${schema}`,
    });
    const source = await postgresSource({ client: pool, schema, views: demoViews });
    return {
      source,
      close: async () => {
        await source.close();
        await pool.end();
        await admin.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await admin.end();
      },
    };
  });
});
