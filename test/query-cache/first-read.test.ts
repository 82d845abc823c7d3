import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { PrismaBetterSqlite3 } from "@prisma/adapter-better-sqlite3";
import Database from "better-sqlite3";
import { eq } from "drizzle-orm";
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { drizzle as drizzleProxy } from "drizzle-orm/sqlite-proxy";
import { Kysely, PostgresDialect, SqliteDialect } from "kysely";
import pg from "pg";
import postgres from "postgres";
import { afterEach, describe, expect, it } from "vitest";
import { betterSqliteProxy } from "../../src/drizzle/better-sqlite3.ts";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { type CachedDialect, kyselyCache } from "../../src/kysely/index.ts";
import { type CachedAdapterFactory, prismaCache } from "../../src/prisma/index.ts";
import type { StatementCacheStats } from "../../src/query-cache/statement-contract.ts";
import { postgresSource } from "../../src/sources/postgres.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { until } from "../helpers/cluster.ts";
import { requirePostgres } from "../helpers/services.ts";
import { prismaClientClass, tables } from "../prisma/client.ts";

/**
 * Issue 42 on Node: a new process's first read of a query, through any route of the query
 * cache (edgecache/sql, Kysely, Prisma, Drizzle) over a database with change capture
 * installed, is stored for the next reads, registered by its rows (exact), not by table:
 * miss, hit, hit. It went miss, miss, hit where capture's follower was started by the read
 * and had not yet looked at the change table: the result was stored at table level, and
 * emptied by the next read, which found capture followed.
 */

const server = await requirePostgres();

/** One cached client of a route, as a fresh process makes it. */
interface Reader {
  /** The same read each time: user 1's id and name. */
  read(): Promise<unknown>;
  stats(): StatementCacheStats;
  close(): Promise<void>;
}

/** A database with capture installed on `User`, and the routes' readers over it. */
interface Db {
  reader(route: string): Promise<Reader>;
  close(): Promise<void>;
}

const SQL_READ = 'select id, name from "User" where id = ?';

/** edgecache/sql on `client`, reading user 1 by `statement`. */
function sqlReader(client: unknown, statement: string): Reader {
  const sql = sqlCache({ client, tiers: [memoryStore()] });
  return {
    read: () => sql.query(statement, [1]),
    stats: () => sql.getStats(),
    close: () => sql.close(),
  };
}

