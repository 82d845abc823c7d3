import { describe, expect, it } from "vitest";
import type { WriteEvent } from "../../../src/core/deps/planner.ts";
import { explainSql } from "../../../src/database/analysis/explain.ts";
import { insertedKeys, mergedRows, placedRows } from "../../../src/database/analysis/group-rows.ts";
import { restrictedStatement, whereless } from "../../../src/database/analysis/group-statements.ts";
import {
  groupPlan,
  restrictionOf,
  sharedColumns,
  splicedRows,
} from "../../../src/database/analysis/groups.ts";
import { type SqlDialect, type SqlTable, sqlShape } from "../../../src/database/analysis/shapes.ts";

// Group patches' rules (issue 71): which results are keyed and which writes only change
// values of their rows, the statement that fetches those rows again, and the splice.

const TABLES: Record<string, SqlTable> = {
  users: { primaryKey: "id", columns: { id: "number", username: "text", bio: "text" } },
  articles: {
    primaryKey: "id",
    unique: ["slug"],
    columns: { id: "number", slug: "text", title: "text", author_id: "number", at: "number" },
  },
  favorites: { columns: { user_id: "number", article_id: "number" } },
  tags: { columns: { article_id: "number", tag: "text" } },
};
const schema = (t: string) => TABLES[t];

const LIST = (p: (n: number) => string) =>
  `select a.slug, a.title, a.author_id, u.username, count(t.tag) as tags,
     (select count(*) from favorites f where f.article_id = a.id and f.user_id = ${p(1)}) as mine
   from articles a inner join users u on u.id = a.author_id left join tags t on t.article_id = a.id`;

const plan = (sql: string, params: unknown[], dialect: SqlDialect = "sqlite") =>
  groupPlan(sqlShape(sql, params, dialect, schema));

