import { describe, expect, it } from "vitest";
import { DependencyIndex } from "../../src/core/deps/index.ts";
import { planWrite, type WriteEvent } from "../../src/core/deps/planner.ts";
import { matches } from "../../src/core/deps/predicate.ts";
import { namePlaceholders } from "../../src/core/sql/parse.ts";
import {
  NO_LIMIT,
  registrationOf,
  type SqlDialect,
  type SqlSchema,
  type SqlTable,
  sqlShape,
  wholeTable,
} from "../../src/core/sql/shapes.ts";

const users: SqlTable = {
  primaryKey: "id",
  columns: { id: "number", name: "text", age: "number", at: "other" },
};
const tables: Record<string, SqlTable> = {
  users,
  "app.users": users,
  logs: { columns: { id: "number" } },
};
const schema: SqlSchema = (t) => tables[t];

/** Drizzle's spelling of a select in each dialect: `?` on SQLite, `$n` on PostgreSQL. */
function drizzleSql(dialect: SqlDialect, sql: string): string {
  let n = 0;
  return dialect === "postgres" ? sql.replace(/\?/g, () => `$${++n}`) : sql;
}
const shape = (dialect: SqlDialect, sql: string, params: unknown[] = []) =>
  sqlShape(drizzleSql(dialect, sql), params, dialect, schema);

