/**
 * The workload's database behind Drizzle, on each driver bench:drizzle-exact runs: the
 * demo's users and orders (plus the version column the oracle reads) as Drizzle tables, a
 * fresh copy per run, clients whose statements are counted, and straight SQL on another
 * connection for the writes made around the ORM.
 */
import { execFile } from "node:child_process";
import { copyFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { createClient } from "@libsql/client";
import { sql } from "drizzle-orm";
import type { Cache } from "drizzle-orm/cache/core";
import { drizzle as drizzleLibsql } from "drizzle-orm/libsql";
import {
  doublePrecision,
  integer as pgInteger,
  pgSchema,
  text as pgText,
  timestamp,
} from "drizzle-orm/pg-core";
import { drizzle as drizzlePostgresJs } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { seedPostgresDemo } from "../../src/demo/seed-postgres.ts";
import { postgresSource } from "../../src/sources/postgres.ts";
import { type AnyDb, type DrizzleTables, sqliteTables } from "./queries.ts";
import type { StatementCounter } from "./statements.ts";

/** Drizzle's three (libSQL, postgres.js, D1), and those Kysely and Prisma run on here. */
export const DRIVERS = ["libsql", "postgres-js", "d1", "better-sqlite3", "pg"] as const;
export type Driver = (typeof DRIVERS)[number];

/** A database in this process (libSQL or postgres.js); d1.ts runs D1 inside workerd. */
export interface BenchDatabase extends DrizzleTables {
  driver: "libsql" | "postgres-js";
  /** A Drizzle database on a client of its own, with `cache`; `counter` counts its statements. */
  app(cache: Cache | undefined, counter: StatementCounter): AnyDb;
  /** Straight SQL on another connection (`?` placeholders), counted. */
  around(sql: string, params: unknown[], counter: StatementCounter): Promise<void>;
  /** An uncached Drizzle database for the oracle's fresh reads (not counted). */
  fresh: AnyDb;
  /** Installs change capture on both tables, as `npx edgecache capture install` does. */
  installCapture(): Promise<void>;
  /** Where the data is, for the other ORMs' clients (orms.ts): a SQLite file, or a schema. */
  location: { path: string } | { url: string; schema: string };
  close(): Promise<void>;
}

const BIN = resolve(import.meta.dirname, "../../bin/edgecache.js");

/** A copy of the SQLite template (bench/workload's generated database) on libSQL's file URL. */
export async function libsqlDatabase(template: string, name: string): Promise<BenchDatabase> {
  const path = join(dirname(template), `${name}.db`);
  copyFileSync(template, path);
  const clients: ReturnType<typeof createClient>[] = [];
  const pending: Promise<unknown>[] = [];
  const open = (counter?: StatementCounter) => {
    const c = createClient({ url: `file:${path}` });
    clients.push(c);
    // A user's delete cascades to their orders; writers on two connections wait for the
    // lock. libSQL runs a file's statements in call order, so these come first.
    pending.push(c.executeMultiple("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;"));
    if (counter) {
      const execute = c.execute.bind(c);
      c.execute = ((...args: Parameters<typeof execute>) => {
        const stmt = args[0] as string | { sql: string };
        counter.count(typeof stmt === "string" ? stmt : stmt.sql);
        return execute(...args);
      }) as typeof c.execute;
    }
    return c;
  };
  const side = open();
  return {
    driver: "libsql",
    ...sqliteTables,
    app: (cache, counter) => drizzleLibsql(open(counter), cache ? { cache } : {}),
    async around(sql, params, counter) {
      counter.count(sql);
      await side.execute({ sql, args: params as never[] });
    },
    fresh: drizzleLibsql(open()),
    location: { path },
    installCapture: async () => {
      await promisify(execFile)(BIN, ["capture", "install", "--db", path]);
    },
    async close() {
      await Promise.allSettled(pending);
      for (const c of clients) c.close();
      for (const suffix of ["", "-wal", "-shm"]) rmSync(path + suffix, { force: true });
    },
  };
}

/**
 * A schema of its own in the PostgreSQL database at `url`, seeded with the template's rows
 * (the demo's generator with the same seed) plus the version columns; dropped on close.
 */
export async function postgresJsDatabase(
  url: string,
  name: string,
  size: { users: number; orders: number; seed: number },
  collateC: boolean,
): Promise<BenchDatabase> {
  const schemaName =
    `ec_dexact_${process.pid}_${name.replaceAll(/[^a-z0-9]/gi, "_")}`.toLowerCase();
  const options = { onnotice: () => {}, connection: { search_path: schemaName } };
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`DROP SCHEMA IF EXISTS ${schemaName} CASCADE`);
  await admin.unsafe(`DROP SCHEMA IF EXISTS edgecache_${schemaName} CASCADE`);
  await admin.unsafe(`CREATE SCHEMA ${schemaName}`);
  const side = postgres(url, { ...options, max: 2 });
  await seedPostgresDemo(side, size);
  await side.unsafe(
    "ALTER TABLE users ADD COLUMN version integer NOT NULL DEFAULT 1;" +
      "ALTER TABLE orders ADD COLUMN version integer NOT NULL DEFAULT 1;",
  );
  const schema = pgSchema(schemaName);
  const users = schema.table("users", {
    id: pgText("id").primaryKey(),
    firstName: pgText("firstName").notNull(),
    lastName: pgText("lastName").notNull(),
    email: pgText("email").notNull(),
    createdAt: timestamp("createdAt", { withTimezone: true, mode: "string" }).notNull(),
    version: pgInteger("version").notNull(),
  });
  const orders = schema.table("orders", {
    id: pgText("id").primaryKey(),
    userId: pgText("userId").notNull(),
    total: doublePrecision("total").notNull(),
    status: pgText("status").notNull(),
    createdAt: timestamp("createdAt", { withTimezone: true, mode: "string" }).notNull(),
    version: pgInteger("version").notNull(),
  });
  const clients: postgres.Sql[] = [admin, side];
  const freshClient = postgres(url, { ...options, max: 2 });
  clients.push(freshClient);
  return {
    driver: "postgres-js",
    users,
    orders,
    app(cache, counter) {
      const c = postgres(url, { ...options, max: 4 });
      clients.push(c);
      const unsafe = c.unsafe;
      c.unsafe = ((...args: Parameters<typeof unsafe>) => {
        counter.count(args[0]);
        return unsafe(...args);
      }) as typeof unsafe;
      return drizzlePostgresJs(c, cache ? { cache } : {});
    },
    orderKey: (column) =>
      collateC && column.columnType === "PgText" ? sql`${column} collate "C"` : column,
    async around(text, params, counter) {
      counter.count(text);
      let n = 0;
      await side.unsafe(
        text.replaceAll("?", () => `$${++n}`),
        params as never[],
      );
    },
    fresh: drizzlePostgresJs(freshClient),
    location: { url, schema: schemaName },
    async installCapture() {
      const source = await postgresSource({ url, schema: schemaName, max: 1 });
      await source.installCapture();
      await source.close();
    },
    async close() {
      for (const c of clients.slice(1).reverse()) await c.end({ timeout: 5 });
      await admin.unsafe(`DROP SCHEMA IF EXISTS ${schemaName} CASCADE`);
      await admin.unsafe(`DROP SCHEMA IF EXISTS edgecache_${schemaName} CASCADE`);
      await admin.end();
    },
  };
}
