import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { captureInstallSql } from "../../src/database/sqlite/capture-sql.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { type SqlCache, sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";

// Reads cached by the raw SQL entry over a better-sqlite3 file with change capture, and
// writes that delete rows by REPLACE conflict resolution (which fires no delete trigger):
// made on another connection, or through the entry's `execute`. After the entry has applied
// what capture recorded, every read equals a fresh query.

const RESET = `
  DELETE FROM users; DELETE FROM seats;
  INSERT INTO users VALUES (1, 'ann@x', 'Ann'), (2, 'bo@x', 'Bo'), (3, 'cy@x', 'Cy');
  INSERT INTO seats VALUES ('h1', 'h', 'ann'), ('h2', 'h', 'bo');`;

/** Reads of the rows a REPLACE may delete: by key, by unique column, and pages. */
const READS: [string, unknown[]][] = [
  ["select id, email, name from users where id = ?", [1]],
  ["select id, email, name from users where id = ?", [2]],
  ["select id, email, name from users where id = ?", [3]],
  ["select id, name from users where email = ?", ["bo@x"]],
  ["select id, email, name from users order by name, id limit 2", []],
  ["select id, email, name from users order by id", []],
  ["select code, holder from seats where code = ?", ["h1"]],
  ["select code, hall, holder from seats where hall = ? order by code", ["h"]],
];

/**
 * A SQLite file with the two tables and capture installed by `install`, the raw SQL entry
 * over another connection once it follows capture, and `fresh` (see below).
 */
function replaceHarness(install: (writer: Database.Database) => Promise<void>) {
  const h = {} as {
    writer: Database.Database;
    sql: SqlCache;
    fresh(write: () => unknown): Promise<void>;
  };
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgecache-replace-"));
    const path = join(dir, "db.sqlite");
    h.writer = new Database(path);
    h.writer.exec(`
      CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT);
      CREATE TABLE seats (code TEXT PRIMARY KEY, hall TEXT, holder TEXT UNIQUE) WITHOUT ROWID;
      ${RESET}`);
    await install(h.writer);
    h.sql = sqlCache({ client: new Database(path), tiers: [memoryStore()] });
    await h.sql.query("select id from users where id = ?", [0]);
    const until = Date.now() + 10_000;
    while (h.sql.getStats().writes !== "capture") {
      if (Date.now() > until) throw new Error("the entry never followed capture");
      await new Promise((r) => setTimeout(r, 10));
    }
  });

  beforeEach(async () => {
    h.writer.exec(RESET);
    expect(await h.sql.catchUp()).toBe(true);
  });

  afterAll(async () => {
    await h.sql?.close();
    h.writer?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Caches every read (a hit the second time), runs `write`, and compares after catching up. */
  h.fresh = async (write) => {
    for (const [text, params] of READS) {
      await h.sql.query(text, params);
      await h.sql.query(text, params);
    }
    await write();
    expect(await h.sql.catchUp()).toBe(true);
    for (const [text, params] of READS) {
      expect(await h.sql.query(text, params), text).toEqual(h.writer.prepare(text).all(...params));
    }
  };
  return h;
}

describe("REPLACE deletes and cached reads: better-sqlite3 with change capture", () => {
  const h = replaceHarness(async (writer) => {
    const source = sqliteSource({ database: writer });
    await source.installCapture();
    await source.close();
  });

  it("INSERT OR REPLACE on the primary key, from another connection", async () => {
    await h.fresh(() => h.writer.exec("INSERT OR REPLACE INTO users VALUES (1, 'zed@x', 'Zed')"));
  });

  it("REPLACE INTO on a unique column: the row with another primary key leaves the reads", async () => {
    await h.fresh(() => h.writer.exec("REPLACE INTO users VALUES (9, 'bo@x', 'Bob')"));
  });

  it("one REPLACE that deletes two rows", async () => {
    await h.fresh(() => h.writer.exec("INSERT OR REPLACE INTO users VALUES (1, 'cy@x', 'Both')"));
  });

  it("UPDATE OR REPLACE of a unique column", async () => {
    await h.fresh(() => h.writer.exec("UPDATE OR REPLACE users SET email = 'bo@x' WHERE id = 3"));
  });

  it("a WITHOUT ROWID table, on a unique column", async () => {
    await h.fresh(() => h.writer.exec("REPLACE INTO seats VALUES ('h3', 'h', 'ann')"));
  });

  it("ON CONFLICT DO UPDATE and OR IGNORE: no row is taken for deleted", async () => {
    await h.fresh(() =>
      h.writer.exec(`
        INSERT INTO users VALUES (2, 'bo@x', 'Bo2') ON CONFLICT (id) DO UPDATE SET name = excluded.name;
        INSERT OR IGNORE INTO users VALUES (3, 'ann@x', 'Never');`),
    );
  });

  it("a REPLACE through the entry's execute", async () => {
    await h.fresh(() => h.sql.execute("REPLACE INTO users VALUES (8, 'ann@x', 'Ann8')", []));
  });
});

describe("REPLACE through the entry, on an installation by an earlier version", () => {
  // Its triggers: the AFTER ones alone (those of tables without a key), no notes table.
  const h = replaceHarness(async (writer) => {
    const tables = ["users", "seats"].map((name) => ({
      name,
      columns: (
        writer.prepare(`SELECT name FROM pragma_table_info('${name}')`).all() as {
          name: string;
        }[]
      ).map((c) => c.name),
    }));
    for (const statement of captureInstallSql(tables, { install: "earlier" }))
      writer.exec(statement);
    writer.exec("DROP TABLE _edgecache_replaced");
  });

  it("empties the tables it names, as without capture: the row of another key it deleted is not served", async () => {
    await h.fresh(() => h.sql.execute("REPLACE INTO users VALUES (9, 'bo@x', 'Bob')", []));
    await h.fresh(() =>
      h.sql.execute("UPDATE OR REPLACE users SET email = 'cy@x' WHERE id = 1", []),
    );
  });
});
