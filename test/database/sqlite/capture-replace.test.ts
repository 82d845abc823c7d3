import Database from "better-sqlite3";
import fc from "fast-check";
import { beforeEach, describe, expect, it } from "vitest";
import { sqliteSource } from "../../../src/sources/sqlite.ts";

// What SQLite's capture triggers record for the rows a REPLACE deletes (which fire no
// delete trigger): each statement's changes, in order, straight from the change table.

const SCHEMA = `
  CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE COLLATE NOCASE, name TEXT);
  CREATE TABLE tags (id INTEGER PRIMARY KEY ON CONFLICT REPLACE, label TEXT, UNIQUE (label) ON CONFLICT REPLACE);
  CREATE TABLE members (team TEXT, person TEXT, role TEXT, PRIMARY KEY (team, person));
  CREATE TABLE seats (hall TEXT, num INTEGER, holder TEXT UNIQUE, PRIMARY KEY (hall, num)) WITHOUT ROWID;
  CREATE TABLE slots (id INTEGER PRIMARY KEY, day TEXT, owner TEXT, open INTEGER);
  CREATE UNIQUE INDEX slots_open ON slots (day) WHERE open = 1;
  CREATE TABLE notes (body TEXT);
  CREATE TABLE codes (code TEXT PRIMARY KEY, holder TEXT UNIQUE) WITHOUT ROWID;
  INSERT INTO users VALUES (1, 'ann@x', 'Ann'), (2, 'bo@x', 'Bo'), (3, 'cy@x', 'Cy');
  INSERT INTO tags VALUES (1, 'red'), (2, 'blue');
  INSERT INTO members VALUES ('a', 'ann', 'lead'), ('a', 'bo', 'dev');
  INSERT INTO seats VALUES ('h', 1, 'ann'), ('h', 2, 'bo');
  INSERT INTO slots VALUES (1, 'mon', 'ann', 1), (2, 'mon', 'bo', 0);
  INSERT INTO notes VALUES ('one');
`;

let db: Database.Database;

/** The changes `sql` records: op, then old and new rows (parsed), in commit order. */
function changes(sql: string): [string, unknown, unknown][] {
  db.exec("DELETE FROM _edgecache_changes");
  db.exec(sql);
  return (
    db.prepare("SELECT op, old, new FROM _edgecache_changes ORDER BY seq").all() as {
      op: string;
      old: string | null;
      new: string | null;
    }[]
  ).map((r) => [r.op, r.old && JSON.parse(r.old), r.new && JSON.parse(r.new)]);
}

beforeEach(async () => {
  db = new Database(":memory:");
  db.exec(SCHEMA);
  // As `edgecache capture install` does, on every table.
  const source = sqliteSource({ database: db });
  expect((await source.installCapture()).tables).toHaveLength(7);
  await source.close();
});

