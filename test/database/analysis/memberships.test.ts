import { describe, expect, it } from "vitest";
import type { WriteEvent } from "../../../src/core/deps/planner.ts";
import { countDelta, recounted } from "../../../src/database/analysis/count-deltas.ts";
import { explainShape } from "../../../src/database/analysis/explain.ts";
import {
  counted,
  type MemberRows,
  memberColumns,
  outsideAll,
  outsideOf,
} from "../../../src/database/analysis/memberships.ts";
import { type SqlTable, sqlShape } from "../../../src/database/analysis/shapes.ts";

// Memberships (issue 71): a result whose WHERE holds `base.col IN (select x from T where
// y = ?)` keeps its rows when a write's base rows are outside it, told by one read of T
// for their values, shared by every result of the select list.

const TABLES: Record<string, SqlTable> = {
  users: { primaryKey: "id", columns: { id: "number", username: "text" } },
  articles: {
    primaryKey: "id",
    columns: { id: "number", slug: "text", author_id: "number", at: "number", title: "text" },
  },
  follows: {
    columns: { follower_id: "number", following_id: "number" },
    keys: [["follower_id", "following_id"]],
  },
  article_tag: {
    columns: { article_id: "number", tag: "text" },
    keys: [["article_id", "tag"]],
  },
  favorites: { columns: { user_id: "number", article_id: "number" } },
};
const schema = (t: string) => TABLES[t];

const FEED_COUNT = `select count(*) from articles a inner join users u on u.id = a.author_id
  where a.author_id in (select following_id from follows where follower_id = ?)`;
const TAG_LIST = `select a.id, a.slug, json_group_array(t.tag) as tags,
    (select count(*) from favorites f where f.article_id = a.id) as favorites
  from articles a left join article_tag t on t.article_id = a.id
  where a.id in (select article_id from article_tag where tag = ?)
  group by a.id order by a.at desc, a.id desc limit 10`;

const feed = (viewer: unknown) => sqlShape(FEED_COUNT, [viewer], "sqlite", schema);
const tagged = (tag: string) => sqlShape(TAG_LIST, [tag], "sqlite", schema);
const article = (id: number, author: number | null): WriteEvent => ({
  table: "articles",
  op: "insert",
  new: { id, slug: `n${id}`, author_id: author, at: 25, title: "t" },
});
/** Article 1 moved from author 2 to author 3. */
const moved: WriteEvent = {
  table: "articles",
  op: "update",
  old: { id: 1, slug: "a", author_id: 2, at: 1, title: "t" },
  new: { id: 1, slug: "a", author_id: 3, at: 1, title: "t" },
};
const rowsOf = (
  shape: ReturnType<typeof feed>,
  rows: readonly Record<string, unknown>[],
): MemberRows => {
  const member = shape.lists!.subqueries!.find((q) => q.member)!;
  return new Map([[member, rows]]);
};

