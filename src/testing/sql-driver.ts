import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Row } from "../core/data/query.ts";
import { EdgecacheError } from "../core/errors.ts";
import type { SqlClient } from "../database/client.ts";
import type { Statement, Steps } from "../database/dialect.ts";
import { type Driver, isTransactional } from "../database/driver.ts";
import { sqlDriver } from "../database/drivers.ts";

/**
 * A client under the suite, of a database it may create tables in: a library's client
 * edgecache recognises (`client`), or a driver written outside edgecache (`driver`).
 */
export type SqlClientBackend = (
  | {
      /** The library's client object (a libSQL `Client`, a postgres.js `Sql`, a D1 binding...). */
      client: unknown;
      driver?: undefined;
    }
  | {
      /** A Driver of your own (see edgecache/testing's `Driver`), held to the same contract. */
      driver: Driver;
      client?: undefined;
    }
) & {
  /** Releases the client and its database. */
  close(): Promise<void>;
};

/**
 * The SQL driver conformance suite: a database client must be recognised (the one place
 * that tells clients apart, client-kind.ts) and its driver (`sqlDriver`, drivers.ts) must
 * work as the one driver contract says, since every entry point runs on it.
 *
 * As a client (`SqlClient`: the raw SQL entry runs the application's statements through
 * it, change capture reads the catalog with it): rows as plain objects by column name with
 * their values as stored, parameters bound in order, `rowsAffected` for writes (`returning`
 * rows too) and 0 for reads, the catalog's columns of a table, and a failed statement (a
 * syntax error, a constraint) that rejects and leaves the client usable, the defect that
 * lost a real application's writes (issue 45).
 *
 * As a driver (`SqlDriver`: the data API's sources run on it): steps run statement by
 * statement, each handed its rows; a write is all or nothing (an interactive transaction
 * rolled back by a throw, or one batch rolled back by a failed statement); errors mapped to
 * edgecache's codes (a unique violation is E_CONFLICT), and an EdgecacheError the steps threw
 * (a refusal of edgecache's own) handed back as it is.
 *
 * `make` is called once; the tests share the database and make tables of their own,
 * named with a random suffix so that a shared server's other runs never meet them. It
 * gives a library's client, which must be recognised as `expected.kind`, or a driver of
 * your own, whose `kind` and `dialect` must be `expected`'s.
 *
 * @example
 * import Database from "better-sqlite3";
 * import { sqlDriverConformance } from "edgecache/testing";
 * sqlDriverConformance("better-sqlite3", async () => {
 *   const db = new Database(":memory:");
 *   return { client: db, close: async () => db.close() };
 * }, { kind: "better-sqlite3", dialect: "sqlite" });
 *
 * // A driver of your own (test/database/outside-driver.test.ts builds one over better-sqlite3):
 * sqlDriverConformance("my-driver", async () => {
 *   const driver = myDriver(":memory:");
 *   return { driver, close: () => driver.close() };
 * }, { kind: "my-driver", dialect: "sqlite" });
 */
export function sqlDriverConformance(
  name: string,
  make: () => Promise<SqlClientBackend>,
  expected: { kind: SqlClient["kind"]; dialect: SqlClient["dialect"] },
): void {
  describe(`SQL driver conformance: ${name}`, () => {
    let backend: SqlClientBackend;
    let client: Driver;
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
      const found = backend.driver ?? sqlDriver(backend.client);
      if (!found) throw new Error(`${name}: the client was not recognised`);
      client = found;
    }, 60_000);

    afterAll(async () => {
      if (!backend) return;
      for (const t of made) await client.run(`DROP TABLE IF EXISTS ${t}`, []).catch(() => {});
      await backend.close();
    });

    it("is recognised as its kind and dialect (a driver of your own: says them)", () => {
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

    it("runs steps statement by statement, each handed its rows", async () => {
      const t = await create("steps", "id INTEGER PRIMARY KEY, n INTEGER");
      await client.run(`INSERT INTO ${t} (id, n) VALUES (1, 10), (2, 20)`, []);
      function* sum(): Steps<number> {
        const first = yield { sql: `SELECT n FROM ${t} WHERE id = ${p(1)}`, params: [1] };
        const next = Number(first[0]!.n) / 10 + 1;
        const second = yield { sql: `SELECT n FROM ${t} WHERE id = ${p(1)}`, params: [next] };
        return Number(first[0]!.n) + Number(second[0]!.n);
      }
      expect(await client.read(sum())).toBe(30);
    });

    it("writes all or nothing: a transaction a step throws in, or a batch with a failed statement", async () => {
      const t = await create("atomic", "id INTEGER PRIMARY KEY, name TEXT UNIQUE");
      const insert = (id: number, name: string): Statement => ({
        sql: `INSERT INTO ${t} (id, name) VALUES (${p(1)}, ${p(2)})`,
        params: [id, name],
      });
      const names = async () =>
        (await client.run(`SELECT name FROM ${t} ORDER BY id`, [])).rows.map((r) => r.name);
      if (isTransactional(client)) {
        function* both(): Steps<void> {
          yield insert(1, "Ann");
          yield insert(2, "Bo");
        }
        await client.transaction(both());
        function* failing(): Steps<void> {
          yield insert(3, "Cy");
          throw new Error("changed my mind");
        }
        await expect(client.transaction(failing())).rejects.toThrow("changed my mind");
      } else {
        await client.batch([insert(1, "Ann"), insert(2, "Bo")]);
        await expect(client.batch([insert(3, "Cy"), insert(4, "Ann")])).rejects.toThrow();
      }
      expect(await names()).toEqual(["Ann", "Bo"]);
    });

    it("maps the database's errors to edgecache's: a unique violation is E_CONFLICT", async () => {
      const t = await create("errors", "id INTEGER PRIMARY KEY, name TEXT UNIQUE");
      await client.run(`INSERT INTO ${t} (id, name) VALUES (1, 'Ann')`, []);
      const failure = async (sql: string) => {
        try {
          await client.read(rows({ sql, params: [] }));
        } catch (err) {
          return client.error(err);
        }
        throw new Error(`expected ${sql} to fail`);
      };
      const conflict = await failure(`INSERT INTO ${t} (id, name) VALUES (2, 'Ann')`);
      expect(conflict.code).toBe("E_CONFLICT");
      // The message says what, not the SQL text.
      expect(conflict.message).not.toContain("INSERT");
      const missing = await failure(`SELECT * FROM ${table("absent")}`);
      expect(missing.code).not.toBe("E_CONFLICT");
      // A refusal of edgecache's own, thrown by the steps it runs, comes back as it is.
      const refusal = new EdgecacheError("E_NOT_FOUND", "conformance", "no such row");
      expect(client.error(refusal)).toBe(refusal);
    });
  });
}

function* rows(statement: Statement): Steps<Row[]> {
  return yield statement;
}

/** The suite's earlier name (it held clients to `SqlClient` alone). */
export const sqlClientConformance = sqlDriverConformance;
