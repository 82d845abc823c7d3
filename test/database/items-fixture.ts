import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import postgres from "postgres";
import { postgresSource } from "../../src/sources/postgres.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";

// The table of the capture-feed and ORM-adapter suites' runs over the built-ins:
// `items (id integer primary key, name text not null unique)`, capture installed (rows
// seeded before the install are not captured), and writes around on a connection of
// their own.

type Write = (op: "insert" | "update" | "delete", id: number, name?: string) => Promise<void>;

const items = (t: string, seeded: boolean) =>
  `create table ${t} (id integer primary key, name text not null unique);
   ${seeded ? `insert into ${t} values (1, 'a'), (2, 'b'), (3, 'c');` : ""}`;

/** A SQLite file holding `items`. */
export async function sqliteItems(
  seeded: boolean,
): Promise<{ path: string; around: Write; close(): void }> {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-items-"));
  const path = join(dir, "db.sqlite");
  const admin = new Database(path);
  admin.exec(`PRAGMA journal_mode = WAL; ${items("items", seeded)}`);
  const installer = sqliteSource({ path });
  await installer.installCapture();
  await installer.close();
  return {
    path,
    around: async (op, id, name) => {
      if (op === "insert") admin.prepare("insert into items values (?, ?)").run(id, name);
      else if (op === "update")
        admin.prepare("update items set name = ? where id = ?").run(name, id);
      else admin.prepare("delete from items where id = ?").run(id);
    },
    close: () => {
      admin.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A PostgreSQL schema of its own holding `items` (`table`: `schema.items`). */
export async function postgresItems(
  url: string,
  seeded: boolean,
): Promise<{ schema: string; table: string; around: Write; close(): Promise<void> }> {
  const schema = `ec_items_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`;
  const table = `${schema}.items`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create schema ${schema}; ${items(table, seeded)}`);
  const installer = await postgresSource({ url, schema, max: 1 });
  await installer.installCapture();
  await installer.close();
  return {
    schema,
    table,
    around: async (op, id, name) => {
      if (op === "insert") await admin.unsafe(`insert into ${table} values ($1, $2)`, [id, name!]);
      else if (op === "update") {
        await admin.unsafe(`update ${table} set name = $1 where id = $2`, [name!, id]);
      } else await admin.unsafe(`delete from ${table} where id = $1`, [id]);
    },
    close: async () => {
      await admin.unsafe(`drop schema if exists ${schema} cascade`);
      await admin.unsafe(`drop schema if exists edgecache_${schema} cascade`);
      await admin.end();
    },
  };
}