describe("a membership read from a select", () => {
  it("is a conjunct IN over one column of one table, its conditions equalities", () => {
    const member = feed(7).lists!.subqueries![0]!;
    expect(member.member).toEqual({
      column: "following_id",
      from: "author_id",
      filters: { follower_id: "number" },
    });
    expect(memberColumns(member)).toEqual(["following_id", "follower_id"]);
    // `edgecache explain` and getStats().shapes say so.
    expect(explainShape(feed(7)).memberships).toEqual(["follows"]);
  });

  const where = (text: string) =>
    sqlShape(
      `select count(*) from articles a inner join users u on u.id = a.author_id where ${text}`,
      [7],
      "sqlite",
      schema,
    ).lists?.subqueries?.find((q) => q.member)?.member;

  it.each([
    [
      "under OR",
      "a.author_id in (select following_id from follows where follower_id = ?) or a.id = 1",
    ],
    ["NOT IN", "a.author_id not in (select following_id from follows where follower_id = ?)"],
    [
      "an expression selected",
      "a.author_id in (select following_id + 0 from follows where follower_id = ?)",
    ],
    [
      "a text column for a number",
      "a.author_id in (select tag from article_tag where article_id = ?)",
    ],
    ["a joined table's column", "u.id in (select following_id from follows where follower_id = ?)"],
  ])("not %s", (_, text) => {
    expect(where(text)).toBeUndefined();
  });

  it.each([
    [
      "correlated",
      "a.author_id in (select following_id from follows where follower_id = a.id + ?)",
    ],
    ["a range", "a.author_id in (select following_id from follows where follower_id > ?)"],
    ["a limit", "a.author_id in (select following_id from follows where follower_id = ? limit 1)"],
    [
      "a join inside",
      "a.author_id in (select f.following_id from follows f join users v on v.id = f.follower_id where v.username = ?)",
    ],
  ])("%s: only a value its table holds no row of is told", (_, text) => {
    expect(where(text)).toEqual({ column: "following_id", from: "author_id" });
  });

  it("an article nobody favourited is outside every list of what a user favourited", () => {
    const shape = sqlShape(
      `select count(*) from articles a where a.id in
        (select f.article_id from favorites f join users v on v.id = f.user_id where v.username = ?)`,
      ["ann"],
      "sqlite",
      schema,
    );
    const outside = outsideOf(shape, [article(9, 3)])!;
    expect(outside.reads[0]!.values).toEqual([9]);
    expect(outsideAll(outside, rowsOf(shape, []))).toBe(true);
    // Any favourite of it may be ann's.
    expect(outsideAll(outside, rowsOf(shape, [{ article_id: 9 }]))).toBe(false);
    // A favourite written with it: not told.
    const favourite: WriteEvent = {
      table: "favorites",
      op: "insert",
      new: { user_id: 1, article_id: 9 },
    };
    expect(outsideOf(shape, [article(9, 3), favourite])).toBeUndefined();
  });
});

describe("a write's base rows outside a result", () => {
  it("a new article by an author the viewer does not follow keeps the feed's count", () => {
    const shape = feed(7);
    const outside = outsideOf(shape, [article(9, 3)])!;
    expect(outside.reads.map((r) => r.values)).toEqual([[3]]);
    // Author 3's followers: 8 and 9, not 7.
    const found = rowsOf(shape, [
      { following_id: 3, follower_id: 8 },
      { following_id: 3, follower_id: 9 },
    ]);
    expect(outsideAll(outside, found)).toBe(true);
    // Viewer 8's count, with the same rows read: the article is in it.
    const eight = feed(8);
    expect(
      outsideAll(outsideOf(eight, [article(9, 3)])!, rowsOf(eight, [...found.values()][0]!)),
    ).toBe(false);
  });

  it("a value compared as SQL compares it, and as a match where that is not sure", () => {
    const shape = feed(7);
    const outside = outsideOf(shape, [article(9, 3)])!;
    const told = (row: Record<string, unknown>) => outsideAll(outside, rowsOf(shape, [row]));
    expect(told({ following_id: 3, follower_id: "7" })).toBe(false);
    expect(told({ following_id: 3, follower_id: 7n })).toBe(false);
    expect(told({ following_id: "3", follower_id: 7 })).toBe(false);
    expect(told({ following_id: 3, follower_id: 7.5 })).toBe(true);
    expect(told({ following_id: 3, follower_id: "7.0" })).toBe(false);
    expect(told({ following_id: 3, follower_id: null })).toBe(true);
    expect(told({ following_id: 3 })).toBe(false);
    // A row naming none of the values asked for may admit any of them.
    expect(told({ following_id: 4, follower_id: 7 })).toBe(false);
    // A result whose parameter is text: any row's number may equal it.
    const text = feed("7");
    const o = outsideOf(text, [article(9, 3)]);
    if (o) expect(outsideAll(o, rowsOf(text, [{ following_id: 3, follower_id: 7 }]))).toBe(false);
  });

  it("a NULL is in no result; a row not read leaves nothing told", () => {
    const shape = feed(7);
    const outside = outsideOf(shape, [article(9, null)])!;
    expect(outside.reads[0]!.values).toEqual([]);
    expect(outsideAll(outside, rowsOf(shape, []))).toBe(true);
    expect(outsideAll(outsideOf(shape, [article(9, 3)])!, new Map())).toBe(false);
  });

  it("an update is told by both its images, a delete by its old row", () => {
    const shape = feed(7);
    const outside = outsideOf(shape, [moved])!;
    expect(outside.reads[0]!.values).toEqual([2, 3]);
    expect(outsideAll(outside, rowsOf(shape, [{ following_id: 2, follower_id: 7 }]))).toBe(false);
    expect(outsideOf(shape, [{ table: "articles", op: "delete" }])).toBeUndefined();
  });

  it("the rest of the write: the membership's table by its conditions, children linked to the written rows", () => {
    const shape = tagged("x");
    const tag = (article: number, name: string): WriteEvent => ({
      table: "article_tag",
      op: "insert",
      new: { article_id: article, tag: name },
    });
    // A new article tagged y, favourited at once: outside x's list if no row tags it x.
    const events = [
      article(9, 3),
      tag(9, "y"),
      { table: "favorites", op: "insert" as const, new: { user_id: 1, article_id: 9 } },
    ];
    const outside = outsideOf(shape, events)!;
    expect(outsideAll(outside, rowsOf(shape, [{ article_id: 9, tag: "y" }]))).toBe(true);
    // Tagged x: the write's row is admitted.
    expect(outsideOf(shape, [article(9, 3), tag(9, "x")])).toBeUndefined();
    // A tag of another article: its row joins a result row the write does not name.
    expect(outsideOf(shape, [article(9, 3), tag(2, "y")])).toBeUndefined();
    // A favourite of another article changes its count.
    expect(
      outsideOf(shape, [
        article(9, 3),
        { table: "favorites", op: "insert", new: { user_id: 1, article_id: 2 } },
      ]),
    ).toBeUndefined();
    // A new user: base rows not written that name them are read for (see below).
    const count = feed(7);
    const parent = { table: "users", op: "insert" as const, new: { id: 3, username: "c" } };
    expect(outsideOf(count, [article(9, 3), parent])?.parents).toHaveLength(1);
    // A table the select does not read is no concern of it.
    expect(
      outsideOf(count, [article(9, 3), { table: "comments", op: "insert", new: { id: 1 } }]),
    ).toBeDefined();
  });

  it("not where the base is read again (a subquery of its own rows)", () => {
    const shape = sqlShape(
      `select a.id, (select count(*) from articles r where r.author_id = a.id) as n from articles a
        where a.author_id in (select following_id from follows where follower_id = ?)`,
      [7],
      "sqlite",
      schema,
    );
    expect(outsideOf(shape, [article(9, 3)])).toBeUndefined();
  });
});

