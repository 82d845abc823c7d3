import { describe, expect, it } from "vitest";
import { DependencyIndex } from "../../../src/core/deps/index.ts";
import { planWrite, type WriteEvent } from "../../../src/core/deps/planner.ts";
import { matches } from "../../../src/core/deps/predicate.ts";
import { namePlaceholders } from "../../../src/database/analysis/parse.ts";
import {
  NO_LIMIT,
  registrationOf,
  type SqlDialect,
  type SqlSchema,
  type SqlTable,
  sqlShape,
  wholeTable,
} from "../../../src/database/analysis/shapes.ts";

const users: SqlTable = {
  primaryKey: "id",
  columns: { id: "number", name: "text", age: "number", at: "other" },
};
const orders: SqlTable = {
  primaryKey: "id",
  columns: { id: "number", user_id: "number", total: "number", note: "text" },
};
const tables: Record<string, SqlTable> = {
  users,
  orders,
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
          ['select "age", max("id") from "users" group by "users"."age"', "group-by"],
          ['select "age" from "users" group by "users"."age"', "group-by"],
          ['select count(*) from "users" having count(*) > 1', "group-by"],
          ['select distinct "age" from "users"', "distinct"],
          [
            'select "id" from "users" order by (select count(*) from "orders" where "orders"."user_id" = "users"."id")',
            "subquery",
          ],
          ['select "id" from (select "id" from "users") as "u"', "subquery"],
          ['with "u" as (select "id" from "users") select "id" from "u"', "cte"],
          ['select "id" from "nowhere"', "unknown-table"],
          ['select "id" from "logs"', "no-primary-key"],
          ['select "id" from "users" union select "id" from "logs"', "set-operation"],
          ["this is not sql", "parse"],
        ];
        for (const [sql, reason] of cases) {
          expect(shape(dialect, sql).fallback, sql).toBe(reason);
        }
        const r = registrationOf(shape(dialect, cases[9]![0]), []);
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

  it('PostgreSQL: a lone quoted column before COLLATE (Kysely\'s `"name" collate "C"`) is read', () => {
    const s = shape(
      "postgres",
      'select "id", "name" from "users" where "age" = ? order by "name" collate "C" desc, "id" asc limit ?',
      [3, 5],
    );
    expect(s.fallback).toBeUndefined();
    expect(s.widened).toEqual([]);
    expect(s.lists?.sort).toEqual([
      { column: "name", desc: true, nulls: "first", collated: true },
      { column: "id", desc: false, nulls: "last" },
    ]);
    // A quoted name that only looks like the stand-in, or COLLATE inside a string, stays.
    const t = shape(
      "postgres",
      `select "id" from "users" where "name" = 'x" collate' order by "id"`,
    );
    expect(t.fallback).toBeUndefined();
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

describe("Prisma's spellings", () => {
  const prisma = (sql: string, params: unknown[]) => sqlShape(sql, params, "sqlite", schema);

  it("SQLite columns named main.table.column (as Prisma writes them) read as the table's", () => {
    const s = prisma(
      "SELECT `main`.`users`.`id`, `main`.`users`.`name` FROM `main`.`users` WHERE (`main`.`users`.`id` = ? AND 1=1) LIMIT ? OFFSET ?",
      [7, 1, 0],
    );
    expect(s.fallback).toBeUndefined();
    expect(s.widened).toEqual([]);
    expect(s.lists?.rowIds).toEqual([7]);
    // Another schema's name is left as written (and the grammar refuses it).
    expect(namePlaceholders('SELECT "aux"."t"."c" FROM "aux"."t"')).toBe(
      'SELECT "aux"."t"."c" FROM "aux"."t"',
    );
    expect(namePlaceholders("SELECT 'main.t.c' FROM t")).toBe("SELECT 'main.t.c' FROM t");
  });

  it("1=1 is TRUE and 1=0 FALSE, exactly", () => {
    const s = prisma("SELECT id FROM users WHERE 1=0 OR age = ?", [3]);
    expect(s.widened).toEqual([]);
    expect(s.lists?.disjuncts).toEqual([[{ column: "age", op: "eq", value: 3 }]]);
  });

  it("LIKE (? || '%'), Prisma's startsWith, is the prefix it spells", () => {
    const s = prisma("SELECT id FROM users WHERE name LIKE (? || '%') ORDER BY id", ["B1"]);
    expect(s.widened).toEqual([]);
    expect(s.lists?.disjuncts).toEqual([
      [{ column: "name", op: "prefix", value: "b1" }],
      [{ column: "name", op: "prefix", value: "B1" }],
    ]);
    // A number joined to text is not read: SQLite would turn it into text first.
    expect(prisma("SELECT id FROM users WHERE name LIKE (? || '%')", [1]).widened).toEqual([
      "expression",
    ]);
  });

  it("on PostgreSQL, startsWith's text cast of a text column (`name::text LIKE ($1 || '%')`) is the prefix it spells", () => {
    const pg = (sql: string, params: unknown[]) => sqlShape(sql, params, "postgres", schema);
    const s = pg(
      `SELECT "public"."users"."id", "public"."users"."name" FROM "public"."users" WHERE "public"."users"."name"::text LIKE ($1 || '%') ORDER BY "public"."users"."id" ASC LIMIT $2 OFFSET $3`,
      ["B1", "5", "0"],
    );
    expect(s.widened).toEqual([]);
    expect(s.lists?.disjuncts).toEqual([[{ column: "name", op: "prefix", value: "B1" }]]);
    expect(
      pg("SELECT id FROM users WHERE CAST(users.name AS TEXT) = $1", ["Ann"]).lists?.disjuncts,
    ).toEqual([[{ column: "name", op: "eq", value: "Ann" }]]);
    // Not a cast that changes the value or its order: a cut varchar, a number's text.
    expect(pg("SELECT id FROM users WHERE name::varchar(1) = $1", ["A"]).widened).toEqual([
      "expression",
    ]);
    expect(pg("SELECT id FROM users WHERE age::text LIKE ($1 || '%')", ["1"]).widened).toEqual([
      "expression",
    ]);
  });

  it("a count over a page of a derived table depends on every row its predicate matches", () => {
    const s = prisma(
      "SELECT COUNT(*) AS `_count$_all` FROM (SELECT `main`.`orders`.`id` FROM `main`.`orders` WHERE `main`.`orders`.`user_id` = ? LIMIT ? OFFSET ?) AS `sub`",
      [5, 10, 20],
    );
    expect(s.fallback).toBeUndefined();
    expect(s.tables).toEqual(["orders"]);
    expect(s.lists).toMatchObject({
      grouping: "aggregate",
      disjuncts: [[{ column: "user_id", op: "eq", value: 5 }]],
      offset: 0,
      limit: NO_LIMIT,
    });
    const { lists } = registrationOf(s, [{ _count$_all: 3 }]);
    const row = (user_id: number) => ({ id: 99, user_id, total: 1, note: "x" });
    expect(matches(row(5), lists[0]!.filters)).toBe(true);
    expect(matches(row(6), lists[0]!.filters)).toBe(false);
    expect(lists[0]).toMatchObject({ offset: 0, limit: NO_LIMIT });
    // Aggregates beside a bare column, or a join inside, are not read this way.
    expect(prisma("SELECT COUNT(*), sub.id FROM (SELECT id FROM orders) AS sub", []).fallback).toBe(
      "subquery",
    );
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

describe("joins along a key: each table's writes reach the results they can change", () => {
  const planSchema = { primaryKey: () => "id", joinColumns: () => [] };
  type Rows = Record<string, unknown>;
  /** The keys a write to `table` drops, among the entries registered in `index`. */
  const drops = (index: DependencyIndex, table: string, old?: Rows, row?: Rows) =>
    [
      ...planWrite(
        {
          table,
          op: old && row ? "update" : old ? "delete" : "insert",
          ...(old && { old }),
          ...(row && { new: row }),
        },
        planSchema,
        index,
      ).keys,
    ].sort();

  for (const dialect of ["sqlite", "postgres"] as const) {
    describe(dialect, () => {
      it("orders joined to their users: an order's write reaches the pages it sorts into; a user's, its orders' rows and the lists of its conditions", () => {
        const sql =
          'select "orders"."id", "orders"."user_id", "users"."name" from "orders" inner join "users" on "users"."id" = "orders"."user_id" where "users"."name" = ? order by "orders"."id" limit ?';
        const s = shape(dialect, sql, ["Ann", 2]);
        expect(s.fallback).toBeUndefined();
        expect(s.widened).toEqual(["join"]);
        expect(s.tables.sort()).toEqual(["orders", "users"]);
        expect(s.lists).toMatchObject({
          table: "orders",
          disjuncts: [[]],
          ordered: true,
          limit: 2,
          joins: [{ table: "users", kind: "parent", from: "user_id", inner: true }],
        });
        const r = registrationOf(s, [
          [10, 1, "Ann"],
          [11, 1, "Ann"],
        ]);
        expect(r.tags.sort()).toEqual(
          ["orders", "orders#10", "orders#11", "users", "users#1"].sort(),
        );
        const index = new DependencyIndex();
        index.add("page", r.tags, r.lists, Number.POSITIVE_INFINITY);
        // An order after the full page: kept; one before it: dropped.
        expect(drops(index, "orders", undefined, { id: 12, user_id: 1, total: 1 })).toEqual([]);
        expect(drops(index, "orders", undefined, { id: 9, user_id: 2, total: 1 })).toEqual([
          "page",
        ]);
        // User 1 renamed: its orders' rows change. User 2 named Ann: its orders may come in.
        expect(drops(index, "users", { id: 1, name: "Ann" }, { id: 1, name: "Bo" })).toEqual([
          "page",
        ]);
        expect(drops(index, "users", { id: 2, name: "Cy" }, { id: 2, name: "Ann" })).toEqual([
          "page",
        ]);
        // A user neither named Ann nor holding a listed order: kept.
        expect(drops(index, "users", { id: 3, name: "Cy" }, { id: 3, name: "Di" })).toEqual([]);
      });

      it("a user with its orders (LEFT JOIN by key): only that user's rows and orders reach it", () => {
        const sql =
          'select "users"."id", "users"."name", "orders"."id", "orders"."total" from "users" left join "orders" on "orders"."user_id" = "users"."id" where "users"."id" = ?';
        const s = shape(dialect, sql, [1]);
        expect(s).toMatchObject({ widened: [], lists: { rowIds: [1], disjuncts: [] } });
        expect(s.lists?.joins?.[0]).toMatchObject({
          kind: "children",
          column: "user_id",
          ids: [1],
        });
        expect(s.lists?.joins?.[0]?.whole).toBeUndefined();
        const r = registrationOf(s, [
          [1, "Ann", 10, 5],
          [1, "Ann", 11, 7],
        ]);
        const index = new DependencyIndex();
        index.add("ann", r.tags, r.lists, Number.POSITIVE_INFINITY);
        expect(drops(index, "orders", undefined, { id: 12, user_id: 2, total: 1 })).toEqual([]);
        expect(drops(index, "orders", undefined, { id: 12, user_id: 1, total: 1 })).toEqual([
          "ann",
        ]);
        // An order moved from user 1 to 2, or from 2 to 1.
        expect(
          drops(index, "orders", { id: 10, user_id: 1, total: 5 }, { id: 10, user_id: 2 }),
        ).toEqual(["ann"]);
        expect(
          drops(index, "orders", { id: 13, user_id: 2, total: 5 }, { id: 13, user_id: "1" }),
        ).toEqual(["ann"]);
        expect(drops(index, "users", { id: 2, name: "Bo" }, { id: 2, name: "Ann" })).toEqual([]);
        expect(drops(index, "users", { id: 1, name: "Ann" }, { id: 1, name: "Al" })).toEqual([
          "ann",
        ]);
      });

      it("a page of users with their orders: orders of the users on it, and users that sort into it", () => {
        const sql =
          'select "users"."id", "users"."age", "orders"."id" from "users" left join "orders" on "orders"."user_id" = "users"."id" where "users"."age" > ? order by "users"."age", "users"."id", "orders"."id" limit ?';
        const s = shape(dialect, sql, [20, 3]);
        expect(s.widened).toEqual([]);
        const r = registrationOf(s, [
          [1, 30, 10],
          [1, 30, 11],
          [2, 40, null],
        ]);
        const index = new DependencyIndex();
        index.add("page", r.tags, r.lists, Number.POSITIVE_INFINITY);
        expect(drops(index, "orders", undefined, { id: 12, user_id: 2 })).toEqual(["page"]);
        expect(drops(index, "orders", undefined, { id: 12, user_id: 3 })).toEqual([]);
        expect(drops(index, "users", undefined, { id: 3, age: 50 })).toEqual([]);
        expect(drops(index, "users", undefined, { id: 3, age: 35 })).toEqual(["page"]);
        expect(drops(index, "users", undefined, { id: 3, age: 10 })).toEqual([]);
      });

      it("what a user's orders cannot be followed for goes to table level on the orders", () => {
        const cases = [
          // An inner join: users without orders are missing, and one order brings one in.
          'select "users"."id" from "users" inner join "orders" on "orders"."user_id" = "users"."id" where "users"."age" > ?',
          // A condition on the orders: users whose orders all fail it are missing.
          'select "users"."id" from "users" left join "orders" on "orders"."user_id" = "users"."id" where "users"."age" > ? and "orders"."total" > 1',
          // An offset: orders of users before the page shift it.
          'select "users"."id" from "users" left join "orders" on "orders"."user_id" = "users"."id" where "users"."age" > ? order by "users"."id" limit 2 offset 1',
        ];
        for (const sql of cases) {
          const s = shape(dialect, sql, [20]);
          expect(s.fallback, sql).toBeUndefined();
          expect(s.widened, sql).toContain("join");
          expect(s.lists?.joins?.[0]?.whole, sql).toBe("join");
          expect(registrationOf(s, [[1]]).lists, sql).toContainEqual(wholeTable("orders"));
        }
      });

      it("joins the planner cannot read at all fall back on both tables with the reason join", () => {
        const cases = [
          'select "users"."id" from "users" natural join "orders"',
          'select "users"."id" from "users", "orders"',
        ];
        if (dialect === "postgres") {
          cases.push(
            'select "users"."id" from "users" right join "orders" on "orders"."user_id" = "users"."id"',
            'select "users"."id" from "users" full join "orders" on "orders"."user_id" = "users"."id"',
          );
        }
        for (const sql of cases) {
          const s = shape(dialect, sql);
          expect(s.fallback, sql).toBe("join");
          expect(registrationOf(s, []).lists, sql).toEqual([
            wholeTable("users"),
            wholeTable("orders"),
          ]);
        }
      });

      it("a join not along a key registers that table at table level, the base by its conditions", () => {
        const cases = [
          'select "users"."id" from "users" join "orders" on "orders"."total" = "users"."age" where "users"."age" > ?',
          'select "users"."id" from "users" join "orders" on "orders"."user_id" = "users"."id" and "orders"."total" > 1 where "users"."age" > ?',
          // A table joined to itself: one write changes both sides at once.
          'select "users"."id" from "users" join "users" as "v" on "v"."id" = "users"."age" where "users"."age" > ?',
        ];
        for (const sql of cases) {
          const s = shape(dialect, sql, [20]);
          expect(s.fallback, sql).toBeUndefined();
          expect(s.widened, sql).toEqual(["join"]);
          expect(s.lists?.joins?.[0]?.whole, sql).toBe("join");
          const r = registrationOf(s, [[1]]);
          expect(r.lists, sql).toContainEqual(wholeTable(s.lists!.joins![0]!.table));
          expect(r.lists[0], sql).toMatchObject({
            table: "users",
            filters: [{ column: "age", op: "gt", value: 20 }],
          });
        }
      });

      it("a left join's condition that a missing parent satisfies: deleting any parent may bring its children in", () => {
        const sql =
          'select "orders"."id", "orders"."user_id" from "orders" left join "users" on "users"."id" = "orders"."user_id" where "users"."name" is null order by "orders"."id"';
        const s = shape(dialect, sql);
        // Only a user's name (and its coming and going) decides which orders are in it.
        expect(s.lists?.joins?.[0]?.reach).toEqual({
          rowIds: [],
          disjuncts: [[]],
          columns: ["name"],
        });
        const index = new DependencyIndex();
        const r = registrationOf(s, []);
        index.add("orphans", r.tags, r.lists, Number.POSITIVE_INFINITY);
        // User 4 named: its orders were not in the result; deleted, they are (NULL name).
        expect(drops(index, "users", { id: 4, name: "Ann" })).toEqual(["orphans"]);
        // Unnamed, they are too; a birthday changes nothing here.
        const ann = { id: 4, name: "Ann", age: 30 };
        expect(drops(index, "users", ann, { ...ann, name: null })).toEqual(["orphans"]);
        expect(drops(index, "users", ann, { ...ann, age: 31 })).toEqual([]);
      });

      it("a parent read by nothing but its key (a count over an inner join): only its coming and going reaches the result", () => {
        for (const sql of [
          'select count(*) from "orders" inner join "users" on "users"."id" = "orders"."user_id"',
          'select "orders"."id", "orders"."total" from "orders" inner join "users" on "orders"."user_id" = "users"."id" where "orders"."total" > ? order by "orders"."id" limit ?',
        ]) {
          const params = sql.includes("?") ? [5, 2] : [];
          const s = shape(dialect, sql, params);
          expect(s.widened, sql).toEqual([]);
          expect(s.lists?.joins?.[0], sql).toMatchObject({ table: "users", existence: true });
          const r = registrationOf(s, sql.includes("count") ? [[2]] : [[10, 7]]);
          const index = new DependencyIndex();
          index.add("q", r.tags, r.lists, Number.POSITIVE_INFINITY);
          const ann = { id: 1, name: "Ann", age: 30 };
          // Renamed, a year older: no order leaves or enters.
          expect(drops(index, "users", ann, { ...ann, name: "Bo", age: 31 }), sql).toEqual([]);
          // A user comes (an order's dangling reference completed), goes, or changes key.
          expect(drops(index, "users", undefined, ann), sql).toEqual(["q"]);
          expect(drops(index, "users", ann), sql).toEqual(["q"]);
          expect(drops(index, "users", ann, { ...ann, id: 2 }), sql).toEqual(["q"]);
          // An image without the key may hide a change of it.
          expect(drops(index, "users", { name: "Ann" }, { name: "Bo" }), sql).toEqual(["q"]);
        }
        // Read anywhere else (here in a subquery of the select list), it is followed by its rows.
        const read = shape(
          dialect,
          'select "orders"."id", (select 1 where "users"."age" > 3) from "orders" inner join "users" on "users"."id" = "orders"."user_id"',
        );
        expect(read.lists?.joins?.[0]?.existence).toBeUndefined();
        // A `*` that may be the parent's: not known to read nothing of it.
        const star = shape(
          dialect,
          'select * from "orders" inner join "users" on "users"."id" = "orders"."user_id"',
        );
        expect(star.lists?.joins?.[0]?.existence).toBeUndefined();
      });

      it("the columns a list names are those read for certain: a bare name no known table places leaves them unknown", () => {
        const known = (sql: string, t: SqlSchema = schema) =>
          sqlShape(drizzleSql(dialect, sql), [], dialect, t).lists?.decides;
        // Bare names of a subquery's table are its own; those of the base, the base's.
        expect(
          known(
            'select "name" from "users" where "id" in (select "user_id" from "orders" where "total" > 1)',
          ),
        ).toEqual(["name"]);
        // The catalog not read yet (no column kinds): `name` may be the base's, not known.
        const bare = (t: string) => (t === "users" ? { primaryKey: "id" } : undefined);
        expect(known('select "name" from "users"', bare)).toBeUndefined();
        // Nor the parent's of a join whose kinds are not known: not read by its key alone.
        const partial = (t: string) => (t === "users" ? { primaryKey: "id" } : tables[t]);
        const joined = sqlShape(
          drizzleSql(
            dialect,
            'select "orders"."id", "name" from "orders" inner join "users" on "users"."id" = "orders"."user_id"',
          ),
          [],
          dialect,
          partial,
        );
        expect(joined.lists?.joins?.[0]?.existence).toBeUndefined();
        // A `*` of the select's own: unknown; one of a subquery's own FROM: not the base's.
        expect(known('select * from "users"')).toBeUndefined();
        expect(
          known(
            'select "name" from "users" where exists (select * from "orders" where "total" > 1)',
          ),
        ).toEqual(["name"]);
      });

      it("a parent whose key the result does not hold goes to table level on the parent, and says which key to select", () => {
        const s = shape(
          dialect,
          'select "orders"."id", "users"."name" from "orders" left join "users" on "users"."id" = "orders"."user_id"',
        );
        expect(s.lists?.joins?.[0]?.whole).toBe("key-not-selected");
        // A count holds no key to select: the reason stays join.
        const counted = shape(
          dialect,
          'select count(*) from "orders" inner join "users" on "users"."id" = "orders"."user_id" where "users"."name" = ?',
          ["Ann"],
        );
        expect(counted.lists?.joins?.[0]?.whole).toBe("join");
        expect(registrationOf(s, [[10, "Ann"]]).lists).toContainEqual(wholeTable("users"));
      });

      it("rows read by name: keys under a name two columns share are not read", () => {
        const s = shape(
          dialect,
          'select "orders"."id", "orders"."user_id", "users"."id", "users"."name" from "orders" left join "users" on "users"."id" = "orders"."user_id"',
        );
        const r = registrationOf(s, [{ id: 10, user_id: 1, name: "Ann" }]);
        expect(r.tags).toContain("users#1");
        // The result's "id" is either table's: no order tag is taken from it.
        expect(r.tags).not.toContain("orders#10");
        // A user with their orders, read by name: the user's key is under a shared name, so
        // the orders go to table level, and the registration says it went wider.
        const children = shape(
          dialect,
          'select "users"."id", "orders"."id" from "users" left join "orders" on "orders"."user_id" = "users"."id" where "users"."age" > ?',
          [1],
        );
        expect(children.widened).toEqual([]);
        const read = registrationOf(children, [{ id: 1 }]);
        expect(read.lists).toContainEqual(wholeTable("orders"));
        expect(read.widened).toBe("join");
        expect(registrationOf(children, [[1, 10]]).widened).toBeUndefined();
      });
    });
  }
});