describe("sqlShape: what a select depends on", () => {
  for (const dialect of ["sqlite", "postgres"] as const) {
    describe(dialect, () => {
      it("a primary-key lookup registers its row, whatever the window", () => {
        const s = shape(
          dialect,
          'select "id", "name" from "users" where "users"."id" = ? limit ?',
          [5, 1],
        );
        expect(s).toMatchObject({
          tables: ["users"],
          widened: [],
          lists: { rowIds: [5], disjuncts: [] },
        });
        const r = registrationOf(s, [[5, "Ann"]]);
        expect(r).toEqual({ tags: ["users", "users#5"], lists: [] });
      });

      it("IN on the primary key is one lookup however long the list; NULLs in it match nothing", () => {
        const ids = Array.from({ length: 100 }, (_, i) => i);
        const s = shape(
          dialect,
          `select "id" from "users" where "users"."id" in (${ids.map(() => "?").join(", ")}, ?)`,
          [...ids, null],
        );
        expect(s.lists?.rowIds).toEqual(ids);
        expect(s.fallback).toBeUndefined();
      });

      it("AND/OR become one list per disjunct with the same window; the order ends at the key", () => {
        const s = shape(
          dialect,
          'select "id", "name", "age" from "users" where ("users"."age" >= ? and ("users"."name" = ? or "users"."age" is null)) order by "users"."age" desc, "users"."id", "users"."name" limit ? offset ?',
          [3, "Ann", 10, 20],
        );
        expect(s.widened).toEqual([]);
        expect(s.lists?.disjuncts).toEqual([
          [
            { column: "age", op: "gte", value: 3 },
            { column: "name", op: "eq", value: "Ann" },
          ],
          [
            { column: "age", op: "gte", value: 3 },
            { column: "age", op: "null" },
          ],
        ]);
        expect(s.lists?.sort.map((k) => k.column)).toEqual(["age", "id"]);
        expect(s.lists).toMatchObject({ ordered: true, offset: 20, limit: 10 });
        const r = registrationOf(s, [
          [7, "Ann", 9],
          [8, "Bo", null],
        ]);
        expect(r.lists).toHaveLength(2);
        expect(r.lists[0]).toMatchObject({ count: 2, last: [null, 8] });
      });

      it("a comparison with NULL matches nothing", () => {
        const s = shape(dialect, 'select "id" from "users" where "users"."age" > ?', [null]);
        expect(s.lists).toMatchObject({ rowIds: [], disjuncts: [] });
        expect(registrationOf(s, []).lists).toEqual([]);
      });

      it("a value of another type than its column is not compared: the condition is dropped", () => {
        // SQLite's affinity would compare 5 with a text column as '5': not followed.
        const s = shape(
          dialect,
          'select "id" from "users" where "users"."name" = ? and "users"."age" < ?',
          [5, 3],
        );
        expect(s.widened).toEqual(["type"]);
        expect(s.lists?.disjuncts).toEqual([[{ column: "age", op: "lt", value: 3 }]]);
      });

      it("functions and NOT in WHERE are taken as TRUE: a wider predicate, counted", () => {
        const s = shape(
          dialect,
          'select "id" from "users" where lower("users"."name") = ? and not ("users"."age" = ?)',
          ["x", 1],
        );
        expect(s.widened).toEqual(["expression"]);
        expect(s.lists?.disjuncts).toEqual([[]]);
      });

      it("LIMIT without ORDER BY registers the predicate only (no window)", () => {
        const s = shape(
          dialect,
          'select "id", "age" from "users" where "users"."age" = ? limit ?',
          [1, 2],
        );
        expect(s.widened).toEqual(["order"]);
        const r = registrationOf(s, [
          [1, 1],
          [2, 1],
        ]);
        expect(r.lists[0]?.last).toBeUndefined();
      });

      it("falls back to table level, with a reason, for what the planner cannot follow", () => {
        const cases: [string, string][] = [
          ['select count(*) from "users"', "aggregate"],
          ['select "age", max("id") from "users" group by "users"."age"', "group-by"],
          ['select "age" from "users" group by "users"."age"', "group-by"],
          ['select distinct "age" from "users"', "distinct"],
          ['select "id" from "users" where "users"."id" in (select "id" from "logs")', "subquery"],
          ['with "u" as (select "id" from "users") select "id" from "u"', "cte"],
          [
            'select "users"."id" from "users" left join "logs" on "logs"."id" = "users"."id"',
            "join",
          ],
          ['select "id" from "nowhere"', "unknown-table"],
          ['select "id" from "logs"', "no-primary-key"],
          ['select "id" from "users" union select "id" from "logs"', "set-operation"],
          ["this is not sql", "parse"],
        ];
        for (const [sql, reason] of cases) {
          expect(shape(dialect, sql).fallback, sql).toBe(reason);
        }
        const r = registrationOf(shape(dialect, cases[4]![0]), []);
        // At table level: any write to a table it read drops it.
        expect(r).toEqual({
          tags: ["users", "logs"],
          lists: [wholeTable("users"), wholeTable("logs")],
        });
      });

      it("too many disjuncts fall back to the table", () => {
        const terms = Array.from({ length: 6 }, () => '("users"."age" = ? or "users"."name" = ?)');
        const params = Array.from({ length: 12 }, (_, i) => (i % 2 ? "x" : i));
        expect(
          shape(dialect, `select "id" from "users" where ${terms.join(" and ")}`, params).fallback,
        ).toBe("disjuncts");
      });
    });
  }

  it("SQLite's LIKE ignores ASCII case: one prefix per case variant, at most 3 letters", () => {
    const s = shape("sqlite", 'select "id" from "users" where "users"."name" like ?', ["ab%"]);
    expect(s.widened).toEqual([]);
    expect(s.lists?.disjuncts.map((d) => d[0])).toEqual([
      { column: "name", op: "prefix", value: "ab" },
      { column: "name", op: "prefix", value: "aB" },
      { column: "name", op: "prefix", value: "Ab" },
      { column: "name", op: "prefix", value: "AB" },
    ]);
    const long = shape("sqlite", 'select "id" from "users" where "users"."name" like ?', [
      "1abcd%",
    ]);
    expect(long.widened).toEqual(["like"]);
    expect(long.lists?.disjuncts).toHaveLength(8);
    expect(long.lists?.disjuncts[0]).toEqual([{ column: "name", op: "prefix", value: "1abc" }]);
    // A row the database matches is matched by some registered disjunct.
    for (const name of ["ABx", "abc", "aBz"]) {
      expect(s.lists?.disjuncts.some((d) => matches({ name }, d as never))).toBe(true);
    }
  });

  it("PostgreSQL's LIKE is case-sensitive; a pattern past its prefix is widened", () => {
    const s = shape("postgres", 'select "id" from "users" where "users"."name" like ?', ["ab%"]);
    expect(s.lists?.disjuncts).toEqual([[{ column: "name", op: "prefix", value: "ab" }]]);
    const mid = shape("postgres", 'select "id" from "users" where "users"."name" like ?', [
      "a\\%b%",
    ]);
    expect(mid.widened).toEqual(["like"]);
    expect(mid.lists?.disjuncts).toEqual([[{ column: "name", op: "prefix", value: "a" }]]);
  });

  it('PostgreSQL orders text by its collation: a window needs COLLATE "C"', () => {
    const plain = shape(
      "postgres",
      'select "id", "name" from "users" where "users"."age" = ? order by "users"."name", "users"."id" limit ?',
      [1, 3],
    );
    expect(plain.widened).toEqual(["collation"]);
    expect(plain.lists?.ordered).toBe(false);
    const c = shape(
      "postgres",
      'select "id", "name" from "users" where "users"."age" = ? order by "users"."name" collate "C", "users"."id" limit ?',
      [1, 3],
    );
    expect(c.widened).toEqual([]);
    expect(c.lists?.ordered).toBe(true);
    // Ranges on text need it too; equality does not.
    expect(
      shape("postgres", 'select "id" from "users" where "users"."name" > ?', ["b"]).widened,
    ).toEqual(["collation"]);
    expect(
      shape("sqlite", 'select "id" from "users" where "users"."name" > ?', ["b"]).widened,
    ).toEqual([]);
  });

  it("PostgreSQL sorts NULLs last ascending: the sort says so, and the planner follows", () => {
    const s = shape(
      "postgres",
      'select "id", "age" from "users" where "users"."id" > ? order by "users"."age", "users"."id" limit ?',
      [0, 2],
    );
    expect(s.lists?.sort).toEqual([
      { column: "age", desc: false, nulls: "last" },
      { column: "id", desc: false, nulls: "last" },
    ]);
    const r = registrationOf(s, [
      [1, 5],
      [2, 6],
    ]);
    const deps = {
      keysForTag: () => [],
      listsOn: () => r.lists.map((l) => ["k", l] as const),
    };
    const planSchema = { primaryKey: () => "id", joinColumns: () => [] };
    const insert = (age: number | null): WriteEvent => ({
      table: "users",
      op: "insert",
      new: { id: 9, age },
    });
    // A NULL age sorts after the window on PostgreSQL: the cached page stays.
    expect(planWrite(insert(null), planSchema, deps).keys.size).toBe(0);
    expect(planWrite(insert(5), planSchema, deps).keys.size).toBe(1);
  });

  it("a schema-qualified table is named schema.table; public is the bare name", () => {
    expect(
      shape("postgres", 'select "id" from "app"."users" where "app"."users"."id" = ?', [1]),
    ).toMatchObject({
      tables: ["app.users"],
      lists: { rowIds: [1] },
    });
    expect(shape("postgres", 'select "id" from "public"."users"').tables).toEqual(["users"]);
  });

  it("without LIMIT the window holds every row", () => {
    const s = shape("sqlite", 'select "id" from "users" where "users"."age" = ?', [1]);
    expect(s.lists).toMatchObject({ limit: NO_LIMIT, offset: 0 });
  });

  it("SQLite placeholders are numbered as SQLite binds them, never inside strings or names", () => {
    expect(
      namePlaceholders(`select "a?" from t where x = ? and y = '?' and z = ?5 and w = ? -- ?`),
    ).toBe(`select "a?" from t where x = :p1 and y = '?' and z = :p5 and w = :p6 -- ?`);
  });
});

describe("the dependency index holds several lists of one key on one table", () => {
  it("a write matching any disjunct of an OR drops the entry", () => {
    const index = new DependencyIndex();
    const s = shape(
      "sqlite",
      'select "id" from "users" where "users"."age" = ? or "users"."name" = ?',
      [1, "x"],
    );
    index.add("k", [], registrationOf(s, []).lists, Number.POSITIVE_INFINITY);
    expect([...index.listsOn("users")]).toHaveLength(2);
    const planSchema = { primaryKey: () => "id", joinColumns: () => [] };
    const insert = (row: Record<string, unknown>): WriteEvent => ({
      table: "users",
      op: "insert",
      new: row,
    });
    expect(planWrite(insert({ id: 1, age: 1, name: "y" }), planSchema, index).keys).toEqual(
      new Set(["k"]),
    );
    expect(planWrite(insert({ id: 2, age: 2, name: "x" }), planSchema, index).keys).toEqual(
      new Set(["k"]),
    );
    expect(planWrite(insert({ id: 3, age: 2, name: "y" }), planSchema, index).keys.size).toBe(0);
    index.remove("k");
    expect([...index.listsOn("users")]).toHaveLength(0);
  });
});
