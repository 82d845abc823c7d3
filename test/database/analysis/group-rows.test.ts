import { describe, expect, it } from "vitest";
import type { WriteEvent } from "../../../src/core/deps/planner.ts";
import {
  type Entering,
  insertedKeys,
  mergedRows,
  placedRows,
  probesOf,
  toldRows,
} from "../../../src/database/analysis/group-rows.ts";
import {
  linkedRowsStatement,
  restrictedStatement,
  tableName,
} from "../../../src/database/analysis/group-statements.ts";
import {
  closedTo,
  groupPlan,
  restrictionOf,
  sharedColumns,
  splicedRows,
} from "../../../src/database/analysis/groups.ts";
import { type SqlTable, sqlShape } from "../../../src/database/analysis/shapes.ts";

// Group patches without a statement of the result's own (issue 71): a new row's per-viewer
// flags told from what is known of everyone, a favourite's count and flag told by its row,
// and a new parent that no row joins.

const TABLES: Record<string, SqlTable> = {
  users: { primaryKey: "id", columns: { id: "number", username: "text" } },
  articles: {
    primaryKey: "id",
    unique: ["slug"],
    columns: { id: "number", slug: "text", author_id: "number", at: "number", parent_id: "number" },
  },
  favorites: {
    columns: { user_id: "number", article_id: "number" },
    keys: [["user_id", "article_id"]],
  },
  follows: {
    columns: { follower_id: "number", following_id: "number" },
    keys: [["follower_id", "following_id"]],
  },
};

// Conduit's list: the author shown, a favourites count, the viewer's favourite and follow.
const LIST = `select a.slug, a.at, a.author_id, u.username,
    (select count(*) from favorites f where f.article_id = a.id) as favorites,
    exists(select 1 from favorites f where f.article_id = a.id and f.user_id = ?) as favorited,
    exists(select 1 from follows w where w.follower_id = ? and w.following_id = a.author_id) as following
  from articles a inner join users u on u.id = a.author_id
  group by a.id order by a.at desc, a.id desc limit ?`;
const plan = groupPlan(sqlShape(LIST, [7, 7, 3], "sqlite", (t) => TABLES[t]))!;
// Viewer 7's list: slug, at, author, name, favourites, favorited, following.
const held = [
  ["c", 30, 3, "cy", 0, 0, 1],
  ["b", 20, 2, "bo", 2, 1, 0],
  ["a", 10, 1, "ann", 1, 0, 0],
];
// The same list showing the key its counts and flags are linked by.
const idShown = groupPlan(
  sqlShape(
    LIST.replace("select a.slug,", "select a.id, a.slug,"),
    [7, 7, 3],
    "sqlite",
    (t) => TABLES[t],
  ),
)!;
const rows = held.map((r, i) => [3 - i, ...r]);
const article = (id: number, author: number): WriteEvent => ({
  table: "articles",
  op: "insert",
  new: { id, slug: `n${id}`, author_id: author, at: 25 },
});

