import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { postgresSource } from "../../src/sources/postgres.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { type SqlCache, sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { requirePostgres } from "../helpers/services.ts";
import { plain, random, reads, SCHEMA, write } from "./group-shapes.ts";

// Group patches (issue 71): joined and aggregated results keyed by their base's rows (a
// favourite count, a tag count, a per-user flag, an author's name) kept after writes to
// the tables that feed them, by their statement run for the changed rows alone. Random
// writes, through the entry and around it, on a small Conduit-like schema; after each,
// every cached read equals the database's answer on a fresh connection, and some results
// were kept by group patches (the rule above holds whatever was patched), some by a
// statement run with the other viewer's parameters.

const pg = await requirePostgres();

interface Db {
  name: string;
  /** `?` or `$n`. */
  p(n: number): string;
  t(name: string): string;
  client: unknown;
  /** A write on a connection of its own (around the entry). */
  around(sql: string, params: unknown[]): Promise<void>;
  fresh(sql: string, params: unknown[]): Promise<unknown[]>;
  close(): Promise<void>;
}

async function sqliteDb(): Promise<Db> {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-groups-"));
  const path = join(dir, "db.sqlite");
  const writer = new Database(path);
  writer.exec(SCHEMA((n) => n));
  const source = sqliteSource({ database: writer });
  await source.installCapture();
  await source.close();
  const client = new Database(path);
  // Its own connection, outside the entry's: it sees what is committed.
  const reader = new Database(path, { readonly: true });
  return {
    name: "SQLite (better-sqlite3)",
    p: () => "?",
    t: (n) => n,
    client,
    around: async (sql, params) => void writer.prepare(sql).run(...(params as never[])),
    fresh: async (sql, params) => reader.prepare(sql).all(...(params as never[])),
    close: async () => {
      reader.close();
      client.close();
      writer.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function postgresDb(url: string): Promise<Db> {
  const schema = `ec_groups_${process.pid}_${Date.now().toString(36)}`;
  const admin = postgres(url, { max: 2, onnotice: () => {} });
  const t = (n: string) => `${schema}.${n}`;
  await admin.unsafe(`create schema ${schema}; ${SCHEMA(t)}`);
  const source = await postgresSource({ url, schema, max: 1 });
  await source.installCapture();
  await source.close();
  const client = postgres(url, { max: 4, onnotice: () => {} });
  // Its own connection, outside the entry's: it sees what is committed.
  const reader = postgres(url, { max: 1, onnotice: () => {} });
  return {
    name: "PostgreSQL (postgres.js)",
    p: (n) => `$${n}`,
    t,
    client,
    around: async (sql, params) => void (await admin.unsafe(sql, params as never[])),
    fresh: async (sql, params) => [...(await reader.unsafe(sql, params as never[]))],
    close: async () => {
      await reader.end();
      await client.end();
      await admin.unsafe(`drop schema if exists ${schema} cascade`);
      await admin.unsafe(`drop schema if exists edgecache_${schema} cascade`);
      await admin.end();
    },
  };
}

const makers: [string, () => Promise<Db>][] = [["sqlite", sqliteDb]];
if (pg) makers.push(["postgres", () => postgresDb(pg.url)]);

describe.each(makers)("group patches on %s", (_, make) => {
  let db: Db;
  let sql: SqlCache;
  afterAll(async () => {
    await sql?.close();
    await db?.close();
  });

  it("random writes through and around the entry: every cached read equals the database's, and results were kept by group patches", async () => {
    db = await make();
    sql = sqlCache({ client: db.client, tiers: [memoryStore()] });
    const queries = reads(db);
    const readAll = async (step: number) => {
      for (const [text, args] of queries) {
        for (const viewer of [1, 2]) {
          const params = args(viewer, step);
          const got = await sql.query(text, params);
          expect(plain(got), `${text} ${JSON.stringify(params)} after step ${step}`).toEqual(
            plain(await db.fresh(text, params)),
          );
        }
      }
    };
    // Followed once a read reaches a captured table.
    await sql.query(`select id from ${db.t("users")} where id = ${db.p(1)}`, [1]);
    const until = Date.now() + 10_000;
    while (sql.getStats().writes !== "capture") {
      if (Date.now() > until) throw new Error("capture not followed");
      await new Promise((r) => setTimeout(r, 10));
    }
    const next = random(71);
    await readAll(0);
    await readAll(0);
    for (let step = 1; step <= 60; step++) {
      const [text, params] = write(db, next, step);
      if (step % 2 === 0) await sql.query(text, params);
      else {
        await db.around(text, params);
        // Now and then two writes before the entry catches up: one record may hold both
        // (a new user with a favourite), as capture reads them.
        if (step % 3 === 0) await db.around(...write(db, next, step + 1000));
        await sql.catchUp();
        // Now and then more writes, each caught up, before any read: the patches of one
        // record are overtaken by the next, and brought through it (`followed`).
        for (let more = step % 5 === 0 ? 2 : 0; more > 0; more--) {
          await db.around(...write(db, next, step + 2000 + more));
          await sql.catchUp();
        }
      }
      // Twice: the first read of a result a write dropped reloads it.
      await readAll(step);
      await readAll(step);
    }
    const { groupPatches, hits, shapes } = sql.getStats();
    // The list that shows the slug, not the key, is maintained: the catalog's unique slug
    // stands in for the key.
    const bySlug = shapes.find((s) => s.sql.startsWith("select a.slug"));
    expect(bySlug?.unmaintained).toBeUndefined();
    expect(bySlug?.maintained?.length).toBeGreaterThan(0);
    expect(groupPatches.patched).toBeGreaterThan(20);
    expect(groupPatches.statements).toBeGreaterThan(0);
    // Viewer 2's results kept by viewer 1's statement (or the other way): its flag told by
    // the favourite written, or kept where the write does not read it.
    expect(groupPatches.shared).toBeGreaterThan(0);
    // A favourite's count and flag told by its row, with no statement.
    expect(groupPatches.told).toBeGreaterThan(0);
    // The newest article deleted: each window holding it took in the row past its end.
    expect(groupPatches.slid).toBeGreaterThan(0);
    // New articles outside a tag's or an author set's count, told by one shared read.
    expect(groupPatches.outside).toBeGreaterThan(0);
    // A tag's count moved by a new tagged article, or a deleted one, with no statement of its own.
    expect(groupPatches.counted).toBeGreaterThan(0);
    // Single articles answered from a held list that shows them (each compared above).
    expect(groupPatches.answered).toBeGreaterThan(0);
    expect(hits).toBeGreaterThan(0);
    // Patches overtaken by the writes that came before any read, brought through them.
    expect(groupPatches.followed).toBeGreaterThan(0);
  }, 120_000);
});