describe("SQLite capture of the rows a REPLACE deletes", () => {
  it("INSERT OR REPLACE on the primary key: the old row is recorded deleted, then the new one inserted", () => {
    expect(changes("INSERT OR REPLACE INTO users VALUES (1, 'ann@y', 'Ann B')")).toEqual([
      ["delete", { id: 1, email: "ann@x", name: "Ann" }, null],
      ["insert", null, { id: 1, email: "ann@y", name: "Ann B" }],
    ]);
  });

  it("REPLACE INTO on a unique index (its collation) deletes a row with another primary key", () => {
    expect(changes("REPLACE INTO users VALUES (9, 'BO@X', 'Bob')")).toEqual([
      ["delete", { id: 2, email: "bo@x", name: "Bo" }, null],
      ["insert", null, { id: 9, email: "BO@X", name: "Bob" }],
    ]);
  });

  it("one REPLACE that conflicts with two rows records both deleted", () => {
    expect(changes("INSERT OR REPLACE INTO users VALUES (1, 'cy@x', 'Both')")).toEqual([
      ["delete", { id: 1, email: "ann@x", name: "Ann" }, null],
      ["delete", { id: 3, email: "cy@x", name: "Cy" }, null],
      ["insert", null, { id: 1, email: "cy@x", name: "Both" }],
    ]);
  });

  it("a multi-row REPLACE records each row's deletes before its insert", () => {
    expect(
      changes("INSERT OR REPLACE INTO users VALUES (2, 'new@x', 'B2'), (7, 'ann@x', 'A7')"),
    ).toEqual([
      ["delete", { id: 2, email: "bo@x", name: "Bo" }, null],
      ["insert", null, { id: 2, email: "new@x", name: "B2" }],
      ["delete", { id: 1, email: "ann@x", name: "Ann" }, null],
      ["insert", null, { id: 7, email: "ann@x", name: "A7" }],
    ]);
  });

  it("UPDATE OR REPLACE of a unique column, and of the primary key", () => {
    expect(changes("UPDATE OR REPLACE users SET email = 'bo@x' WHERE id = 1")).toEqual([
      ["delete", { id: 2, email: "bo@x", name: "Bo" }, null],
      ["update", { id: 1, email: "ann@x", name: "Ann" }, { id: 1, email: "bo@x", name: "Ann" }],
    ]);
    expect(changes("UPDATE OR REPLACE users SET id = 3 WHERE id = 1")).toEqual([
      ["delete", { id: 3, email: "cy@x", name: "Cy" }, null],
      ["update", { id: 1, email: "bo@x", name: "Ann" }, { id: 3, email: "bo@x", name: "Ann" }],
    ]);
  });

  it("an UPDATE OR REPLACE of several rows records the row each one displaces", () => {
    expect(changes("UPDATE OR REPLACE users SET email = 'same@x' WHERE id IN (1, 2)")).toEqual([
      ["update", { id: 1, email: "ann@x", name: "Ann" }, { id: 1, email: "same@x", name: "Ann" }],
      ["delete", { id: 1, email: "same@x", name: "Ann" }, null],
      ["update", { id: 2, email: "bo@x", name: "Bo" }, { id: 2, email: "same@x", name: "Bo" }],
    ]);
  });

  it("a plain INSERT into a table whose constraints say ON CONFLICT REPLACE", () => {
    expect(changes("INSERT INTO tags VALUES (5, 'red')")).toEqual([
      ["delete", { id: 1, label: "red" }, null],
      ["insert", null, { id: 5, label: "red" }],
    ]);
  });

  it("ON CONFLICT DO UPDATE records the update alone, and OR IGNORE nothing; neither leaves a delete behind", () => {
    expect(
      changes(
        "INSERT INTO users VALUES (1, 'ann@x', 'X') ON CONFLICT (id) DO UPDATE SET name = excluded.name",
      ),
    ).toEqual([
      ["update", { id: 1, email: "ann@x", name: "Ann" }, { id: 1, email: "ann@x", name: "X" }],
    ]);
    expect(
      changes(
        "INSERT INTO users VALUES (2, 'zed@x', 'Z') ON CONFLICT (id) DO UPDATE SET email = excluded.email",
      ),
    ).toEqual([
      ["update", { id: 2, email: "bo@x", name: "Bo" }, { id: 2, email: "zed@x", name: "Bo" }],
    ]);
    expect(changes("INSERT OR IGNORE INTO users VALUES (3, 'cy@x', 'No')")).toEqual([]);
    // The rows noted for the ignored insert are not taken for deleted by later writes.
    expect(changes("DELETE FROM users WHERE id = 3")).toEqual([
      ["delete", { id: 3, email: "cy@x", name: "Cy" }, null],
    ]);
    expect(changes("INSERT INTO users VALUES (4, 'dee@x', 'Dee')")).toEqual([
      ["insert", null, { id: 4, email: "dee@x", name: "Dee" }],
    ]);
    expect(changes("UPDATE users SET name = 'Dee2' WHERE id = 4")).toEqual([
      ["update", { id: 4, email: "dee@x", name: "Dee" }, { id: 4, email: "dee@x", name: "Dee2" }],
    ]);
  });

  it("a composite primary key (rowid table)", () => {
    expect(changes("INSERT OR REPLACE INTO members VALUES ('a', 'bo', 'lead')")).toEqual([
      ["delete", { team: "a", person: "bo", role: "dev" }, null],
      ["insert", null, { team: "a", person: "bo", role: "lead" }],
    ]);
  });

  it("a WITHOUT ROWID table, on its primary key and on a unique column", () => {
    expect(changes("REPLACE INTO seats VALUES ('h', 3, 'ann')")).toEqual([
      ["delete", { hall: "h", num: 1, holder: "ann" }, null],
      ["insert", null, { hall: "h", num: 3, holder: "ann" }],
    ]);
    expect(changes("REPLACE INTO seats VALUES ('h', 2, 'cy')")).toEqual([
      ["delete", { hall: "h", num: 2, holder: "bo" }, null],
      ["insert", null, { hall: "h", num: 2, holder: "cy" }],
    ]);
    expect(changes("UPDATE OR REPLACE seats SET num = 2 WHERE holder = 'ann'")).toEqual([
      ["delete", { hall: "h", num: 2, holder: "cy" }, null],
      ["update", { hall: "h", num: 3, holder: "ann" }, { hall: "h", num: 2, holder: "ann" }],
    ]);
  });

  it("a partial unique index: a row outside it is not taken for deleted", () => {
    expect(changes("INSERT OR REPLACE INTO slots VALUES (3, 'mon', 'cy', 0)")).toEqual([
      ["insert", null, { id: 3, day: "mon", owner: "cy", open: 0 }],
    ]);
    expect(changes("INSERT OR REPLACE INTO slots VALUES (4, 'mon', 'dee', 1)")).toEqual([
      ["delete", { id: 1, day: "mon", owner: "ann", open: 1 }, null],
      ["insert", null, { id: 4, day: "mon", owner: "dee", open: 1 }],
    ]);
  });

  it("a table with no key, and plain writes, record what they did before", () => {
    expect(changes("INSERT INTO notes VALUES ('two')")).toEqual([
      ["insert", null, { body: "two" }],
    ]);
    expect(changes("UPDATE users SET name = 'Al' WHERE id = 1")).toEqual([
      ["update", { id: 1, email: "ann@x", name: "Ann" }, { id: 1, email: "ann@x", name: "Al" }],
    ]);
    expect(changes("INSERT INTO users (email, name) VALUES ('eve@x', 'Eve')")).toEqual([
      ["insert", null, { id: 4, email: "eve@x", name: "Eve" }],
    ]);
  });

  it("with recursive_triggers on, SQLite's own delete is recorded too (once more, harmlessly)", () => {
    db.pragma("recursive_triggers = ON");
    const recorded = changes("REPLACE INTO users VALUES (9, 'bo@x', 'Bob')");
    expect(recorded.at(-1)).toEqual(["insert", null, { id: 9, email: "bo@x", name: "Bob" }]);
    expect(recorded.slice(0, -1).every(([op]) => op === "delete")).toBe(true);
    expect(recorded.length).toBeGreaterThanOrEqual(2);
  });
});

