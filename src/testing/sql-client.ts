import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SqlClient, sqlClient } from "../sql/client.ts";

/** A client under the suite, of a database it may create tables in. */
export interface SqlClientBackend {
  /** The library's client object (a libSQL `Client`, a postgres.js `Sql`, a D1 binding...). */
  client: unknown;
  /** Releases the client and its database. */
  close(): Promise<void>;
}

/**
 * The SQL client conformance suite: a database client must be recognised (the one place
 * that tells clients apart, client-kind.ts) and run statements as `SqlClient` says, since
 * the raw SQL entry runs the application's statements through it and change capture reads
 * the catalog with it: rows as plain objects by column name with their values as stored,
 * parameters bound in order, `rowsAffected` for writes (`returning` rows too) and 0 for
 * reads, the catalog's columns of a table, and a failed statement (a syntax error, a
 * constraint) that rejects and leaves the client usable, the defect that lost a real
 * application's writes (issue 45).
 *
 * `make` is called once; the tests share the database and make tables of their own,
 * named with a random suffix so that a shared server's other runs never meet them.
 *
 * @example
 * import Database from "better-sqlite3";
 * import { sqlClientConformance } from "edgecache/testing";
 * sqlClientConformance("better-sqlite3", async () => {
 *   const db = new Database(":memory:");
 *   return { client: db, close: async () => db.close() };
 * });
 */
export function sqlClientConformance(
  name: string,
  make: () => Promise<SqlClientBackend>,
  expected: { kind: SqlClient["kind"]; dialect: SqlClient["dialect"] },
): void {
  describe(`SQL client conformance: ${name}`, () => {
    let backend: SqlClientBackend;
    let client: SqlClient;
    const suffix = Math.random().toString(36).slice(2, 8);
    const table = (base: string) => `ec_${base}_${suffix}`;
    const p = (n: number) => (expected.dialect === "postgres" ? `$${n}` : "?");
    const made: string[] = [];
    const create = async (base: string, columns: string) => {
      const t = table(base);
      await client.run(`CREATE TABLE ${t} (${columns})`, []);
      made.push(t);
      return t;
    };

    beforeAll(async () => {
      backend = await make();
      const found = sqlClient(backend.client);
      if (!found) throw new Error(`${name}: the client was not recognised`);
      client = found;
    }, 60_000);

    afterAll(async () => {
      if (!backend) return;
      for (const t of made) await client.run(`DROP TABLE IF EXISTS ${t}`, []).catch(() => {});
      await backend.close();
    });

    it("is recognised as its kind and dialect", () => {
      expect({ kind: client.kind, dialect: client.dialect }).toEqual(expected);
    });

    it("binds parameters in order and returns rows as plain objects with their values", async () => {
      const t = await create("values", "id INTEGER PRIMARY KEY, name TEXT, score REAL, note TEXT");
      const inserted = await client.run(
        `INSERT INTO ${t} (id, name, score, note) VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)})`,
        [1, "Ann", 2.5, null],
      );
      expect(inserted).toEqual({ rows: [], rowsAffected: 1 });
      const read = await client.run(
        `SELECT id, name, score, note FROM ${t} WHERE name = ${p(1)} AND id = ${p(2)}`,
        ["Ann", 1],
      );
      expect(read.rowsAffected).toBe(0);
      expect(read.rows).toHaveLength(1);
      const [row] = read.rows;
      expect(Object.getPrototypeOf(row)).toBe(Object.prototype);
      expect(Object.keys(row!)).toEqual(["id", "name", "score", "note"]);
      expect({ ...row, id: Number(row!.id) }).toEqual({
        id: 1,
        name: "Ann",
        score: 2.5,
        note: null,
      });
    });

    it("counts the rows a write changed, and a read's as none", async () => {
      const t = await create("counts", "id INTEGER PRIMARY KEY, n INTEGER");
      const many = await client.run(`INSERT INTO ${t} (id, n) VALUES (1, 0), (2, 0), (3, 1)`, []);
      expect(many.rowsAffected).toBe(3);
      expect(
        (await client.run(`UPDATE ${t} SET n = n + 1 WHERE n = ${p(1)}`, [0])).rowsAffected,
      ).toBe(2);
      expect(
        (await client.run(`UPDATE ${t} SET n = 9 WHERE id = ${p(1)}`, [42])).rowsAffected,
      ).toBe(0);
      expect((await client.run(`DELETE FROM ${t} WHERE id = ${p(1)}`, [3])).rowsAffected).toBe(1);
      const all = await client.run(`SELECT id FROM ${t} ORDER BY id`, []);
      expect(all.rowsAffected).toBe(0);
      expect(all.rows.map((r) => Number(r.id))).toEqual([1, 2]);
    });

    it("returns a write's returning rows, counted as changed", async () => {
      const t = await create("returning", "id INTEGER PRIMARY KEY, name TEXT");
      const r = await client.run(
        `INSERT INTO ${t} (id, name) VALUES (${p(1)}, ${p(2)}), (${p(3)}, ${p(4)}) RETURNING id, name`,
        [1, "a", 2, "b"],
      );
      expect(r.rowsAffected).toBe(2);
      expect(r.rows.map((x) => [Number(x.id), x.name]).sort()).toEqual([
        [1, "a"],
        [2, "b"],
      ]);
    });

    it("reads a table's columns and declared types from the catalog, none for an unknown table", async () => {
      const t = await create("catalog", "id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT");
      const columns = await client.columns(t);
      expect(columns.map((c) => c.name)).toEqual(["id", "title", "body"]);
      expect(columns.map((c) => c.type.toLowerCase())).toEqual(["integer", "text", "text"]);
      expect(await client.columns(table("missing"))).toEqual([]);
    });

    it("rejects a failed statement and stays usable: a syntax error, a constraint, a missing table", async () => {
      const t = await create("failures", "id INTEGER PRIMARY KEY, name TEXT UNIQUE");
      await client.run(`INSERT INTO ${t} (id, name) VALUES (1, 'Ann')`, []);
      await expect(client.run("SELEC nothing", [])).rejects.toThrow();
      await expect(
        client.run(`INSERT INTO ${t} (id, name) VALUES (${p(1)}, ${p(2)})`, [2, "Ann"]),
      ).rejects.toThrow();
      await expect(client.run(`SELECT * FROM ${table("absent")}`, [])).rejects.toThrow();
      // The client goes on: a write after the failures is applied and read back.
      await client.run(`INSERT INTO ${t} (id, name) VALUES (${p(1)}, ${p(2)})`, [2, "Bo"]);
      const rows = (await client.run(`SELECT name FROM ${t} ORDER BY id`, [])).rows;
      expect(rows.map((r) => r.name)).toEqual(["Ann", "Bo"]);
    });
  });
}
