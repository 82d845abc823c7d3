import { describe, expect, it } from "vitest";
import type { WriteEvent } from "../../../src/core/deps/planner.ts";
import { mergedRows, placedRows, probesOf } from "../../../src/database/analysis/group-rows.ts";
import { slidStatement } from "../../../src/database/analysis/group-statements.ts";
import { groupPlan, sharedColumns } from "../../../src/database/analysis/groups.ts";
import { type SqlTable, sqlShape } from "../../../src/database/analysis/shapes.ts";
import { leavingOf, movedOf, slidRows } from "../../../src/database/analysis/window-slides.ts";

// Rows deleted under a window (issue 71): the list loses the rows it holds of them and takes
// in as many from past its end, read by one statement shared by every viewer's list.

const TABLES: Record<string, SqlTable> = {
  users: { primaryKey: "id", columns: { id: "number", username: "text" } },
  articles: {
    primaryKey: "id",
    unique: ["slug"],
    columns: { id: "number", slug: "text", author_id: "number", at: "number" },
  },
  favorites: {
    columns: { user_id: "number", article_id: "number" },
    keys: [["user_id", "article_id"]],
  },
  tags: { columns: { article_id: "number", tag: "text" }, keys: [["article_id", "tag"]] },
};

// Conduit's list: the slug shown (not the key), a count, the viewer's flag.
const SELECT = `select a.slug, a.at, u.username,
    (select count(*) from favorites f where f.article_id = a.id) as favorites,
    exists(select 1 from favorites f where f.article_id = a.id and f.user_id = ?) as favorited
  from articles a inner join users u on u.id = a.author_id`;
const LIST = `${SELECT} group by a.id order by a.at desc, a.id desc limit ?`;
const plan = groupPlan(sqlShape(LIST, [7, 3], "sqlite", (t) => TABLES[t]))!;
// The same list's second page.
const paged = groupPlan(sqlShape(`${LIST} offset ?`, [7, 3, 3], "sqlite", (t) => TABLES[t]))!;
const held = [
  ["c", 30, "cy", 0, 0],
  ["b", 20, "bo", 2, 1],
  ["a", 10, "ann", 1, 0],
];
const gone = (id: number, slug: string): WriteEvent => ({
  table: "articles",
  op: "delete",
  old: { id, slug, author_id: 1, at: id * 10 },
});