describe("capture status of an installation by an earlier version", () => {
  it("names it outdated (its triggers miss REPLACE's deletes) until install runs again", async () => {
    const source = sqliteSource({ database: db });
    expect((await source.captureStatus()).outdated).toBeUndefined();
    // What an earlier version installed: no notes of replaced rows, no BEFORE triggers.
    db.exec("DROP TABLE _edgecache_replaced");
    for (const { name } of db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%_before'")
      .all() as { name: string }[]) {
      db.exec(`DROP TRIGGER "${name}"`);
    }
    expect((await source.captureStatus()).outdated).toMatch(/REPLACE deletes are not recorded/);
    expect((await source.installCapture()).outdated).toBeUndefined();
    await source.close();
  });
});

describe("property: the recorded changes, replayed, rebuild the table", () => {
  // Every statement of a random sequence (REPLACEs, UPDATE OR REPLACE of a unique column or of
  // the key, several rows at once, upserts, OR IGNORE, plain writes, some failing on a
  // constraint): its changes, applied in order to a copy keyed by primary key (a delete must
  // find its row as recorded, an insert its key free), leave the copy equal to the table.
  const ids = fc.integer({ min: 1, max: 5 });
  const emails = fc.constantFrom("a@x", "A@X", "b@x", "c@x", "d@x", null);
  const statement = fc.oneof(
    fc
      .tuple(ids, emails)
      .map(([i, e]) => ["INSERT OR REPLACE INTO users VALUES (?, ?, 'r')", i, e]),
    emails.map((e) => ["REPLACE INTO users (email, name) VALUES (?, 'auto')", e]),
    fc
      .tuple(emails, ids)
      .map(([e, i]) => ["UPDATE OR REPLACE users SET email = ? WHERE id = ?", e, i]),
    fc.tuple(ids, ids).map(([to, i]) => ["UPDATE OR REPLACE users SET id = ? WHERE id = ?", to, i]),
    fc
      .tuple(emails, ids, ids)
      .map(([e, i, j]) => [
        "UPDATE OR REPLACE users SET email = ?, name = 'many' WHERE id IN (?, ?)",
        e,
        i,
        j,
      ]),
    fc
      .tuple(ids, emails)
      .map(([i, e]) => [
        "INSERT INTO users VALUES (?, ?, 'up') ON CONFLICT (id) DO UPDATE SET email = excluded.email",
        i,
        e,
      ]),
    fc
      .tuple(ids, emails)
      .map(([i, e]) => ["INSERT OR IGNORE INTO users VALUES (?, ?, 'ig')", i, e]),
    fc.tuple(ids, emails).map(([i, e]) => ["INSERT INTO users VALUES (?, ?, 'plain')", i, e]),
    ids.map((i) => ["DELETE FROM users WHERE id = ?", i]),
    fc
      .tuple(ids, emails)
      .map(([i, e]) => ["INSERT OR REPLACE INTO codes VALUES (?, ?)", `s${i}`, e]),
    fc
      .tuple(emails, ids)
      .map(([e, i]) => ["UPDATE OR REPLACE codes SET holder = ? WHERE code = ?", e, `s${i}`]),
  );

  it("for users (rowid, unique NOCASE email) and codes (WITHOUT ROWID, unique holder)", () => {
    let tried = 0;
    let ran = 0;
    fc.assert(
      fc.property(fc.array(statement, { maxLength: 25 }), (statements) => {
        db.exec("DELETE FROM users; DELETE FROM codes");
        const copy = { users: new Map<string, unknown>(), codes: new Map<string, unknown>() };
        const keyOf = (table: string, row: Record<string, unknown>) =>
          String(table === "users" ? row.id : row.code);
        for (const [sql, ...params] of statements as [string, ...unknown[]][]) {
          db.exec("DELETE FROM _edgecache_changes");
          tried++;
          try {
            db.prepare(sql).run(...params);
            ran++;
          } catch {
            // A constraint refused it: nothing was written, nothing recorded.
          }
          const recorded = db
            .prepare("SELECT tbl, op, old, new FROM _edgecache_changes ORDER BY seq")
            .all() as {
            tbl: "users" | "codes";
            op: string;
            old: string | null;
            new: string | null;
          }[];
          for (const change of recorded) {
            const rows = copy[change.tbl];
            if (change.old !== null) {
              const old = JSON.parse(change.old);
              expect(rows.get(keyOf(change.tbl, old)), `${sql} ${change.op}`).toEqual(old);
              rows.delete(keyOf(change.tbl, old));
            }
            if (change.new !== null) {
              const row = JSON.parse(change.new);
              expect(rows.has(keyOf(change.tbl, row)), `${sql} ${change.op}`).toBe(false);
              rows.set(keyOf(change.tbl, row), row);
            }
          }
          for (const table of ["users", "codes"] as const) {
            const actual = db.prepare(`SELECT * FROM ${table}`).all() as Record<string, unknown>[];
            expect(new Map(actual.map((r) => [keyOf(table, r), r])), sql).toEqual(copy[table]);
          }
        }
      }),
      { numRuns: 150 },
    );
    // Most statements ran (the sequences are not mostly refused).
    expect(ran / tried).toBeGreaterThan(0.7);
  });
});
