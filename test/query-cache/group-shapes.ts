// The shapes and writes of group patches' property tests (issue 71), on a small
// Conduit-like schema: test/query-cache/group-patches.test.ts (SQLite, PostgreSQL) and
// test/sql/d1-groups-in-workerd.test.ts (D1, inside workerd) run the same.

/** How a database spells placeholders (`?` or `$n`) and names its tables. */
export interface Dialect {
  p(n: number): string;
  t(name: string): string;
}

export const SCHEMA = (t: (n: string) => string) => `
  create table ${t("users")} (id integer primary key, username text not null unique, bio text not null);
  create table ${t("articles")} (id integer primary key, slug text not null unique, title text not null,
    author_id integer not null references ${t("users")}(id), created_at integer not null);
  create table ${t("favorites")} (user_id integer not null, article_id integer not null,
    primary key (user_id, article_id));
  create table ${t("tags")} (article_id integer not null, tag text not null, primary key (article_id, tag));
  insert into ${t("users")} values (1, 'ann', 'a'), (2, 'bo', 'b'), (3, 'cy', 'c');
  insert into ${t("articles")} values (1, 's1', 'one', 1, 10), (2, 's2', 'two', 2, 20),
    (3, 's3', 'three', 1, 30), (4, 's4', 'four', 3, 40), (5, 's5', 'five', 2, 50);
  insert into ${t("favorites")} values (1, 1), (2, 1), (3, 2);
  insert into ${t("tags")} values (1, 'x'), (1, 'y'), (2, 'x');`;

/** The Conduit list's shapes: counts, a per-user flag, a tag count, the author's name. */
export function reads(db: Dialect): [string, (viewer: number, x: number) => unknown[]][] {
  const { p, t } = db;
  const select = (viewer: number) => `select a.id, a.slug, a.title, a.author_id, u.username, u.bio,
      (select count(*) from ${t("favorites")} f where f.article_id = a.id) as favorites,
      (select count(*) from ${t("favorites")} f2 where f2.article_id = a.id and f2.user_id = ${p(viewer)}) as favorited,
      count(tg.tag) as tag_count, max(tg.tag) as last_tag
    from ${t("articles")} a inner join ${t("users")} u on u.id = a.author_id
    left join ${t("tags")} tg on tg.article_id = a.id`;
  return [
    [
      `${select(1)} group by a.id, u.id order by a.created_at desc, a.id desc limit ${p(2)} offset ${p(3)}`,
      (viewer, x) => [viewer, 2 + (x % 3), x % 2],
    ],
    [
      `${select(1)} where a.slug = ${p(2)} group by a.id, u.id`,
      (viewer, x) => [viewer, `s${1 + (x % 5)}`],
    ],
    // One article by its key: answered from a held list where one shows it.
    [
      `${select(1)} where a.id = ${p(2)} group by a.id, u.id order by a.id`,
      (viewer, x) => [viewer, 1 + ((x * 3) % 7)],
    ],
    [
      `${select(1)} group by a.id, u.id order by a.created_at desc, a.id desc`,
      (viewer) => [viewer],
    ],
    // A condition on the aggregated children: their counts depend on it, kept in the patch.
    [
      `${select(1)} where tg.tag <> ${p(2)} group by a.id, u.id order by a.id`,
      (viewer, x) => [viewer, x % 2 ? "x" : "t1"],
    ],
    // Rows that a write to a joined table brings in or takes out, or moves: not group-patched.
    [
      `${select(1)} where u.username = ${p(2)} group by a.id, u.id order by a.id`,
      (viewer, x) => [viewer, ["ann", "bo", `u1-${x - 1}`][x % 3]],
    ],
    [
      `${select(1)} where a.id in (select article_id from ${t("tags")} where tag = ${p(2)}) group by a.id, u.id order by a.id`,
      (viewer, x) => [viewer, x % 2 ? "x" : "t1"],
    ],
    [
      `${select(1)} where exists (select 1 from ${t("tags")} e where e.article_id = a.id and e.tag = ${p(2)}) group by a.id, u.id order by a.id`,
      (viewer, x) => [viewer, x % 2 ? "t2" : "t1"],
    ],
    [
      `${select(1)} group by a.id, u.id order by u.username, a.id limit ${p(2)}`,
      (viewer) => [viewer, 3],
    ],
    // The author not shown: an author's update, and whether the author favourited article 1
    // or 2, reach rows by a column only the group patch's statement carries.
    [
      `select a.id, a.title, u.username, u.bio,
         (select count(*) from ${t("favorites")} f where f.article_id = a.id) as favorites,
         exists (select 1 from ${t("favorites")} f2 where f2.article_id = a.id and f2.user_id = ${p(1)}) as favorited,
         exists (select 1 from ${t("favorites")} f3 where f3.user_id = a.author_id and f3.article_id = ${p(2)}) as author_likes
       from ${t("articles")} a inner join ${t("users")} u on u.id = a.author_id
       where a.created_at > ${p(3)} group by a.id, u.id order by a.created_at desc, a.id desc limit ${p(4)}`,
      (viewer, x) => [viewer, 1 + (x % 2), x % 3 === 0 ? 0 : 15, 4],
    ],
    // The slug shown, not the key (as Conduit's list): the catalog's unique, NOT NULL slug
    // names the rows.
    [
      `select a.slug, a.title, u.username,
         (select count(*) from ${t("favorites")} f where f.article_id = a.id) as favorites,
         exists (select 1 from ${t("favorites")} f2 where f2.article_id = a.id and f2.user_id = ${p(1)}) as favorited
       from ${t("articles")} a inner join ${t("users")} u on u.id = a.author_id
       group by a.id, u.id order by a.created_at desc, a.id desc limit ${p(2)}`,
      (viewer, x) => [viewer, 2 + (x % 3)],
    ],
    // Counts whose rows an `IN (select ...)` picks (a tag's, a feed's): a new article with
    // no such row leaves them as they were, told by one read shared by all (memberships).
    [
      `select count(*) as n from ${t("articles")} a where a.id in (select article_id from ${t("tags")} where tag = ${p(1)})`,
      (_, x) => [["x", "t1", "t2"][x % 3]],
    ],
    [
      `select count(*) as n from ${t("articles")} a inner join ${t("users")} u on u.id = a.author_id
       where a.author_id in (select user_id from ${t("favorites")} where article_id = ${p(1)})`,
      (viewer, x) => [viewer + (x % 3)],
    ],
    // A subquery with a join inside: only an article no favourite names is told outside.
    [
      `select count(*) as n from ${t("articles")} a where a.id in (select f.article_id
         from ${t("favorites")} f join ${t("users")} v on v.id = f.user_id where v.username = ${p(1)})`,
      (viewer) => [["ann", "bo"][viewer - 1]],
    ],
    // The latest articles, their time shown: a new article enters where it sorts.
    [
      `select a.id, a.created_at, a.title, u.username,
         (select count(*) from ${t("favorites")} f where f.article_id = a.id) as favorites,
         exists (select 1 from ${t("favorites")} f2 where f2.article_id = a.id and f2.user_id = ${p(1)}) as favorited
       from ${t("articles")} a inner join ${t("users")} u on u.id = a.author_id
       group by a.id, u.id order by a.created_at desc, a.id desc limit ${p(2)}`,
      (viewer, x) => [viewer, 3 + (x % 2)],
    ],
  ];
}