describe("rows deleted under a window", () => {
  it("a full window loses the row it holds and takes in one from past its end", () => {
    const leaving = leavingOf(plan, [gone(2, "b")], true)!;
    expect(leaving.keys).toEqual([2]);
    expect(slidRows(plan, held, leaving)).toEqual({ rows: [held[0], held[2]], refill: 1 });
  });

  it("a row it does not hold sorted past its end: the window is as it was", () => {
    const leaving = leavingOf(plan, [gone(0, "z")], true)!;
    expect(slidRows(plan, held, leaving)).toEqual({ rows: held, refill: 0 });
  });

  it("a row it does not hold that sorted inside it, or beside its last (a name it did not know): not kept", () => {
    expect(slidRows(plan, held, leavingOf(plan, [gone(2.5, "z")], true)!)).toBeUndefined();
    expect(slidRows(plan, held, leavingOf(plan, [gone(1, "z")], true)!)).toBeUndefined();
  });

  it("a row renamed, then deleted, leaves by the name it had", () => {
    const renamed: WriteEvent = {
      table: "articles",
      op: "update",
      old: { id: 2, slug: "b", author_id: 1, at: 20 },
      new: { id: 2, slug: "b2", author_id: 1, at: 20 },
    };
    const leaving = leavingOf(plan, [renamed, gone(2, "b2")], true)!;
    expect([...leaving.named].sort()).toEqual(["b", "b2"]);
    expect(slidRows(plan, held, leaving)).toEqual({ rows: [held[0], held[2]], refill: 1 });
  });

  it("a window that held every row takes in none", () => {
    const leaving = leavingOf(plan, [gone(2, "b")], true)!;
    expect(slidRows(plan, held.slice(0, 2), leaving)).toEqual({ rows: [held[0]], refill: 0 });
  });

  it("the deleted article's own favourites go with it; other writes stay to be planned", () => {
    const tag: WriteEvent = { table: "tags", op: "delete", old: { article_id: 2, tag: "x" } };
    const fav: WriteEvent = {
      table: "favorites",
      op: "delete",
      old: { user_id: 7, article_id: 2 },
    };
    const other: WriteEvent = {
      table: "favorites",
      op: "insert",
      new: { user_id: 7, article_id: 3 },
    };
    expect(leavingOf(plan, [gone(2, "b"), fav], true)?.rest).toEqual([]);
    // A table the list does not read stays, for the planner to find it reads nothing.
    expect(leavingOf(plan, [gone(2, "b"), tag, fav], true)?.rest).toEqual([tag]);
    expect(leavingOf(plan, [gone(2, "b"), fav, other], true)?.rest).toEqual([other]);
  });

  it("is not taken with a WHERE, an insert of the base beside it, or an image without the name", () => {
    expect(leavingOf(plan, [gone(2, "b")], false)).toBeUndefined();
    const insert: WriteEvent = { table: "articles", op: "insert", new: { id: 9, slug: "n" } };
    expect(leavingOf(plan, [gone(2, "b"), insert], true)).toBeUndefined();
    expect(leavingOf(plan, [{ table: "articles", op: "delete", old: { id: 2 } }], true)).toBe(
      undefined,
    );
    // A window from a later row: a deleted row before it moves every row.
    expect(leavingOf(paged, [gone(2, "b")], true)).toBeUndefined();
  });

  it("a window further on, or rows written both in and out, is read again whole", () => {
    const insert: WriteEvent = {
      table: "articles",
      op: "insert",
      new: { id: 9, slug: "n", author_id: 1, at: 90 },
    };
    const itsFavourite: WriteEvent = {
      table: "favorites",
      op: "insert",
      new: { user_id: 7, article_id: 9 },
    };
    expect(movedOf(paged, [insert, itsFavourite], true)).toEqual({
      keys: [9],
      named: new Set(),
      deleted: [],
      rest: [],
      whole: true,
    });
    expect(movedOf(paged, [gone(2, "b")], true)?.whole).toBe(true);
    // From the first row, one kind alone is placed or slid; both at once are read again.
    expect(movedOf(plan, [insert], true)).toBeUndefined();
    expect(movedOf(plan, [insert, gone(2, "b")], true)?.keys).toEqual([9, 2]);
    expect(movedOf(paged, [insert], false)).toBeUndefined();
    const favourite: WriteEvent = {
      table: "favorites",
      op: "insert",
      new: { user_id: 7, article_id: 2 },
    };
    expect(movedOf(paged, [favourite], true)).toBeUndefined();
  });

  it("reads the rows past the kept ones, keyed, its viewer's flag told as a new row's", () => {
    const shared = sharedColumns(plan, [])!;
    const probes = probesOf(plan, shared);
    const statement = slidStatement(plan, LIST, [8, 3], "sqlite", { limit: 1, offset: 2 }, probes)!;
    expect(statement.params).toEqual([8]);
    expect(statement.sql).toMatch(/order by a\.at desc, a\.id desc\s+limit 1 offset 2$/);
    expect(statement.sql).toContain("a.id as edgecache_0");
    expect(
      slidStatement(
        plan,
        `${SELECT} where a.at > 5 group by a.id order by a.at desc limit ?`,
        [8, 3],
        "sqlite",
        { limit: 1, offset: 2 },
      ),
    ).toBeUndefined();
    // Run with viewer 8's parameters: no favourite of the row names anyone, so viewer 7's
    // flag is false too; it sorts after the rows kept.
    const fresh = [["z", 5, "di", 0, 0, 4, 9, 0]];
    const merged = mergedRows(plan, held, fresh, [], shared, { sliding: true, probes })!;
    expect(merged.rows).toEqual([]);
    expect(placedRows(plan, [held[0], held[2]], merged.entering)).toEqual([
      held[0],
      held[2],
      ["z", 5, "di", 0, 0],
    ]);
  });
});
