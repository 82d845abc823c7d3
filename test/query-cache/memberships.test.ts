import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CapturedFile, capturedFile } from "./captured-file.ts";

// Memberships (issue 71), end to end on a SQLite file with capture: a feed and its count
// (`a.author_id in (select following_id from follows where follower_id = ?)`) kept when
// a new article's author is followed by none of their viewers, or a new user is named by
// no article; changed where they are. Every read is compared with the file's answer.

const SCHEMA = `
  create table users (id integer primary key, username text not null unique);
  create table articles (id integer primary key, slug text not null unique,
    author_id integer not null references users(id), at integer not null);
  create table follows (follower_id integer not null, following_id integer not null,
    primary key (follower_id, following_id));
  insert into users values (1, 'ann'), (2, 'bo'), (3, 'cy'), (4, 'di');
  insert into articles values (1, 'a', 1, 10), (2, 'b', 2, 20), (3, 'c', 3, 30);
  create table favorites (user_id integer not null, article_id integer not null,
    kind integer not null, primary key (user_id, article_id));
  insert into follows values (1, 2), (2, 3), (3, 2);`;

const COUNT = `select count(*) as n from articles a inner join users u on u.id = a.author_id
  where a.author_id in (select following_id from follows where follower_id = ?)`;
const FEED = `select a.id, a.slug, u.username from articles a inner join users u on u.id = a.author_id
  where a.author_id in (select following_id from follows where follower_id = ?)
  order by a.at desc, a.id desc limit 10`;

describe("memberships on a SQLite file with capture", () => {
  let db: CapturedFile;
  let sql: CapturedFile["sql"];
  let writer: CapturedFile["writer"];
  let reader: CapturedFile["reader"];

  beforeAll(async () => {
    db = await capturedFile(SCHEMA);
    ({ sql, writer, reader } = db);
  });
  afterAll(async () => {
    await db?.close();
  });

  /** Reads every viewer's feed and count twice (the second a hit where kept), each as the file has it. */
  const readAll = async (when: string) => {
    for (const text of [COUNT, FEED]) {
      for (const viewer of [1, 2, 3, 4]) {
        for (let i = 0; i < 2; i++) {
          const got = await sql.query(text, [viewer]);
          expect(got, `${when}: viewer ${viewer}, ${text.slice(0, 30)}`).toEqual(
            reader.prepare(text).all(viewer),
          );
        }
      }
    }
  };
  /** A write around the entry, then caught up with. */
  const write = async (text: string, ...params: unknown[]) => {
    writer.prepare(text).run(...params);
    await sql.catchUp();
  };

  it("keeps what a write leaves out, and changes what it reaches", async () => {
    await readAll("at first");
    const kept = () => sql.getStats().groupPatches.outside;
    // Author 4 is followed by nobody: every feed and count kept, with one read of follows.
    let before = kept();
    await write("insert into articles values (10, 'n10', 4, 40)");
    await readAll("an article nobody's feed holds");
    expect(kept() - before).toBeGreaterThanOrEqual(6);
    // Author 2 is followed by viewers 1 and 3: their feeds change, 2's and 4's are kept.
    before = kept();
    await write("insert into articles values (11, 'n11', 2, 50)");
    await readAll("an article in two feeds");
    expect(kept() - before).toBeGreaterThanOrEqual(4);
    // The counts of viewers 1 and 3 moved by one, told by the same read (count deltas).
    expect(sql.getStats().groupPatches.counted).toBeGreaterThanOrEqual(2);
    // A new user no article names: kept.
    before = kept();
    await write("insert into users values (5, 'ed')");
    await readAll("a user nobody's article names");
    expect(kept() - before).toBeGreaterThanOrEqual(6);
    // An article naming a user who does not exist yet (foreign keys off on that connection), followed
    // by viewer 4: no feed shows it until the user comes, then viewer 4's does.
    await write("insert into follows values (4, 6)");
    await readAll("a follow of a user to come");
    await write("insert into articles values (12, 'n12', 6, 60)");
    await readAll("an article of a user to come");
    await write("insert into users values (6, 'fy')");
    await readAll("the user comes");
    expect(reader.prepare(COUNT).get(4)).toEqual({ n: 1 });
    // Deleted: the article of author 2 leaves the feeds of 1 and 3 only.
    before = kept();
    await write("delete from articles where id = 11");
    await readAll("an article deleted");
    expect(kept() - before).toBeGreaterThanOrEqual(4);
    expect(sql.getStats().hits).toBeGreaterThan(0);
  });

  it("a count with a FILTER is not told by a favourite's row", async () => {
    // Read without its FILTER on SQLite (the grammar has none), it is no tally of the
    // favourites linked to it: a favourite of another kind leaves it as it was.
    const text = `select a.id, a.slug,
        (select count(*) filter (where f.kind = 1) from favorites f where f.article_id = a.id) as likes
      from articles a order by a.id`;
    const read = async (when: string) => {
      for (let i = 0; i < 2; i++) {
        expect(await sql.query(text, []), when).toEqual(reader.prepare(text).all());
      }
    };
    await read("at first");
    await write("insert into favorites values (1, 1, 2)");
    await read("a favourite of another kind");
    await write("insert into favorites values (2, 1, 1)");
    await read("a favourite of its kind");
  });
});

describe("columns that do not compare as keys", () => {
  /** Reads `text` twice through the cache, then writes `change`, and reads it twice again. */
  const check = async (schema: string, text: string, params: unknown[], change: string) => {
    const db = await capturedFile(schema);
    try {
      const read = async (when: string) => {
        for (let i = 0; i < 2; i++) {
          expect(await db.sql.query(text, params), when).toEqual(
            db.reader.prepare(text).all(...(params as never[])),
          );
        }
      };
      await read("before");
      db.writer.prepare(change).run();
      await db.sql.catchUp();
      await read(`after ${change}`);
    } finally {
      await db.close();
    }
  };

  it("a membership on a column compared without case is not read by value", async () => {
    await check(
      `create table articles (id integer primary key, author text collate nocase, at integer);
       create table follows (follower integer not null, name text not null, primary key (follower, name));
       insert into articles values (1, 'ann', 1); insert into follows values (1, 'bob');`,
      "select a.id from articles a where a.author in (select name from follows where follower = ?) order by a.id",
      [1],
      "insert into articles values (2, 'Bob', 2)",
    );
  });

  it("a count's parent compared without case is not looked up by value", async () => {
    await check(
      `create table users (name text primary key collate nocase, bio text);
       create table articles (id integer primary key, author text, at integer);
       insert into users values ('ann', ''); insert into articles values (1, 'ann', 1);`,
      "select count(*) as n from articles a inner join users u on u.name = a.author",
      [],
      "insert into articles values (3, 'ANN', 3)",
    );
  });

  it("a count's parent joined on a column of another kind (SQLite's affinity) is not looked up by value", async () => {
    await check(
      `create table users (id integer primary key, username text);
       create table articles (id integer primary key, author_id text, at integer);
       insert into users values (5, 'eve'); insert into articles values (1, '5', 1);`,
      "select count(*) as n from articles a inner join users u on u.id = a.author_id",
      [],
      "insert into articles values (2, '5.0', 2)",
    );
  });

  it("a new parent compared without case is not read for by value", async () => {
    await check(
      `create table users (name text primary key collate nocase, bio text);
       create table articles (id integer primary key, author text, at integer);
       insert into users values ('ann', ''); insert into articles values (1, 'ann', 1), (2, 'BOB', 2);`,
      "select a.id, u.name from articles a inner join users u on u.name = a.author order by a.id",
      [],
      "insert into users values ('bob', '')",
    );
  });
});
