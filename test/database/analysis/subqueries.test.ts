import { describe, expect, it } from "vitest";
import { DependencyIndex } from "../../../src/core/deps/index.ts";
import { planWrite, type WriteEvent } from "../../../src/core/deps/planner.ts";
import {
  registrationOf,
  type SqlDialect,
  type SqlTable,
  sqlShape,
  wholeTable,
} from "../../../src/database/analysis/shapes.ts";

/** The article lists of a Conduit-style API: link tables without a single-column key. */
const tables: Record<string, SqlTable> = {
  articles: {
    primaryKey: "id",
    columns: { id: "number", author_id: "number", created_at: "number", title: "text" },
  },
  users: { primaryKey: "id", columns: { id: "number", username: "text" } },
  article_tag: { columns: { article_id: "number", tag_name: "text" } },
  article_favorite: { columns: { article_id: "number", user_id: "number" } },
  user_follow: { columns: { follower_id: "number", following_id: "number" } },
};
const shape = (dialect: SqlDialect, sql: string, params: unknown[] = []) => {
  let n = 0;
  const text = dialect === "postgres" ? sql.replace(/\?/g, () => `$${++n}`) : sql;
  return sqlShape(text, params, dialect, (t) => tables[t]);
};
/** The keys a write drops, planned as for a table with a key (lists matched by value). */
function drops(index: DependencyIndex, table: string, row: Record<string, unknown>): string[] {
  const event: WriteEvent = { table, op: "insert", new: row };
  const schema = { primaryKey: () => "id", joinColumns: () => [] };
  return [...planWrite(event, schema, index).keys];
}

const FEED = `select "articles"."id", "articles"."title", "users"."username",
  json_group_array("article_tag"."tag_name") filter (where "article_tag"."tag_name" is not null) as "tagList",
  (select count(*) from "article_favorite" "f" where "f"."article_id" = "articles"."id") as "favoritesCount",
  exists(select 1 from "article_favorite" "f" where "f"."article_id" = "articles"."id" and "f"."user_id" = ?) as "favorited",
  exists(select 1 from "user_follow" "uf" where "uf"."follower_id" = ? and "uf"."following_id" = "articles"."author_id") as "following"
from "articles"
inner join "users" on "users"."id" = "articles"."author_id"
left join "article_tag" on "article_tag"."article_id" = "articles"."id"
where "articles"."id" in (select "article_id" from "article_tag" where "tag_name" = ?)
group by "articles"."id", "users"."id"
order by "articles"."created_at" desc, "articles"."id" desc
limit ? offset ?`;

