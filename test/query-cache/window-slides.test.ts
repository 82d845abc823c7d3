import postgres from "postgres";
import { describe, expect, it } from "vitest";
import { postgresSource } from "../../src/sources/postgres.ts";
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { requirePostgres } from "../helpers/services.ts";
import { capturedFile } from "./captured-file.ts";

// Windows whose rows a record deletes (issue 71, database/analysis/window-slides.ts), in
// the records a review of the first version wrote: each cached read after the record
// equals the database's.

const pg = await requirePostgres();

const SCHEMA = `
  create table users (id integer primary key, username text not null);
  create table articles (id integer primary key, slug text not null unique, author_id integer not null, created_at integer not null);
  create table favorites (user_id integer not null, article_id integer not null, primary key (user_id, article_id));
  insert into users values (1, 'ann'), (2, 'bo');
  insert into articles values (1,'s1',1,10),(2,'s2',2,20),(3,'s3',1,30),(4,'s4',2,40),(5,'s5',1,50);
  insert into favorites values (1, 5);
`;
// Conduit's list: the slug names the rows (the key not shown), the viewer's flag.
const BY_SLUG = `select a.slug, a.created_at, u.username,
    (select count(*) from favorites f where f.article_id = a.id) as favorites,
    exists (select 1 from favorites f2 where f2.article_id = a.id and f2.user_id = ?) as favorited
  from articles a inner join users u on u.id = a.author_id
  group by a.id order by a.created_at desc, a.id desc limit ?`;
const BY_ID = BY_SLUG.replace("select a.slug,", "select a.id, a.slug,");

describe("a window whose rows a record deletes", () => {
  it.each([
    [
      "the newest article deleted: slid, the next one read in",
      BY_SLUG,
      [
        ["delete from favorites where article_id = 5", []],
        ["delete from articles where id = 5", []],
      ],
    ],
    [
      "a slug deleted and reused by a new article: the new row's flag is its own",
      BY_SLUG,
      [
        ["delete from articles where id = 5", []],
        ["insert into articles values (9, 's5', 2, 55)", []],
      ],
    ],
    [
      "an article deleted and written again under its key: its flag is its own",
      BY_ID,
      [
        ["delete from favorites where article_id = 5", []],
        ["delete from articles where id = 5", []],
        ["insert into articles values (5, 's5b', 2, 55)", []],
      ],
    ],
    [
      "an article renamed, then deleted: it leaves by its older name",
      BY_SLUG,
      [
        ["update articles set slug = 's5-renamed' where id = 5", []],
        ["delete from articles where id = 5", []],
      ],
    ],
  ] as [string, string, [string, unknown[]][]][])("%s", async (_, list, writes) => {
    const h = await capturedFile(SCHEMA);
    try {
      await h.sql.query(list, [1, 3]);
      await h.sql.query(list, [1, 3]); // read since stored
      await h.around(...writes);
      expect(await h.sql.query(list, [1, 3])).toEqual(h.fresh(list, [1, 3]));
      expect(h.sql.getStats().groupPatches.dropped).toBe(0);
    } finally {
      await h.close();
    }
  });
});

describe("a window ordered by a collation its column does not have", () => {
  // The column compares NOCASE, the list orders by BINARY: the rows after the last one kept
  // are read by position, not by a comparison the column would make by its own collation.
  it("slides in the row the database orders next", async () => {
    const h = await capturedFile(`
      create table articles (id integer primary key, title text not null collate nocase);
      create table favorites (user_id integer not null, article_id integer not null, primary key (user_id, article_id));
      insert into articles values (12, 'c'), (11, 'b'), (10, 'a'), (3, 'C'), (2, 'B'), (1, 'A');
    `);
    const list = `select a.id, a.title,
        (select count(*) from favorites f where f.article_id = a.id) as favorites
      from articles a group by a.id order by a.title collate binary desc, a.id desc limit ?`;
    try {
      await h.sql.query(list, [3]);
      await h.sql.query(list, [3]); // read since stored
      await h.around(["delete from articles where id = 12", []]);
      expect(await h.sql.query(list, [3])).toEqual(h.fresh(list, [3]));
      expect(h.sql.getStats().groupPatches.slid).toBe(1);
    } finally {
      await h.close();
    }
  });
});

describe.runIf(pg)("on PostgreSQL", () => {
  // postgres.js reads an int8 as text, capture's image has it as a number: one name.
  it.each([["bigint"], ["integer"]])(
    "articles.id %s: an article deleted from a full window leaves it",
    async (idType) => {
      const url = pg!.url;
      const schema = `ec_slides_${process.pid}_${Date.now().toString(36)}`;
      const admin = postgres(url, { max: 2, onnotice: () => {} });
      const t = (n: string) => `${schema}.${n}`;
      await admin.unsafe(`create schema ${schema};
      create table ${t("users")} (id integer primary key, username text not null);
      create table ${t("articles")} (id ${idType} primary key, slug text not null unique, author_id integer not null, created_at integer not null);
      create table ${t("favorites")} (user_id integer not null, article_id ${idType} not null, primary key (user_id, article_id));
      insert into ${t("users")} values (1, 'ann'), (2, 'bo');
      insert into ${t("articles")} values (1,'s1',1,10),(2,'s2',2,20),(3,'s3',1,30),(4,'s4',2,40),(5,'s5',1,50);`);
      const source = await postgresSource({ url, schema, max: 1 });
      await source.installCapture();
      await source.close();
      const client = postgres(url, { max: 4, onnotice: () => {} });
      const sql = sqlCache({ client, tiers: [memoryStore()] });
      const LIST = `select a.id, a.created_at, u.username,
        (select count(*) from ${t("favorites")} f where f.article_id = a.id) as favorites
      from ${t("articles")} a inner join ${t("users")} u on u.id = a.author_id
      group by a.id, u.id order by a.created_at desc limit $1`;
      try {
        await sql.query(`select id from ${t("users")} where id = $1`, [1]);
        const until = Date.now() + 10_000;
        while (sql.getStats().writes !== "capture") {
          if (Date.now() > until) throw new Error("capture not followed");
          await new Promise((r) => setTimeout(r, 10));
        }
        await sql.query(LIST, [3]);
        await sql.query(LIST, [3]);
        await admin.unsafe(`delete from ${t("articles")} where id = 5`);
        await sql.catchUp();
        expect(await sql.query(LIST, [3])).toEqual([...(await admin.unsafe(LIST, [3]))]);
      } finally {
        await sql.close();
        await client.end();
        await admin.unsafe(
          `drop schema if exists ${schema} cascade; drop schema if exists edgecache_${schema} cascade`,
        );
        await admin.end();
      }
    },
  );
});
