import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import Database from "better-sqlite3";
import pg from "pg";
import postgres from "postgres";
import { postgresSource } from "../../src/sources/postgres.ts";
import { edgecache } from "../helpers/built-cli.ts";

/** A database with `users` and `posts` behind one of the raw SQL entry's clients. */
export interface RawHarness {
  name: string;
  /** A table's name as the SQL writes it. */
  table(name: "users" | "posts"): string;
  /** The n-th placeholder (1-based): `?` or `$n`. */
  p(n: number): string;
  /** A new client of the database (closed by `close`). */
  client(): unknown;
  /** Runs SQL on a connection of its own (set-up, writes around the entry). */
  exec(sql: string): Promise<void>;
  /** Empties both tables and inserts users 1 (Ann) and 2 (Bo), and post 1. */
  reset(): Promise<void>;
  /** Installs change capture on both tables, as `npx edgecache capture install` does. */
  installCapture(): Promise<void>;
  close(): Promise<void>;
}

const unique = () =>
  `${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`;

/** A SQLite file behind libSQL clients. */
export function libsqlRaw(): RawHarness {
  return sqliteRaw("libsql", (path) => {
    const c = createClient({ url: `file:${path}` });
    return { client: c, exec: (sql) => c.executeMultiple(sql), close: () => c.close() };
  });
}

/** A SQLite file behind better-sqlite3 connections. */
export function betterSqliteRaw(): RawHarness {
  return sqliteRaw("better-sqlite3", (path) => {
    const c = new Database(path);
    return { client: c, exec: async (sql) => void c.exec(sql), close: () => c.close() };
  });
}

/**
 * A SQLite file whose connections (the entry's and the harness's own) are all of one
 * library: two SQLite libraries in one process do not see each other's locks on a file.
 */
function sqliteRaw(
  name: string,
  open: (path: string) => { client: unknown; exec(sql: string): Promise<unknown>; close(): void },
): RawHarness {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-sql-"));
  const path = join(dir, "db.sqlite");
  const opened: ReturnType<typeof open>[] = [];
  const connect = () => {
    const c = open(path);
    opened.push(c);
    return c;
  };
  const admin = connect();
  return {
    name,
    table: (name) => name,
    p: () => "?",
    client: () => connect().client,
    exec: async (sql) => {
      await admin.exec(sql);
    },
    async reset() {
      await admin.exec(`
        create table if not exists users (id integer primary key, name text not null);
        create table if not exists posts (id integer primary key, user_id integer not null, title text not null);
        delete from users; delete from posts;
        insert into users values (1, 'Ann'), (2, 'Bo');
        insert into posts values (1, 1, 'hello');`);
    },
    // In a process of its own, as a user runs it.
    installCapture: async () => {
      await edgecache(["capture", "install", "--db", path]);
    },
    async close() {
      for (const c of opened) c.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A schema of the shared PostgreSQL behind postgres.js clients, or node-postgres pools
 * (`pg`) for the entry's own (the harness's connection is postgres.js either way).
 */
export function postgresJsRaw(
  url: string,
  library: "postgres.js" | "pg" = "postgres.js",
): RawHarness {
  const schema = `ec_sql_${unique()}`;
  const ends: (() => Promise<void>)[] = [];
  const connect = () => {
    const c = postgres(url, { max: 4, onnotice: () => {} });
    ends.push(() => c.end());
    return c;
  };
  const admin = connect();
  const client = () => {
    if (library === "postgres.js") return connect();
    const pool = new pg.Pool({ connectionString: url, max: 4 });
    ends.push(() => pool.end());
    return pool;
  };
  return {
    name: library === "pg" ? "node-postgres" : "postgres.js",
    table: (name) => `${schema}.${name}`,
    p: (n) => `$${n}`,
    client,
    exec: async (sql) => {
      await admin.unsafe(sql);
    },
    async reset() {
      await admin.unsafe(`
        create schema if not exists ${schema};
        create table if not exists ${schema}.users (id integer primary key, name text not null);
        create table if not exists ${schema}.posts (id integer primary key, user_id integer not null, title text not null);
        delete from ${schema}.users; delete from ${schema}.posts;
        insert into ${schema}.users values (1, 'Ann'), (2, 'Bo');
        insert into ${schema}.posts values (1, 1, 'hello');`);
    },
    async installCapture() {
      const source = await postgresSource({ url, schema, max: 1 });
      await source.installCapture();
      await source.close();
    },
    async close() {
      await admin.unsafe(`drop schema if exists ${schema} cascade`);
      await admin.unsafe(`drop schema if exists edgecache_${schema} cascade`);
      for (const end of ends) await end();
    },
  };
}
