import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import Database from "better-sqlite3";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { sqlDriver } from "../../src/database/drivers.ts";
import { readCatalog } from "../../src/sources/catalog.ts";
import { requirePostgres } from "../helpers/services.ts";

// A unique column from the catalog stands in for a key a result does not show (issue 71
// item 2): the catalog marks a column `unique` only where its values name its rows: NOT
// NULL, with a unique index of it alone that is not partial, not on an expression, not
// deferred, and not the primary key's.

const pg = await requirePostgres();

/** Every form a unique column may take; only `slug` names its rows. */
const TABLE = (t: string) => `create table ${t} (
  id integer primary key,
  slug text not null unique,
  nullable text unique,
  a integer not null,
  b integer not null,
  partial text not null,
  expr text not null,
  plain text not null,
  unique (a, b)
)`;
const INDEXES = (t: string, n: string) => [
  `create unique index ${n}_partial on ${t} (partial) where id > 0`,
  `create unique index ${n}_expr on ${t} (lower(expr))`,
  `create index ${n}_plain on ${t} (plain)`,
];
const uniques = (columns: { name: string; unique?: true }[]) =>
  columns.filter((c) => c.unique).map((c) => c.name);

describe("the catalog's unique columns", () => {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-unique-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("SQLite (better-sqlite3, libSQL, and explain's file catalog): NOT NULL and unique alone", async () => {
    const path = join(dir, "db.sqlite");
    const db = new Database(path);
    db.exec(TABLE("items"));
    for (const s of INDEXES("items", "items")) db.exec(s);
    // A WITHOUT ROWID table's key is its primary key's index: not a stand-in.
    db.exec("create table codes (code text primary key, label text not null unique) without rowid");
    expect(uniques(await sqlDriver(db)!.columns("items"))).toEqual(["slug"]);
    expect(uniques(await sqlDriver(db)!.columns("codes"))).toEqual(["label"]);
    db.close();
    const libsql = createClient({ url: `file:${path}` });
    expect(uniques(await sqlDriver(libsql)!.columns("items"))).toEqual(["slug"]);
    libsql.close();
    const catalog = await readCatalog(path);
    expect(uniques(catalog.tables.get("items")!.columns)).toEqual(["slug"]);
  });

  it.skipIf(!pg)("PostgreSQL (postgres.js, and explain's catalog): and not deferred", async () => {
    const schema = `ec_unique_${process.pid}`;
    const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    try {
      await admin.unsafe(`drop schema if exists ${schema} cascade; create schema ${schema}`);
      await admin.unsafe(TABLE(`${schema}.items`));
      for (const s of INDEXES(`${schema}.items`, "items")) await admin.unsafe(s);
      await admin.unsafe(
        `alter table ${schema}.items add column later text not null default 'x',
           add constraint items_later unique (later) deferrable initially deferred`,
      );
      expect(uniques(await sqlDriver(admin)!.columns(`${schema}.items`))).toEqual(["slug"]);
      const catalog = await readCatalog(pg.url);
      expect(uniques(catalog.tables.get(`${schema}.items`)!.columns)).toEqual(["slug"]);
    } finally {
      await admin.unsafe(`drop schema if exists ${schema} cascade`);
      await admin.end();
    }
  });
});
