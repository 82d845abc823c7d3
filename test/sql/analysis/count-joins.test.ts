import { describe, expect, it } from "vitest";
import { registrationOf, type SqlShape, sqlShape } from "../../../src/sql/analysis/shapes.ts";

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
