import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { type SqlCache, type SqlCacheOptions, sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { following } from "../helpers/following.ts";

/** A SQLite file with capture installed, a raw SQL entry following it, and its own connections. */
export interface CapturedFile {
  sql: SqlCache;
  /** Writes around the entry. */
  writer: Database.Database;
  /** Reads what is committed, outside the entry. */
  reader: Database.Database;
  /**
   * Each write its own transaction on `writer`, then one catch-up (one record may hold
   * all), and the jobs it started.
   */
  around(...writes: [string, unknown[]][]): Promise<void>;
  /** `sql` read on `reader`. */
  fresh(sql: string, params: unknown[]): unknown[];
  close(): Promise<void>;
}

/**
 * A SQLite file made by `schema` (its first table is read to start following capture),
 * the entry on a better-sqlite3 connection or on the client `connect` makes for the file.
 */
export async function capturedFile(
  schema: string,
  connect: (path: string) => SqlCacheOptions["client"] & { close(): unknown } = (path) =>
    new Database(path),
): Promise<CapturedFile> {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-captured-"));
  const path = join(dir, "db.sqlite");
  const writer = new Database(path);
  writer.exec(schema);
  const source = sqliteSource({ database: writer });
  await source.installCapture();
  await source.close();
  // A row may name one not written yet (better-sqlite3 enforces foreign keys by default).
  writer.pragma("foreign_keys = off");
  const client = connect(path);
  const reader = new Database(path, { readonly: true });
  const sql = sqlCache({ client, tiers: [memoryStore()] });
  const first = /create table (\w+)/i.exec(schema)![1]!;
  await sql.query(`select * from ${first} limit 1`, []);
  await following(sql);
  return {
    sql,
    writer,
    reader,
    async around(...writes) {
      for (const [s, p] of writes) writer.prepare(s).run(...(p as never[]));
      await sql.catchUp();
      await sql.engine.drain(); // the group patches' jobs: a read after finds what they kept
    },
    fresh: (s, p) => reader.prepare(s).all(...(p as never[])),
    close: async () => {
      await sql.close();
      reader.close();
      client.close();
      writer.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