describe("a parent written that no base row names", () => {
  const user = (id: number): WriteEvent => ({
    table: "users",
    op: "insert",
    new: { id, username: `u${id}` },
  });
  const LIST = `select a.id, a.slug, u.username from articles a inner join users u on u.id = a.author_id
    where u.username = ? order by a.at desc, a.id desc limit 10`;

  it("a new user keeps a result no article of theirs is in, told by one read of the base", () => {
    for (const shape of [feed(7), sqlShape(LIST, ["ann"], "sqlite", schema)]) {
      const outside = outsideOf(shape, [user(5)])!;
      const join = shape.lists!.joins![0]!;
      expect(outside.parents).toEqual([{ join, values: [5] }]);
      expect(outsideAll(outside, new Map([[outside.parents[0]!, []]]))).toBe(true);
      // An article already naming user 5 (no foreign key held it back) joins them now.
      expect(outsideAll(outside, new Map([[outside.parents[0]!, [{ author_id: 5, id: 3 }]]]))).toBe(
        false,
      );
      expect(outsideAll(outside, new Map())).toBe(false);
    }
  });

  it("a new user and their first article: the article is told by the memberships", () => {
    const shape = feed(7);
    const outside = outsideOf(shape, [user(5), article(9, 5)])!;
    const member = shape.lists!.subqueries![0]!;
    const found = (followers: number[]) =>
      new Map<unknown, Record<string, unknown>[]>([
        [outside.parents[0]!, [{ author_id: 5, id: 9 }]],
        [member, followers.map((f) => ({ following_id: 5, follower_id: f }))],
      ]) as MemberRows;
    expect(outsideAll(outside, found([]))).toBe(true);
    expect(outsideAll(outside, found([7]))).toBe(false);
    // Without memberships a written base row is not told.
    expect(
      outsideOf(sqlShape(LIST, ["ann"], "sqlite", schema), [user(5), article(9, 5)]),
    ).toBeUndefined();
  });
});