describe("a new row in another viewer's list", () => {
  const insert = article(9, 2);
  const shared = sharedColumns(plan, [insert])!;
  const probes = probesOf(plan, shared);
  // Run with viewer 8's parameters: its flags are 8's; key and probes last.
  const row = (probe: number[]) => ["n9", 25, 2, "bo", 0, 1, 1, 9, ...probe];
  const merged = (probe: number[], more: Entering = {}) =>
    mergedRows(plan, held, [row(probe)], [insert], shared, {
      inserted: [9],
      probes,
      ...more,
    });

  it("carries a probe per flag: whether its table has any row for the new row's link", () => {
    expect(probes.map((p) => [p.table, p.from])).toEqual([
      ["favorites", "id"],
      ["follows", "author_id"],
    ]);
    const statement = restrictedStatement(
      plan,
      LIST,
      [8, 8, 3],
      "sqlite",
      new Map([["id", [9]]]),
      true,
      probes,
    )!;
    expect(statement.sql).toContain(
      "exists (select 1 from favorites edgecache_probe where edgecache_probe.article_id = a.id) as edgecache_1",
    );
    expect(statement.sql).toContain(
      "exists (select 1 from follows edgecache_probe where edgecache_probe.following_id = a.author_id) as edgecache_2",
    );
  });

  it("a flag no row holds for anyone is false; a follow is the one a held row of the same author shows", () => {
    const m = merged([0, 1])!;
    // Viewer 7 follows nobody who wrote "b" (author 2): not following, not favourited.
    expect(m.entering.map((e) => e.row)).toEqual([["n9", 25, 2, "bo", 0, 0, 0]]);
    expect(placedRows(plan, [], m.entering)).toEqual([["n9", 25, 2, "bo", 0, 0, 0]]);
  });

  it("a flag some row holds, for an author the list does not show, is asked for, then told by those rows", () => {
    const other = mergedRows(
      plan,
      held,
      [["n9", 25, 4, "di", 0, 1, 1, 9, 1, 1]],
      [insert],
      shared,
      {
        inserted: [9],
        probes,
        asked: [],
      },
    );
    expect(other).toBeUndefined();
    const asked: NonNullable<Entering["asked"]> = [];
    mergedRows(plan, held, [["n9", 25, 4, "di", 0, 1, 1, 9, 1, 1]], [insert], shared, {
      inserted: [9],
      probes,
      asked,
    });
    expect(asked.map((a) => [a.presence.table, a.link])).toEqual([
      ["favorites", 9],
      ["follows", 4],
    ]);
    const [favorited, following] = probes;
    const linked: NonNullable<Entering["linked"]> = new Map<
      (typeof probes)[number],
      Map<string, Record<string, unknown>[]>
    >([
      [favorited!, new Map([["n:9", [{ article_id: 9, user_id: 8 }]]])],
      [following!, new Map([["n:4", [{ following_id: 4, follower_id: 7 }]]])],
    ]);
    const told = mergedRows(plan, held, [["n9", 25, 4, "di", 0, 1, 1, 9, 1, 1]], [insert], shared, {
      inserted: [9],
      probes,
      linked,
    })!;
    // 8 favourited it, 7 did not; 7 follows author 4.
    expect(told.entering.map((e) => e.row)).toEqual([["n9", 25, 4, "di", 0, 0, 1]]);
    const statement = linkedRowsStatement(LIST, following!, ["follower_id"], [4], 1000)!;
    expect(statement.sql).toBe(
      "select following_id, follower_id from follows where following_id in (4) limit 1001",
    );
  });

  it("a flag some row holds, with no rows read for its link, is not told", () => {
    const m = merged([1, 1], { linked: new Map() });
    expect(m).toBeUndefined();
  });
});

describe("a write only flags and counts read", () => {
  const favourite = (op: "insert" | "delete", user: number, id: number): WriteEvent => ({
    table: "favorites",
    op,
    ...(op === "insert"
      ? { new: { user_id: user, article_id: id } }
      : { old: { user_id: user, article_id: id } }),
  });

  it("is told by its rows: the count by adding up, the flag where it is the viewer's", () => {
    expect(idShown.told.sort()).toEqual(["favorites", "follows"]);
    const events = [
      favourite("insert", 7, 2),
      favourite("insert", 8, 2),
      favourite("delete", 9, 1),
    ];
    expect(toldRows(idShown, rows, events, true)).toEqual([
      [3, "c", 30, 3, "cy", 0, 0, 1],
      [2, "b", 20, 2, "bo", 4, 1, 0],
      [1, "a", 10, 1, "ann", 0, 0, 0],
    ]);
  });

  it("a count only from a result whose load saw the database exactly; a flag from any", () => {
    expect(toldRows(idShown, rows, [favourite("insert", 8, 2)], false)).toBeUndefined();
    const follow: WriteEvent = {
      table: "follows",
      op: "insert",
      new: { follower_id: 7, following_id: 2 },
    };
    expect(toldRows(idShown, rows, [follow], false)?.map((r) => (r as unknown[])[7])).toEqual([
      1, 1, 0,
    ]);
  });

  it("not where the result does not show the column its link reads", () => {
    expect(toldRows(plan, held, [favourite("insert", 8, 2)], true)).toBeUndefined();
  });
});