describe("group plans", () => {
  it("a list grouped by its base's key, shown by a unique column, is fed by its children, its subqueries and its parent's updates", () => {
    const p = plan(
      `${LIST(() => "?")} where a.title = ? group by a.id order by a.at desc, a.id desc limit ? offset ?`,
      [7, "x", 10, 20],
    );
    expect(p?.key).toBe("slug");
    expect(p?.blocked).toEqual([]);
    expect(p?.feeds.map((f) => [f.table, f.base, f.ops]).sort()).toEqual([
      ["articles", "id", "update"],
      ["favorites", "id", "any"],
      ["tags", "id", "any"],
      ["users", "author_id", "update"],
    ]);
  });

  it("the base's own update is a change of values where it leaves its key, the column standing in, and what decides its rows", () => {
    const p = plan(
      `${LIST(() => "?")} where a.title <> ? group by a.id order by a.at desc, a.id desc limit ?`,
      [7, "x", 10],
    )!;
    const update = (old: Record<string, unknown>, now: Record<string, unknown>) => ({
      table: "articles",
      op: "update" as const,
      old: { id: 2, slug: "b", title: "B", author_id: 1, at: 5, ...old },
      new: { id: 2, slug: "b", title: "B", author_id: 1, at: 5, ...now },
    });
    // A body-like column no condition, join or order reads: its row fetched again.
    expect(p.feeds.find((f) => f.table === "articles")?.keep.sort()).toEqual([
      "at",
      "author_id",
      "id",
      "slug",
      "title",
    ]);
    expect(restrictionOf(p, [update({}, {})])).toEqual(new Map([["id", [2]]]));
    // Its title (the WHERE), its time (the order), its author (the join), its slug (the key shown).
    for (const change of [{ title: "C" }, { at: 9 }, { author_id: 3 }, { slug: "c" }]) {
      expect(restrictionOf(p, [update({}, change)])).toBeUndefined();
    }
    expect(restrictionOf(p, [{ table: "articles", op: "insert", new: { id: 9 } }])).toBeUndefined();
  });

  it("explain names the tables whose writes keep a result (edgecache explain's `maintained:`)", () => {
    const sql = `${LIST(() => "?")} group by a.id order by a.at desc, a.id desc limit ?`;
    expect(explainSql(sql, "sqlite", schema, [7, 10]).maintained?.sort()).toEqual([
      "articles",
      "favorites",
      "tags",
      "users",
    ]);
    expect(
      explainSql("select count(*) from articles", "sqlite", schema).maintained,
    ).toBeUndefined();
  });

  it("no plan where rows are not keyed, not named, or ordered by what a write may change", () => {
    // Children joined without GROUP BY repeat an article.
    expect(
      plan("select a.id, t.tag from articles a left join tags t on t.article_id = a.id", []),
    ).toBeUndefined();
    // Neither the key nor a unique column is shown.
    expect(
      plan(
        `select a.title, count(t.tag) from articles a left join tags t on t.article_id = a.id group by a.id`,
        [],
      ),
    ).toBeUndefined();
    // Ordered by a count.
    expect(
      plan(`${LIST(() => "?")} group by a.id order by tags desc, a.id limit ?`, [7, 10]),
    ).toBeUndefined();
    // One row over the whole table.
    expect(
      plan("select count(*) from articles a inner join users u on u.id = a.author_id", []),
    ).toBeUndefined();
  });

  it("explain says why a joined result is not maintained (`not maintained by group patches:`)", () => {
    const why = (sql: string, params: unknown[] = []) =>
      explainSql(sql, "sqlite", schema, params).unmaintained;
    expect(why("select a.id, t.tag from articles a left join tags t on t.article_id = a.id")).toBe(
      "children joined without a group by its base's key: a base row repeats",
    );
    expect(
      why(
        "select a.title, count(t.tag) from articles a left join tags t on t.article_id = a.id group by a.id",
      ),
    ).toBe("it shows neither its base's key nor a unique column of it");
    expect(
      why(`${LIST(() => "?")} group by a.id order by tags desc, a.id limit ?`, [7, 10]),
    ).toMatch(/^not ordered by its base's columns/);
    expect(why("select count(*) from articles a inner join users u on u.id = a.author_id")).toBe(
      "an aggregate over all its rows",
    );
    expect(
      why(
        "select a.id, u.name from articles a inner join users u on u.id = a.author_id where u.name = ? order by a.id",
        ["ann"],
      ),
    ).toBe("a write to users may bring a row in, take one out or name rows it does not show");
    // Maintained, or nothing joined: nothing to say.
    expect(
      why(`${LIST(() => "?")} group by a.id order by a.at desc, a.id desc limit ?`, [7, 10]),
    ).toBeUndefined();
    expect(why("select id, title from articles where id = ?", [1])).toBeUndefined();
  });

  it("writes that may bring a row in, take one out or move it are not group-patched", () => {
    const byName = plan(`${LIST(() => "?")} where u.username = ? group by a.id order by a.id`, [
      7,
      "ann",
    ])!;
    const rename = {
      table: "users",
      op: "update" as const,
      old: { id: 1, username: "ann", bio: "a" },
      new: { id: 1, username: "zed", bio: "a" },
    };
    const bio = { ...rename, new: { id: 1, username: "ann", bio: "b" } };
    expect(restrictionOf(byName, [rename])).toBeUndefined();
    expect(restrictionOf(byName, [bio])).toEqual(new Map([["author_id", [1]]]));
    expect(
      restrictionOf(byName, [
        { table: "users", op: "insert", new: { id: 9, username: "x", bio: "" } },
      ]),
    ).toBeUndefined();
    expect(
      restrictionOf(byName, [{ table: "articles", op: "update", old: { id: 1 }, new: { id: 1 } }]),
    ).toBeUndefined();
    // A favourite moved from article 1 to 2: both rows.
    const moved = {
      table: "favorites",
      op: "update" as const,
      old: { user_id: 7, article_id: 1 },
      new: { user_id: 7, article_id: 2 },
    };
    expect(restrictionOf(byName, [moved])).toEqual(new Map([["id", [1, 2]]]));
    // A table the select does not read leaves it as it was.
    expect(restrictionOf(byName, [{ table: "comments", op: "insert", new: { id: 1 } }])).toEqual(
      new Map(),
    );
    const tagged = plan(
      `${LIST(() => "?")} where a.id in (select article_id from tags where tag = ?) group by a.id order by a.id`,
      [7, "x"],
    )!;
    expect(
      restrictionOf(tagged, [{ table: "tags", op: "insert", new: { article_id: 3, tag: "x" } }]),
    ).toBeUndefined();
  });
});

describe("found by review (each served a stale or wrong result before its fix)", () => {
  it("a condition on a table hung from a left-joined child: no plan", () => {
    TABLES.people = { primaryKey: "id", columns: { id: "number", active: "number" } };
    const sql = `select a.id, count(f.user_id) n from articles a left join favorites f on f.article_id = a.id
      left join people fu on fu.id = f.user_id where fu.active = 1 group by a.id order by a.id`;
    expect(plan(sql, [])).toBeUndefined();
  });
  it("a key lookup with a condition on its children: no plan", () => {
    const sql = `select a.slug, count(t.tag) n from articles a left join tags t on t.article_id = a.id
      where a.id = 5 and t.tag = 'x' group by a.id`;
    expect(plan(sql, [])).toBeUndefined();
  });
  it("an order by an output column's name sorts by its value: no plan", () => {
    const sql = `select id, slug, (select count(*) from favorites f where f.article_id = articles.id) as at
      from articles order by at desc`;
    expect(plan(sql, [])).toBeUndefined();
  });
  it("a ? inside an aggregate's filter: the shape is not trusted with the parameters after it", () => {
    const sql = `select a.id, a.slug, count(*) filter (where f.user_id = ?) mine from articles a
      left join favorites f on f.article_id = a.id where a.id = ? group by a.id`;
    expect(sqlShape(sql, [2, 7], "sqlite", schema).fallback).toBe("parse");
  });
  it("comments and $01 are not rewritten", () => {
    const listed = `${LIST(() => "?")} group by a.id order by a.id`;
    const p = plan(listed, [7])!;
    const restriction = new Map([["id", [3]]]);
    expect(restrictedStatement(p, `${listed} -- page`, [7], "sqlite", restriction)).toBeUndefined();
    const pg = `${LIST(() => "$01")} group by a.id order by a.id limit $2`;
    const r = restrictedStatement(p, pg, [7, 10], "postgres", restriction);
    expect(r?.sql).toContain("f.user_id = $1)");
    expect(r?.params).toEqual([7]);
  });
});

describe("the restricted statement", () => {
  it("SQLite: the window and the WHERE go with their parameters, the restriction comes in as literals", () => {
    const sql = `${LIST(() => "?")} where a.title = ? group by a.id order by a.at desc, a.id desc limit ? offset ?`;
    const params = [7, "x", 10, 20];
    const p = plan(sql, params)!;
    const r = restrictedStatement(p, sql, params, "sqlite", new Map([["id", [3, 4]]]));
    expect(r?.params).toEqual([7]);
    expect(r?.sql).toMatch(
      /where \(a\.id in \(3, 4\)\) group by a\.id order by a\.at desc, a\.id desc$/,
    );
    expect(r?.sql).not.toMatch(/limit|offset|title = \?/);
  });

  it("PostgreSQL: the parameters left are numbered again from $1", () => {
    const sql = `${LIST((n) => `$${n + 1}`)} where a.title = $1 group by a.id order by a.at desc, a.id desc limit $3 offset $4`;
    const params = ["x", 7, 10, 20];
    const p = plan(sql, params, "postgres")!;
    const r = restrictedStatement(p, sql, params, "postgres", new Map([["id", ["it's", 4]]]));
    expect(r?.params).toEqual([7]);
    expect(r?.sql).toContain("f.user_id = $1");
    expect(r?.sql).toContain("where (a.id in ('it''s', 4))");
  });

  it("a condition on the aggregated children refuses the plan: it picks the rows counted, and which articles have any", () => {
    expect(
      plan(`${LIST(() => "?")} where t.tag <> ? group by a.id order by a.id`, [7, "x"]),
    ).toBeUndefined();
  });

  it("refuses what it cannot rewrite: numbered or named placeholders, values no literal writes", () => {
    const sql = `${LIST(() => "?1")} group by a.id order by a.id`;
    const p = plan(`${LIST(() => "?")} group by a.id order by a.id`, [7])!;
    expect(restrictedStatement(p, sql, [7], "sqlite", new Map([["id", [3]]]))).toBeUndefined();
    const plain = `${LIST(() => "?")} group by a.id order by a.id`;
    expect(restrictedStatement(p, plain, [7], "sqlite", new Map([["id", [1.5]]]))).toBeUndefined();
    expect(
      restrictedStatement(p, plain, [7], "sqlite", new Map([["id", ["a\0b"]]])),
    ).toBeUndefined();
  });
});

describe("the splice", () => {
  const p = plan(`${LIST(() => "?")} group by a.id order by a.id`, [7])!;
  it("replaces the held rows the statement fetched again, in place, by their key", () => {
    const held = [
      { slug: "a", title: "A", username: "ann", tags: 1, mine: 0 },
      { slug: "b", title: "B", username: "bo", tags: 0, mine: 0 },
    ];
    const fresh = [
      { slug: "b", title: "B", username: "bo", tags: 2, mine: 1 },
      { slug: "z", title: "Z", username: "x", tags: 0, mine: 0 },
    ];
    // Articles 2 and 26 (not held): their rows come back, one each.
    expect(splicedRows(p, held, fresh, new Map([["id", [2, 26]]]))).toEqual([held[0], fresh[0]]);
  });
  it("gives up when a row the restriction names did not come back (deleted meanwhile): without the key shown, by their count", () => {
    const held = [{ slug: "b", title: "B", username: "bo", tags: 0, mine: 0 }];
    const fresh = [{ slug: "b", title: "B", username: "bo", tags: 2, mine: 1 }];
    expect(splicedRows(p, held, fresh, new Map([["id", [2, 7]]]))).toBeUndefined();
    expect(splicedRows(p, held, [], new Map([["id", [2]]]))).toBeUndefined();
  });
  it("gives up on rows of another form (read by position against rows read by name)", () => {
    const held = [{ slug: "a", title: "A", username: "ann", tags: 1, mine: 0 }];
    expect(splicedRows(p, held, [["a", "A", "ann", 2, 0]], new Map([["id", [1]]]))).toBeUndefined();
  });
});

describe("one statement for every viewer", () => {
  // The favourites' key is (user_id, article_id): a viewer's flag is one row or none.
  const keyed = (t: string) =>
    t === "favorites" ? { ...TABLES.favorites!, keys: [["user_id", "article_id"]] } : TABLES[t];
  const FEED = (p: (n: number) => string) =>
    `select a.slug, a.title, u.username, count(t.tag) as tags,
       (select count(*) from favorites f where f.article_id = a.id) as favorites,
       exists(select 1 from favorites f where f.article_id = a.id and f.user_id = ${p(1)}) as favorited
     from articles a inner join users u on u.id = a.author_id left join tags t on t.article_id = a.id
     where a.title <> ${p(2)} group by a.id order by a.at desc, a.id desc limit ${p(3)}`;
  const feed = (viewer: number, dialect: SqlDialect = "sqlite") => {
    let n = 0;
    const sql = FEED(dialect === "postgres" ? () => `$${++n}` : () => "?");
    return { sql, plan: groupPlan(sqlShape(sql, [viewer, "x", 10], dialect, keyed))! };
  };
  const favourite = (op: "insert" | "delete", user: number, article: number): WriteEvent => ({
    table: "favorites",
    op,
    [op === "insert" ? "new" : "old"]: { user_id: user, article_id: article },
  });

  it("a favourite changes the count, which no parameter enters, and the viewer's flag, which the write tells", () => {
    const { plan: p } = feed(7);
    expect(p.presences.map((x) => [x.output, x.table, x.column, x.from])).toEqual([
      [5, "favorites", "article_id", "id"],
    ]);
    const shared = sharedColumns(p, [favourite("insert", 7, 2)]);
    expect(shared?.params).toEqual([5]);
    expect([...(shared?.told.keys() ?? [])]).toEqual([5]);
    // A write to a table only parameter-free columns read: nothing to tell.
    expect(
      sharedColumns(p, [{ table: "tags", op: "delete", old: { article_id: 2, tag: "x" } }]),
    ).toMatchObject({ params: [5] });
    expect(
      sharedColumns(p, [{ table: "tags", op: "delete", old: { article_id: 2, tag: "x" } }])?.told
        .size,
    ).toBe(0);
  });

  it("without a key the flag's equalities cover, a favourite's flag cannot be told: no shared statement", () => {
    const sql = FEED(() => "?");
    const p = groupPlan(sqlShape(sql, [7, "x", 10], "sqlite", schema))!;
    expect(p.presences).toEqual([]);
    expect(sharedColumns(p, [favourite("insert", 7, 2)])).toBeUndefined();
  });

  it("the statement carries the base's key after the result's columns, and drops the WHERE", () => {
    for (const dialect of ["sqlite", "postgres"] as const) {
      const { sql, plan: p } = feed(7, dialect);
      const s = restrictedStatement(p, sql, [7, "x", 10], dialect, new Map([["id", [2]]]), true);
      expect(s?.sql).toMatch(
        /as favorited\s+, a\.id as edgecache_0, a\.author_id as edgecache_1 from articles a /,
      );
      expect(s?.sql).toContain("where (a.id in (2)) group by a.id");
      expect(s?.params).toEqual([7]);
    }
  });

  it("each viewer's rows take the shared statement's and keep, or are told, their own flags", () => {
    const events = [favourite("insert", 8, 2)];
    const fresh = [
      // Run with viewer 7's parameters: its flag column is 7's; its key and author come last.
      ["b", "B", "bo", 1, 3, 1, 2, 5],
    ];
    for (const viewer of [7, 8, 9]) {
      const { plan: p } = feed(viewer);
      const shared = sharedColumns(p, events)!;
      const held = [
        ["a", "A", "ann", 0, 0, 0],
        ["b", "B", "bo", 1, 2, viewer === 7 ? 1 : 0],
      ];
      const merged = mergedRows(p, held, fresh, events, shared)!.rows;
      const rows = splicedRows(p, held, merged, new Map([["id", [2]]]));
      // The count from the statement; 8's flag set by its own favourite; 7's kept; 9's kept.
      expect(rows).toEqual([held[0], ["b", "B", "bo", 1, 3, viewer === 9 ? 0 : 1]]);
    }
  });

  it("a delete clears the flag, in the form the result holds it (a boolean, a number, PostgreSQL's count as text)", () => {
    const events = [favourite("delete", 7, 2)];
    const { plan: p } = feed(7);
    const shared = sharedColumns(p, events)!;
    for (const [was, now] of [
      [true, false],
      [1, 0],
      ["1", "0"],
    ] as const) {
      const held = [
        { slug: "b", title: "B", username: "bo", tags: 1, favorites: 2, favorited: was },
      ];
      const fresh = [{ ...held[0], favorites: 1, favorited: "?", edgecache_0: 2, edgecache_1: 5 }];
      expect(mergedRows(p, held, fresh, events, shared)?.rows).toEqual([
        { ...held[0], favorites: 1, favorited: now },
      ]);
    }
    // A row of the write missing a column the flag reads cannot tell it.
    const partial: WriteEvent[] = [{ table: "favorites", op: "delete", old: { article_id: 2 } }];
    const held = [["b", "B", "bo", 1, 2, 1]];
    expect(
      mergedRows(p, held, [["b", "B", "bo", 1, 1, 1, 2, 5]], partial, sharedColumns(p, partial)!),
    ).toBeUndefined();
  });
});

describe("a new base row", () => {
  const keyed = (t: string) =>
    t === "favorites" ? { ...TABLES.favorites!, keys: [["user_id", "article_id"]] } : TABLES[t];
  const LATEST = `select a.slug, a.at, u.username,
       (select count(*) from favorites f where f.article_id = a.id) as favorites,
       exists(select 1 from favorites f where f.article_id = a.id and f.user_id = ?) as favorited
     from articles a inner join users u on u.id = a.author_id
     group by a.id order by a.at desc, a.id desc limit ?`;
  const p = groupPlan(sqlShape(LATEST, [7, 3], "sqlite", keyed))!;
  const insert: WriteEvent = {
    table: "articles",
    op: "insert",
    new: { id: 9, slug: "n", title: "N", author_id: 1, at: 25 },
  };
  const held = [
    ["c", 30, "cy", 0, 0],
    ["b", 20, "bo", 2, 1],
    ["a", 10, "ann", 1, 0],
  ];
  // The statement ran with this result's parameters: the new row as it has it, key last.
  const fresh = [["n", 25, "ann", 0, 0, 9, 1]];

  it("enters a list with no WHERE, ordered from its first row, where it sorts; the last row falls out", () => {
    expect(whereless(LATEST, [7, 3], "sqlite")).toBe(true);
    expect(insertedKeys(p, [insert], true)).toEqual([9]);
    expect(insertedKeys(p, [insert], false)).toBeUndefined();
    expect(restrictionOf(p, [insert], true, true)).toEqual(new Map([["id", [9]]]));
    expect(restrictionOf(p, [insert], true, false)).toBeUndefined();
    const shared = sharedColumns(p, [insert])!;
    const merged = mergedRows(p, held, fresh, [insert], shared, { inserted: [9], own: true })!;
    expect(merged.rows).toEqual([]);
    expect(placedRows(p, held, merged.entering)).toEqual([held[0], fresh[0]!.slice(0, 5), held[1]]);
  });

  it("run with another viewer's parameters, a new row's flags are not this viewer's: no patch", () => {
    const shared = sharedColumns(p, [insert])!;
    expect(mergedRows(p, held, fresh, [insert], shared, { inserted: [9] })).toBeUndefined();
  });

  it("past the window's end it stays out; a tie with a held row up to the key it does not show: no place", () => {
    const old = [["m", 5, "bo", 0, 0, 9, 1]];
    const shared = sharedColumns(p, [insert])!;
    const past = mergedRows(p, held, old, [insert], shared, { inserted: [9], own: true })!;
    expect(placedRows(p, held, past.entering)).toEqual(held);
    const tie = mergedRows(p, held, [["m", 20, "bo", 0, 0, 9, 1]], [insert], shared, {
      inserted: [9],
      own: true,
    })!;
    expect(placedRows(p, held, tie.entering)).toBeUndefined();
  });
});

describe("what one statement for every viewer must not take (review of stop 78)", () => {
  const keyed = (t: string) =>
    t === "favorites" ? { ...TABLES.favorites!, keys: [["user_id", "article_id"]] } : TABLES[t];
  const favourite: WriteEvent = {
    table: "favorites",
    op: "insert",
    new: { user_id: 7, article_id: 2 },
  };

  it("an aggregate of the select counts its joined rows: with a parameter in it, any write may change it", () => {
    // Another child's row multiplies the tags counted; `count(*) * ?` counts every join.
    for (const column of ["count(*) * ?", "sum(case when t.tag = ? then 1 else 0 end)"]) {
      const sql = `select a.id, a.title, ${column} as n from articles a
        left join tags t on t.article_id = a.id left join favorites f on f.article_id = a.id
        group by a.id order by a.id`;
      const p = groupPlan(sqlShape(sql, [5], "sqlite", keyed));
      expect(p?.outputs?.[2]?.tables).toContain("*");
      expect(p?.outputs?.[2]?.params).toBe(true);
      expect(sharedColumns(p!, [favourite])).toBeUndefined();
    }
  });

  it("a flag whose condition compares under another collation (`= 'x' collate nocase`) is no presence", () => {
    const sql = `select a.id, exists(select 1 from favorites f where f.article_id = a.id
        and f.user_id = ? and f.tag = 'X' collate nocase) as mine
      from articles a inner join users u on u.id = a.author_id order by a.id`;
    const tables = (t: string) =>
      t === "favorites"
        ? {
            columns: { user_id: "number", article_id: "number", tag: "text" },
            keys: [["user_id", "article_id"]],
          }
        : TABLES[t];
    const shape = sqlShape(sql, [7], "sqlite", tables as never);
    expect(shape.lists?.subqueries?.[0]?.presence).toBeUndefined();
    // The same condition in a WHERE is not read as an equality either.
    expect(
      sqlShape("select id from users where username = 'X' collate nocase", [], "sqlite", schema)
        .widened,
    ).toContain("expression");
  });
});