describe("a count with FILTER or OVER", () => {
  it.each(["sqlite", "postgres"] as const)(
    "is no tally, and no counted aggregate, on %s",
    (dialect) => {
      const favorites = `(select count(*) filter (where f.user_id = 1) from favorites f where f.article_id = a.id)`;
      const list = sqlShape(`select a.id, ${favorites} as n from articles a`, [], dialect, schema);
      expect(list.lists?.subqueries?.[0]?.tally).toBeUndefined();
      const plain = sqlShape(
        `select a.id, (select count(*) from favorites f where f.article_id = a.id) as n from articles a`,
        [],
        dialect,
        schema,
      );
      expect(plain.lists?.subqueries?.[0]?.tally).toBe(true);
      expect(sqlShape("select count(*) from articles a", [], dialect, schema).lists?.counted).toBe(
        true,
      );
      for (const sql of [
        "select count(*) filter (where a.at > 1) from articles a",
        "select count(*) over () from articles a",
      ]) {
        expect(sqlShape(sql, [], dialect, schema).lists?.counted).toBeUndefined();
      }
    },
  );
});

describe("count deltas", () => {
  const count = feed(7);
  const join = count.lists!.joins![0]!;
  const member = count.lists!.subqueries![0]!;
  const found = (followers: number[], authors: number[]) => {
    const outside = outsideOf(count, [article(9, 3)])!;
    const rows = new Map<object, Record<string, unknown>[]>([
      [member, followers.map((f) => ({ following_id: 3, follower_id: f }))],
      [outside.exists![0]!, authors.map((id) => ({ id }))],
    ]);
    return { outside, rows };
  };

  it("a new row counted adds one; outside, or without its parent, none", () => {
    expect(counted(count)).toBe(true);
    expect(outsideOf(count, [article(9, 3)])!.exists).toEqual([{ join, values: [3] }]);
    const { outside, rows } = found([7], [3]);
    expect(countDelta(count, outside, rows)).toBe(1);
    const other = found([8], [3]);
    expect(countDelta(count, other.outside, other.rows)).toBe(0);
    // Its author has no row: the inner join leaves it out.
    const orphan = found([7], []);
    expect(countDelta(count, orphan.outside, orphan.rows)).toBe(0);
    // A follower id not sure to be 7: not told.
    const text = found([], [3]);
    text.rows.set(member, [{ following_id: 3, follower_id: "7.0" }]);
    expect(countDelta(count, text.outside, text.rows)).toBeUndefined();
  });

  it("an update moves the row between counts: its old image taken, its new one added", () => {
    const outside = outsideOf(count, [moved])!;
    const rows = new Map<object, Record<string, unknown>[]>([
      [member, [{ following_id: 2, follower_id: 7 }]],
      [outside.exists![0]!, [{ id: 2 }, { id: 3 }]],
    ]);
    expect(countDelta(count, outside, rows)).toBe(-1);
  });

  it("the count's row keeps its form", () => {
    expect(recounted([{ n: 4 }], 1)).toEqual([{ n: 5 }]);
    expect(recounted([[4n]], -1)).toEqual([[3n]]);
    expect(recounted([{ count: "12" }], 1)).toEqual([{ count: "13" }]);
    expect(recounted([{ n: 0 }], -1)).toBeUndefined();
    expect(recounted([{ n: 1, m: 2 }], 1)).toBeUndefined();
    expect(recounted([], 1)).toBeUndefined();
  });

  it("not a count with a condition on its parent, or a subquery not told", () => {
    const byName = sqlShape(
      "select count(*) from articles a inner join users u on u.id = a.author_id where u.username = ?",
      ["ann"],
      "sqlite",
      schema,
    );
    expect(counted(byName)).toBe(false);
    const ranged = sqlShape(
      "select count(*) from articles a where a.author_id in (select following_id from follows where follower_id > ?)",
      [7],
      "sqlite",
      schema,
    );
    expect(counted(ranged)).toBe(false);
  });
});