describe("a new parent", () => {
  const user: WriteEvent = { table: "users", op: "insert", new: { id: 5, username: "eve" } };

  it("restricts the keyed statement to the rows that would join it, and keeps a result none joins", () => {
    expect(closedTo(plan, [user])).toEqual(new Map([["author_id", [5]]]));
    expect(restrictionOf(plan, [user])).toBeUndefined();
    const restriction = restrictionOf(plan, [user], true)!;
    expect(restriction).toEqual(new Map([["author_id", [5]]]));
    const shared = sharedColumns(plan, [user])!;
    const none = mergedRows(plan, held, [], [user], shared, { closed: closedTo(plan, [user]) })!;
    expect(splicedRows(plan, held, none.rows, restriction)).toEqual(held);
  });

  it("drops a result where a row joins it (it may enter)", () => {
    const shared = sharedColumns(plan, [user])!;
    const fresh = [["e", 40, 5, "eve", 0, 0, 0, 11]];
    const closed = closedTo(plan, [user]);
    expect(mergedRows(plan, held, fresh, [user], shared, { closed })).toBeUndefined();
    // Its author not shown by the image: any row may be one.
    const nameless: WriteEvent = { table: "users", op: "insert", new: { username: "eve" } };
    const unknown = closedTo(plan, [nameless]);
    const other = [["z", 5, 1, "ann", 0, 0, 0, 12]];
    expect(mergedRows(plan, held, other, [nameless], shared, { closed: unknown })).toBeUndefined();
  });

  it("keeps a result where a row not held comes back for another write of the record (a favourite of another page's article)", () => {
    const fav: WriteEvent = {
      table: "favorites",
      op: "insert",
      new: { user_id: 8, article_id: 12 },
    };
    const events = [user, fav];
    const shared = sharedColumns(plan, events)!;
    // Article 12 by author 1: not one the new user brings in.
    const fresh = [["z", 5, 1, "ann", 1, 0, 0, 12]];
    const closed = closedTo(plan, events);
    const kept = mergedRows(plan, held, fresh, events, shared, { closed })!;
    expect(splicedRows(plan, held, kept.rows, new Map([["id", [12]]]))).toEqual(held);
  });
});

// What a review of the first version found.
describe("where none of this holds", () => {
  const user: WriteEvent = { table: "users", op: "insert", new: { id: 5, username: "eve" } };

  it("a new parent of a left join may take a held row out (`where u.id is null`): not kept", () => {
    const orphans = groupPlan(
      sqlShape(
        `select a.id, a.slug, (select count(*) from favorites f where f.article_id = a.id) as favorites
         from articles a left join users u on u.id = a.author_id where u.id is null order by a.id`,
        [],
        "sqlite",
        (t) => TABLES[t],
      ),
    );
    if (!orphans) throw new Error("not a group plan");
    expect(closedTo(orphans, [user]).size).toBe(0);
    expect(restrictionOf(orphans, [user], true)).toBeUndefined();
  });

  it("a row deleted twice in one record (SQLite's REPLACE with recursive triggers) is not counted twice", () => {
    const gone: WriteEvent = {
      table: "favorites",
      op: "delete",
      old: { user_id: 1, article_id: 2 },
    };
    const back: WriteEvent = {
      table: "favorites",
      op: "insert",
      new: { user_id: 1, article_id: 2 },
    };
    expect(toldRows(idShown, rows, [gone, gone, back], true)).toBeUndefined();
    expect(toldRows(idShown, rows, [gone, back], true)?.[1]).toEqual(rows[1]);
  });

  it("a probe names the table as the statement does, or is not written", () => {
    const sql = `select a.id, exists(select 1 from public.follows w where w.following_id = a.author_id) from articles a`;
    expect(tableName(sql, "follows")).toBe("public.follows");
    expect(tableName(`${sql} join "follows" x on true`, "follows")).toBeUndefined();
    expect(tableName(`${sql} edgecache_probe`, "follows")).toBeUndefined();
    expect(tableName(`select 1 from "App"."Follows"`, "App.Follows")).toBe('"App"."Follows"');
  });

  it("a new base row does not enter where a subquery of the base itself counts for held rows", () => {
    const replies = groupPlan(
      sqlShape(
        `select a.id, a.at, u.username, (select count(*) from articles x where x.parent_id = a.id) as replies
         from articles a inner join users u on u.id = a.author_id order by a.at desc, a.id desc limit 5`,
        [],
        "sqlite",
        (t) => TABLES[t],
      ),
    );
    if (!replies) throw new Error("not a group plan");
    const reply: WriteEvent = {
      table: "articles",
      op: "insert",
      new: { id: 9, slug: "r", author_id: 1, at: 50, parent_id: 1 },
    };
    expect(insertedKeys(replies, [reply], true)).toBeUndefined();
  });
});