/** A seeded generator (mulberry32): the same writes on every run. */
export function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** One random write, its SQL and parameters. */
export function write(db: Dialect, next: () => number, step: number): [string, unknown[]] {
  const { p, t } = db;
  const pick = (n: number) => 1 + Math.floor(next() * n);
  const user = pick(3);
  const article = pick(5);
  switch (Math.floor(next() * 10)) {
    case 7:
      return [
        `insert into ${t("articles")} values (${p(1)}, ${p(2)}, 'new', ${p(3)}, ${p(4)})`,
        [100 + step, `n${step}`, user, 100 + step],
      ];
    case 8:
      // The newest article: at the top of each window, which takes in the row past its end.
      return [
        `delete from ${t("articles")} where id = (select max(id) from ${t("articles")} where id > ${p(1)})`,
        [2],
      ];
    case 9:
      return [
        `insert into ${t("users")} values (${p(1)}, ${p(2)}, 'new')`,
        [100 + step, `v${step}`],
      ];
    case 0: {
      // Now and then a favourite of the newest article, or of the next one before it is
      // written (favourites reference no article): a new article's flags and counts are
      // then not all false and zero.
      const which = pick(8);
      const of = which === 7 ? 100 + step - 1 : which === 8 ? 100 + step + 1 : article;
      return [
        `insert into ${t("favorites")} values (${p(1)}, ${p(2)}) on conflict do nothing`,
        [user, of],
      ];
    }
    case 1:
      return [
        `delete from ${t("favorites")} where user_id = ${p(1)} and article_id = ${p(2)}`,
        [user, article],
      ];
    case 2:
      return [
        `insert into ${t("tags")} values (${p(1)}, ${p(2)}) on conflict do nothing`,
        [article, `t${pick(4)}`],
      ];
    case 3:
      return [`delete from ${t("tags")} where article_id = ${p(1)}`, [article]];
    case 4:
      return [`update ${t("users")} set bio = ${p(1)} where id = ${p(2)}`, [`bio ${step}`, user]];
    case 5:
      return [
        `update ${t("articles")} set title = ${p(1)} where id = ${p(2)}`,
        [`t${step}`, article],
      ];
    default:
      return [
        `update ${t("users")} set username = ${p(1)} where id = ${p(2)}`,
        [`u${user}-${step}`, user],
      ];
  }
}

/** Rows as plain objects with numbers (PostgreSQL's counts come as text). */
export function plain(rows: readonly unknown[]): unknown[] {
  return rows.map((r) =>
    Object.fromEntries(
      Object.entries(r as Record<string, unknown>).map(([k, v]) => [
        k,
        typeof v === "bigint" || (typeof v === "string" && /^\d+$/.test(v) && k !== "slug")
          ? Number(v)
          : v,
      ]),
    ),
  );
}
