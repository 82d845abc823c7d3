import { describe, expect, it } from "vitest";
import { DependencyIndex } from "../../../src/core/deps/index.ts";
import { planWrite, type WriteEvent } from "../../../src/core/deps/planner.ts";
import {
  registrationOf,
  type SqlShape,
  type SqlTable,
  sqlShape,
} from "../../../src/database/analysis/shapes.ts";

/** Prisma's `include: { _count }` on PostgreSQL, with `tail` after its WHERE. */
const counted = (options: { where?: string; tail?: string; join?: string; having?: string } = {}) =>
  `SELECT "public"."User"."id", COALESCE("agg"."n", 0) AS "n" FROM "public"."User" ${options.join ?? "LEFT JOIN"} (SELECT "public"."Post"."authorId", COUNT(*) AS "n" FROM "public"."Post" WHERE ${options.where ?? "1=1"} GROUP BY "public"."Post"."authorId"${options.having ?? ""}) AS "agg" ON ("public"."User"."id" = "agg"."authorId") WHERE 1=1${options.tail ?? ""}`;
const schema = () => ({
  primaryKey: "id",
  columns: { id: "number", authorId: "number", views: "number" } as const,
});
const shape = (sql: string, params: unknown[] = []): SqlShape =>
  sqlShape(sql, params, "postgres", schema);

describe("a LEFT JOIN on a count grouped by a foreign key (Prisma's _count)", () => {
  it("is read as the count of each result row's children: lists on the foreign key's values", () => {
    const s = shape(counted());
    expect(s.fallback).toBeUndefined();
    expect(s.lists?.subqueries).toEqual([
      expect.objectContaining({
        table: "Post",
        in: "select",
        link: { column: "authorId", from: "id" },
      }),
    ]);
    const { lists } = registrationOf(s, [
      { id: 1, n: 2 },
      { id: 4, n: 0 },
    ]);
    const children = lists.filter((l) => l.table === "Post").flatMap((l) => l.filters);
    expect(children).toContainEqual({ column: "authorId", op: "eq", value: 1 });
    expect(children).toContainEqual({ column: "authorId", op: "eq", value: 4 });
  });

  it("keeps the counted rows' own conditions", () => {
    const s = shape(counted({ where: `"public"."Post"."views" > $1` }), [3]);
    expect(s.lists?.subqueries?.[0]?.disjuncts).toEqual([
      [{ column: "views", op: "gt", value: 3 }],
    ]);
  });

  it("is left to the table when anything else reads the count or shapes the groups", () => {
    for (const sql of [
      counted({ tail: ` ORDER BY "agg"."n" DESC` }),
      counted({ tail: ` AND "agg"."n" > 1` }),
      counted({ join: "INNER JOIN" }),
      counted({ having: " HAVING COUNT(*) > 1" }),
      counted().replace('COUNT(*) AS "n"', 'SUM("public"."Post"."views") AS "n"'),
      counted().replace('GROUP BY "public"."Post"."authorId"', 'GROUP BY "public"."Post"."views"'),
    ]) {
      expect(shape(sql).fallback, sql).toBe("subquery");
    }
  });
});

/** Prisma's `include: { _count: { select: { tags: true } } }` of a many-to-many relation. */
const linked = (options: { group?: string; tail?: string } = {}) =>
  `SELECT "Post"."id", "Post"."title", COALESCE("agg"."n", 0) AS "n" FROM "Post" LEFT JOIN (SELECT "_PostToTag"."A", COUNT("_PostToTag"."A") AS "n" FROM "Tag" LEFT JOIN "_PostToTag" ON ("Tag"."id" = "_PostToTag"."B") WHERE 1=1 GROUP BY ${options.group ?? '"_PostToTag"."A"'}) AS "agg" ON ("Post"."id" = "agg"."A") WHERE 1=1${options.tail ?? ""}`;
const m2m = (t: string) =>
  ({
    Post: { primaryKey: "id", columns: { id: "number", title: "text" } },
    Tag: { primaryKey: "id", columns: { id: "number", name: "text" } },
    // Keyed by its two columns: captured without a single-column key.
    _PostToTag: { columns: { A: "number", B: "number" } },
  })[t] as SqlTable | undefined;
const PLAN = {
  primaryKey: (t: string) => (t === "_PostToTag" ? undefined : "id"),
  joinColumns: () => [],
  keyless: (t: string) => t === "_PostToTag",
};

describe("a count of a many-to-many relation through its link table (Prisma's _count)", () => {
  const s = sqlShape(linked(), [], "postgres", m2m);
  const r = registrationOf(s, [
    { id: 1, title: "a", n: 1 },
    { id: 2, title: "b", n: 0 },
  ]);
  const index = new DependencyIndex();
  index.add("page", r.tags, r.lists, Number.POSITIVE_INFINITY);
  const drops = (event: WriteEvent) => [...planWrite(event, PLAN, index).keys];

  it("is read as the count of each result row's links, below table level", () => {
    expect(s.fallback).toBeUndefined();
    expect(s.lists?.subqueries).toEqual([
      expect.objectContaining({ table: "Tag", in: "select", columns: ["id"] }),
      expect.objectContaining({
        ...{ table: "_PostToTag", in: "select", columns: ["A", "B"] },
        link: { column: "A", from: "id" },
      }),
    ]);
    expect(r.lists.some((l) => l.table === "_PostToTag" && l.filters.length === 0)).toBe(false);
  });

  it("a link of another post leaves the page; one of its posts drops it", () => {
    expect(drops({ table: "_PostToTag", op: "insert", new: { A: 9, B: 1 } })).toEqual([]);
    expect(drops({ table: "_PostToTag", op: "insert", new: { A: 2, B: 1 } })).toEqual(["page"]);
    expect(drops({ table: "_PostToTag", op: "delete", old: { A: 1, B: 1 } })).toEqual(["page"]);
  });

  it("a tag renamed leaves it; a tag added or removed drops it (its links are not known)", () => {
    const tag = { id: 1, name: "news" };
    expect(
      drops({ table: "Tag", op: "update", old: tag, new: { ...tag, name: "old news" } }),
    ).toEqual([]);
    expect(drops({ table: "Tag", op: "insert", new: { id: 3, name: "new" } })).toEqual(["page"]);
  });

  it("is left to the table when the grouped column could be either table's, or the page is ordered by the count", () => {
    for (const sql of [linked({ group: '"A"' }), linked({ tail: ' ORDER BY "agg"."n" DESC' })]) {
      expect(sqlShape(sql, [], "postgres", m2m).fallback, sql).toBe("subquery");
    }
  });
});