describe("subqueries, groups and counts: each table's rows reach the results they can change", () => {
  for (const dialect of ["sqlite", "postgres"] as const) {
    describe(dialect, () => {
      const sql = dialect === "postgres" ? FEED.replace("json_group_array", "json_agg") : FEED;
      const s = shape(dialect, sql, [7, 7, "dragons", 10, 0]);

      it("the article feed registers every table below table level but the unread author", () => {
        expect(s.fallback).toBeUndefined();
        expect(s.lists).toMatchObject({
          table: "articles",
          grouping: "key",
          disjuncts: [[]],
          ordered: true,
          limit: 10,
        });
        expect(s.lists?.joins).toMatchObject([
          { table: "users", kind: "parent", whole: "key-not-selected" },
          { table: "article_tag", kind: "children", column: "article_id" },
        ]);
        expect(s.lists?.joins?.[1]?.whole).toBeUndefined();
        expect(s.lists?.subqueries).toEqual([
          {
            ...{ table: "article_favorite", in: "select", rowIds: [], disjuncts: [[]] },
            ...{ widened: [], link: { column: "article_id", from: "id" } },
            columns: ["article_id"],
            output: 4,
            // A count on its link alone: each favourite adds to it (group patches).
            tally: true,
          },
          {
            ...{ table: "article_favorite", in: "select", rowIds: [] },
            disjuncts: [[{ column: "user_id", op: "eq", value: 7 }]],
            ...{ widened: [], link: { column: "article_id", from: "id" } },
            columns: ["article_id", "user_id"],
            output: 5,
          },
          {
            ...{ table: "user_follow", in: "select", rowIds: [] },
            disjuncts: [[{ column: "follower_id", op: "eq", value: 7 }]],
            widened: ["subquery"],
            // Not followed (the result does not show the author), known for group patches.
            unshown: { column: "following_id", from: "author_id" },
            columns: ["follower_id", "following_id"],
            output: 6,
          },
          {
            ...{ table: "article_tag", in: "where", rowIds: [] },
            ...{ disjuncts: [[{ column: "tag_name", op: "eq", value: "dragons" }]], widened: [] },
            columns: ["article_id", "tag_name"],
            // `a.id in (select article_id ...)`: an article no row tags "dragons" is
            // outside it (memberships).
            member: { column: "article_id", from: "id", filters: { tag_name: "text" } },
          },
        ]);
        expect(s.widened.sort()).toEqual(["join", "subquery"]);
      });

      it("a favorite, a follow or a tag of another article leaves the feed; one of its articles drops it", () => {
        const rows = [
          { id: 1, title: "a", created_at: 9 },
          { id: 2, title: "b", created_at: 8 },
        ].map((r) => [r.id, r.title, "jake", "[]", 0, 0, 0]);
        const r = registrationOf(s, rows);
        expect(r.lists).toContainEqual(wholeTable("users"));
        const index = new DependencyIndex();
        index.add("feed", r.tags, r.lists, Number.POSITIVE_INFINITY);
        expect(drops(index, "article_favorite", { article_id: 3, user_id: 1 })).toEqual([]);
        expect(drops(index, "article_favorite", { article_id: 2, user_id: 1 })).toEqual(["feed"]);
        expect(drops(index, "user_follow", { follower_id: 8, following_id: 1 })).toEqual([]);
        expect(drops(index, "user_follow", { follower_id: 7, following_id: 1 })).toEqual(["feed"]);
        expect(drops(index, "article_tag", { article_id: 3, tag_name: "cats" })).toEqual([]);
        // A "dragons" tag may bring any article in; a tag of an article in the page changes it.
        expect(drops(index, "article_tag", { article_id: 3, tag_name: "dragons" })).toEqual([
          "feed",
        ]);
        expect(drops(index, "article_tag", { article_id: 1, tag_name: "cats" })).toEqual(["feed"]);
      });

      it("a count registers a list of its conditions without a window", () => {
        const c = shape(
          dialect,
          'select count(*) from "articles" where "articles"."author_id" = ?',
          [3],
        );
        expect(c.fallback).toBeUndefined();
        expect(c.widened).toEqual([]);
        const r = registrationOf(c, [[12]]);
        expect(r).toEqual({
          tags: ["articles"],
          lists: [
            {
              table: "articles",
              filters: [{ column: "author_id", op: "eq", value: 3 }],
              sort: [{ column: "id", desc: false }],
              offset: 0,
              limit: Number.MAX_SAFE_INTEGER,
              count: 1,
              // The one column of the base it reads besides the key.
              columns: ["author_id"],
            },
          ],
        });
        const index = new DependencyIndex();
        index.add("count", r.tags, r.lists, Number.POSITIVE_INFINITY);
        const update = (old: object, now: object): string[] => [
          ...planWrite(
            { table: "articles", op: "update", old: { ...old }, new: { ...now } },
            { primaryKey: () => "id", joinColumns: () => [] },
            index,
          ).keys,
        ];
        const article = { id: 1, author_id: 3, title: "a" };
        // Retitled: still author 3's, the count stays. Moved to author 4: it goes.
        expect(update(article, { ...article, title: "b" })).toEqual([]);
        expect(update(article, { ...article, author_id: 4 })).toEqual(["count"]);
      });

      it("under a LIMIT ordered by a subquery's alias, its links are not followed", () => {
        const q = shape(
          dialect,
          'select "articles"."id", (select count(*) from "article_favorite" "f" where "f"."article_id" = "articles"."id") as "n" from "articles" order by "n" desc limit 5',
        );
        expect(q.lists?.subqueries?.[0]?.link).toBeUndefined();
        expect(q.widened).toContain("subquery");
      });

      it("grouping by anything but the base's key, or HAVING, still falls back", () => {
        for (const sql of [
          'select "articles"."author_id", count(*) from "articles" group by "articles"."author_id"',
          'select "articles"."id", count("article_tag"."tag_name") from "articles" left join "article_tag" on "article_tag"."article_id" = "articles"."id" group by "articles"."id", "article_tag"."tag_name"',
          'select "articles"."id" from "articles" group by "articles"."id" having count(*) > 1',
        ]) {
          expect(shape(dialect, sql).fallback, sql).toBe("group-by");
        }
      });

      it("a subquery correlated through a table the result does not show registers its own conditions", () => {
        const q = shape(
          dialect,
          'select "users"."id", (select coalesce(json_group_array(json_array("c"."id", (select json_array("u"."username") from "users" "u" where "u"."id" = "c"."author_id"))), json_array()) from (select * from "articles" "c" where "c"."author_id" = "users"."id" order by "c"."id" limit ?) "c") as "posts" from "users" where "users"."id" = ?',
          [5, 1],
        );
        expect(q.lists?.subqueries).toMatchObject([
          { table: "users", in: "select", disjuncts: [[]], widened: ["subquery"] },
          { table: "articles", link: { column: "author_id", from: "id" } },
        ]);
      });
    });
  }
});