/** A SQLite file with the Prisma test models, user 1 in it, capture installed. */
async function sqliteDb(): Promise<Db> {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-first-read-"));
  const path = join(dir, "db.sqlite");
  const admin = new Database(path);
  admin.pragma("journal_mode = WAL");
  admin.exec(`${tables("sqlite")}
    INSERT INTO "User" ("id", "email", "name") VALUES (1, 'ann@x', 'Ann'), (2, 'bo@x', 'Bo');`);
  const source = sqliteSource({ path });
  await source.installCapture();
  await source.close();
  const ends: (() => unknown)[] = [];
  const better = () => {
    const database = new Database(path);
    ends.push(() => database.close());
    return database;
  };
  const routes: Record<string, () => Promise<Reader>> = {
    "sql (better-sqlite3)": async () => sqlReader(better(), SQL_READ),
    "sql (libSQL)": async () => {
      const client = createClient({ url: `file:${path}` });
      ends.push(() => client.close());
      return sqlReader(client, SQL_READ);
    },
    "kysely (better-sqlite3)": async () => {
      const database = better();
      const dialect = kyselyCache(new SqliteDialect({ database }), {
        client: database,
        tiers: [memoryStore()],
      });
      // biome-ignore lint/suspicious/noExplicitAny: the test's one table, typed loosely.
      const db = new Kysely<any>({ dialect });
      return {
        read: () => db.selectFrom("User").select(["id", "name"]).where("id", "=", 1).execute(),
        stats: () => (dialect as CachedDialect).cache.getStats(),
        close: () => db.destroy(),
      };
    },
    "prisma (better-sqlite3)": async () => {
      const PrismaClient = await prismaClientClass("sqlite");
      const adapter = prismaCache(new PrismaBetterSqlite3({ url: `file:${path}` }), {
        tiers: [memoryStore()],
      });
      const prisma = new PrismaClient({ adapter });
      return {
        read: () => prisma.user.findUnique({ where: { id: 1 }, select: { id: true, name: true } }),
        stats: () => (adapter as CachedAdapterFactory).cache.getStats(),
        close: () => prisma.$disconnect(),
      };
    },
    "drizzle (better-sqlite3)": async () => {
      const users = sqliteTable("User", { id: integer("id").primaryKey(), name: text("name") });
      const proxy = betterSqliteProxy(better());
      const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
      const db = withTransactions(drizzleProxy(proxy, proxy.batch, { cache }));
      return {
        read: () =>
          db.select({ id: users.id, name: users.name }).from(users).where(eq(users.id, 1)),
        stats: () => cache.getStats(),
        close: () => cache.close(),
      };
    },
  };
  return {
    reader: (route) => routes[route]!(),
    async close() {
      for (const end of ends) await end();
      admin.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A schema of the shared PostgreSQL with `User`, user 1 in it, capture installed. */
async function postgresDb(url: string): Promise<Db> {
  const schema = `ec_first_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create schema ${schema};
    create table ${schema}."User" (id integer primary key, name text not null);
    insert into ${schema}."User" values (1, 'Ann'), (2, 'Bo');`);
  const source = await postgresSource({ url, schema, max: 1 });
  await source.installCapture();
  await source.close();
  const ends: (() => Promise<unknown>)[] = [];
  const read = `select id, name from ${schema}."User" where id = $1`;
  const routes: Record<string, () => Promise<Reader>> = {
    "sql (postgres.js)": async () => {
      const client = postgres(url, { max: 4, onnotice: () => {} });
      ends.push(() => client.end());
      return sqlReader(client, read);
    },
    "sql (node-postgres)": async () => {
      const client = new pg.Pool({ connectionString: url, max: 4 });
      ends.push(() => client.end());
      return sqlReader(client, read);
    },
    "kysely (node-postgres)": async () => {
      const pool = new pg.Pool({ connectionString: url, max: 4 });
      const dialect = kyselyCache(new PostgresDialect({ pool }), {
        client: pool,
        tiers: [memoryStore()],
      });
      // biome-ignore lint/suspicious/noExplicitAny: the test's one table, typed loosely.
      const db = new Kysely<any>({ dialect });
      return {
        read: () =>
          db.selectFrom(`${schema}.User`).select(["id", "name"]).where("id", "=", 1).execute(),
        stats: () => (dialect as CachedDialect).cache.getStats(),
        close: () => db.destroy(),
      };
    },
  };
  return {
    reader: (route) => routes[route]!(),
    async close() {
      for (const end of ends) await end();
      await admin.unsafe(`drop schema if exists ${schema} cascade`);
      await admin.unsafe(`drop schema if exists edgecache_${schema} cascade`);
      await admin.end();
    },
  };
}

function firstReadSuite(make: () => Promise<Db>, routes: string[], leaderRoute: string): void {
  let db: Db | undefined;
  const readers: Reader[] = [];
  const open = async (route: string) => {
    db ??= await make();
    const reader = await db.reader(route);
    readers.push(reader);
    return reader;
  };
  afterEach(async () => {
    for (const r of readers.splice(0)) await r.close();
    await db?.close();
    db = undefined;
  });

  /** The same read three times on `reader`: miss, hit, hit, one result stored. */
  const threeReads = async (reader: Reader) => {
    const first = await reader.read();
    expect(await reader.read()).toEqual(first);
    expect(await reader.read()).toEqual(first);
    const s = reader.stats();
    expect({ misses: s.misses, hits: s.hits }).toEqual({ misses: 1, hits: 2 });
    expect({ stored: s.stored, fenced: s.fenced }).toEqual({ stored: 1, fenced: 0 });
    return s;
  };

  for (const route of routes) {
    it(`${route}: a fresh cache's first read is stored exactly and serves the next two (miss, hit, hit)`, async () => {
      const s = await threeReads(await open(route));
      expect(s.writes).toBe("capture");
      expect(s.registrations.exact).toBe(1);
    });

    it(`${route}: where another cache already leads the change table, the first read is stored too`, async () => {
      const leader = await open(leaderRoute);
      await leader.read();
      await until(() => leader.stats().writes === "capture");
      const s = await threeReads(await open(route));
      // This one does not consume the change table: its writes go by table.
      expect(s.writes).toBe("tables");
    });
  }
}

describe("a new process's first read with capture installed: SQLite file", () => {
  firstReadSuite(
    sqliteDb,
    [
      "sql (better-sqlite3)",
      "sql (libSQL)",
      "kysely (better-sqlite3)",
      "prisma (better-sqlite3)",
      "drizzle (better-sqlite3)",
    ],
    "sql (better-sqlite3)",
  );
});

server.describe("a new process's first read with capture installed: PostgreSQL", () => {
  firstReadSuite(
    () => postgresDb(server.url),
    ["sql (postgres.js)", "sql (node-postgres)", "kysely (node-postgres)"],
    "sql (postgres.js)",
  );
});
