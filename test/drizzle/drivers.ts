import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import Database from "better-sqlite3";
import type { Cache } from "drizzle-orm/cache/core";
import { drizzle as drizzleLibsql } from "drizzle-orm/libsql";
import { drizzle as drizzleNodePg } from "drizzle-orm/node-postgres";
import {
  bigint,
  integer as pgInteger,
  pgSchema,
  text as pgText,
  timestamp,
} from "drizzle-orm/pg-core";
import { drizzle as drizzlePostgresJs } from "drizzle-orm/postgres-js";
import { blob, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { drizzle as drizzleProxy } from "drizzle-orm/sqlite-proxy";
import pg from "pg";
import postgres from "postgres";
import { betterSqliteProxy } from "../../src/drizzle/better-sqlite3.ts";
import { postgresSource } from "../../src/sources/postgres.ts";
import { edgecache } from "../helpers/built-cli.ts";

/** One harness for three drivers: the tests use these tables through any of them. */
// biome-ignore lint/suspicious/noExplicitAny: the same queries run on SQLite and PostgreSQL databases
export type AnyDb = any;
// biome-ignore lint/suspicious/noExplicitAny: a SQLite or a PostgreSQL table
export type AnyTable = any;

export interface Harness {
  name: string;
  dialect: "sqlite" | "pg";
  users: AnyTable;
  posts: AnyTable;
  /** A Drizzle database on a connection of its own, with `cache`. */
  db(cache?: Cache): AnyDb;
  /**
   * One connection for every request (better-sqlite3 through the proxy): a transaction has
   * it to itself, so a statement on `db` inside one waits for it, and only a database
   * wrapped by withTransactions may open one.
   */
  oneConnection?: boolean;
  /**
   * A statement on `db` inside a transaction's callback runs in the transaction's session
   * and sees its uncommitted rows (one connection: better-sqlite3 through the proxy, a
   * node-postgres Client).
   */
  sharedSession?: boolean;
  /** Runs SQL outside Drizzle (set-up, direct writes). */
  exec(sql: string): Promise<void>;
  /** PostgreSQL: holds a row lock on another connection until the returned function runs. */
  lockUser?(id: number): Promise<() => Promise<void>>;
  /** PostgreSQL: resolves once some statement waits for a lock. */
  waitForLockWaiter?(): Promise<void>;
  /** Empties both tables and inserts user 1 ("Ann") and post 1. */
  reset(): Promise<void>;
  /** Installs change capture on both tables, as `npx edgecache capture install` does (after reset). */
  installCapture(): Promise<void>;
  uninstallCapture(): Promise<void>;
  close(): Promise<void>;
}

const unique = () =>
  `${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`;

/** libSQL on a file URL. */
export function libsqlHarness(intMode: "number" | "bigint" = "number"): Harness {
  const clients: ReturnType<typeof createClient>[] = [];
  return sqliteFileHarness("libsql", (path) => {
    const c = createClient({ url: `file:${path}`, intMode });
    clients.push(c);
    return { db: (cache) => drizzleLibsql(c, cache ? { cache } : {}), close: () => c.close() };
  });
}

/**
 * better-sqlite3 through drizzle-orm's sqlite-proxy driver and edgecache's proxy
 * (`edgecache/drizzle/better-sqlite3`): drizzle-orm's own better-sqlite3 driver drops the cache.
 */
export function betterSqliteHarness(): Harness {
  const harness = sqliteFileHarness("better-sqlite3 (sqlite-proxy)", (path) => {
    const database = new Database(path);
    const proxy = betterSqliteProxy(database);
    return {
      db: (cache) => drizzleProxy(proxy, proxy.batch, cache ? { cache } : {}),
      close: () => database.close(),
    };
  });
  return { ...harness, oneConnection: true, sharedSession: true };
}

/** A SQLite file, each Drizzle database on a connection of its own that `open` makes. */
function sqliteFileHarness(
  name: string,
  open: (path: string) => { db: (cache: Cache | undefined) => AnyDb; close: () => void },
): Harness {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-drizzle-"));
  const path = join(dir, "db.sqlite");
  const connections: { close: () => void }[] = [];
  const admin = new Database(path);
  const users = sqliteTable("users", {
    id: integer("id").primaryKey(),
    name: text("name").notNull(),
    at: integer("at", { mode: "timestamp_ms" }),
    big: blob("big", { mode: "bigint" }),
    count: integer("count", { mode: "number" }),
  });
  const posts = sqliteTable("posts", {
    id: integer("id").primaryKey(),
    userId: integer("user_id").notNull(),
    title: text("title").notNull(),
  });
  return {
    name,
    dialect: "sqlite",
    users,
    posts,
    db: (cache) => {
      const connection = open(path);
      connections.push(connection);
      return connection.db(cache);
    },
    exec: async (sql) => {
      admin.exec(sql);
    },
    async reset() {
      admin.exec(`
        create table if not exists users (id integer primary key, name text not null, at integer, big blob, count integer);
        create table if not exists posts (id integer primary key, user_id integer not null, title text not null);
        delete from users; delete from posts;
        insert into users values (1, 'Ann', 1700000000123, null, 7);
        insert into posts values (1, 1, 'hello');`);
    },
    // With the command, in a process of its own as a user runs it: better-sqlite3 and
    // libSQL are two SQLite libraries, whose locks on one file do not see each other's
    // within one process.
    installCapture: () => edgecache(["capture", "install", "--db", path]).then(() => {}),
    uninstallCapture: () => edgecache(["capture", "uninstall", "--db", path]).then(() => {}),
    async close() {
      for (const c of connections) c.close();
      admin.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The PostgreSQL tables, in a schema of their own so that parallel runs do not collide. */
function pgTables(schemaName: string) {
  const schema = pgSchema(schemaName);
  const users = schema.table("users", {
    id: pgInteger("id").primaryKey(),
    name: pgText("name").notNull(),
    at: timestamp("at", { withTimezone: true, mode: "date" }),
    big: bigint("big", { mode: "bigint" }),
    count: pgInteger("count"),
  });
  const posts = schema.table("posts", {
    id: pgInteger("id").primaryKey(),
    userId: pgInteger("user_id").notNull(),
    title: pgText("title").notNull(),
  });
  return { users, posts };
}

function pgHarness(
  name: string,
  url: string,
  open: (cache: Cache | undefined) => { db: AnyDb; close: () => Promise<void> },
): Harness {
  const schema = `ec_drizzle_${unique()}`;
  const { users, posts } = pgTables(schema);
  const admin = new pg.Pool({ connectionString: url, max: 3 });
  const opened: (() => Promise<void>)[] = [];
  return {
    name,
    dialect: "pg",
    users,
    posts,
    db(cache) {
      const { db, close } = open(cache);
      opened.push(close);
      return db;
    },
    exec: async (sql) => {
      await admin.query(sql);
    },
    async lockUser(id) {
      const c = await admin.connect();
      await c.query("begin");
      await c.query(`select * from ${schema}.users where id = $1 for update`, [id]);
      return async () => {
        await c.query("commit");
        c.release();
      };
    },
    async waitForLockWaiter() {
      for (;;) {
        const { rows } = await admin.query(
          `select count(*)::int as n from pg_stat_activity
           where wait_event_type = 'Lock' and query like '%${schema}%'`,
        );
        if (rows[0].n > 0) return;
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async reset() {
      await admin.query(`
        create schema if not exists ${schema};
        create table if not exists ${schema}.users (id integer primary key, name text not null, at timestamptz, big bigint, count integer);
        create table if not exists ${schema}.posts (id integer primary key, user_id integer not null, title text not null);
        delete from ${schema}.users; delete from ${schema}.posts;
        insert into ${schema}.users values (1, 'Ann', '2023-11-14T22:13:20.123Z', 9007199254740993, 7);
        insert into ${schema}.posts values (1, 1, 'hello');`);
    },
    async installCapture() {
      const source = await postgresSource({ url, schema, max: 1 });
      await source.installCapture();
      await source.close();
    },
    async uninstallCapture() {
      const source = await postgresSource({ url, schema, max: 1 });
      await source.uninstallCapture();
      await source.close();
    },
    async close() {
      for (const close of opened) await close();
      await admin.query(`drop schema if exists ${schema} cascade`);
      await admin.query(`drop schema if exists edgecache_${schema} cascade`);
      await admin.end();
    },
  };
}

export function postgresJsHarness(url: string): Harness {
  return pgHarness("postgres-js", url, (cache) => {
    const client = postgres(url, { max: 4, onnotice: () => {} });
    return {
      db: drizzlePostgresJs(client, cache ? { cache } : {}),
      close: () => client.end(),
    };
  });
}

/** node-postgres on a Pool, or on one Client (where a transaction runs on the db's own session). */
export function nodePgHarness(url: string, on: "pool" | "client" = "pool"): Harness {
  const harness = pgHarness(`node-postgres (${on})`, url, (cache) => {
    if (on === "client") {
      const client = new pg.Client({ connectionString: url });
      const connected = client.connect();
      return {
        db: drizzleNodePg(client, cache ? { cache } : {}),
        close: async () => {
          await connected;
          await client.end();
        },
      };
    }
    const pool = new pg.Pool({ connectionString: url, max: 4 });
    return { db: drizzleNodePg(pool, cache ? { cache } : {}), close: () => pool.end() };
  });
  return { ...harness, sharedSession: on === "client" };
}
