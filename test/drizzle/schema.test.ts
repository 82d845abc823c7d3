import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { and, asc, eq, inArray, relations } from "drizzle-orm";
import { drizzle as drizzleLibsql } from "drizzle-orm/libsql";
import { drizzle as drizzleNodePg } from "drizzle-orm/node-postgres";
import { integer as pgInteger, pgSchema, text as pgText } from "drizzle-orm/pg-core";
import { drizzle as drizzlePostgresJs } from "drizzle-orm/postgres-js";
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import fc from "fast-check";
import pg from "pg";
import postgres from "postgres";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  drizzleCache,
  type EdgecacheDrizzleCache,
  withTransactions,
} from "../../src/drizzle/index.ts";
import { postgresSource } from "../../src/sources/postgres.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { edgecache } from "../helpers/built-cli.ts";
import { until } from "../helpers/cluster.ts";
import { requirePostgres } from "../helpers/services.ts";
import type { AnyDb, AnyTable } from "./drivers.ts";

/**
 * A schema like a real app's (the Conduit app of issue 45): foreign keys with ON DELETE
 * CASCADE, link tables with composite keys, a table without a primary key, and relational
 * queries. The Drizzle tables declare no foreign keys: the cache learns them from the
 * database, as an application that declares none (or another process's schema) needs.
 */

const pgServer = await requirePostgres();
interface Tables {
  users: AnyTable;
  articles: AnyTable;
  comments: AnyTable;
  tags: AnyTable;
  articleTag: AnyTable;
  userFollow: AnyTable;
}

interface App {
  t: Tables;
  /** A Drizzle database with its relational schema, on a connection of its own. */
  db(cache?: EdgecacheDrizzleCache): AnyDb;
  /** SQL outside Drizzle, on another connection (`$s.` is the schema's prefix). */
  exec(sql: string): Promise<void>;
  installCapture(): Promise<void>;
  /** Drops the capture triggers of one table, as if it were created after the install. */
  dropCapture(table: string): Promise<void>;
  captured(): Promise<string[]>;
  close(): Promise<void>;
}

function schemaOf(t: Tables) {
  return {
    ...t,
    usersRelations: relations(t.users, ({ many }) => ({ articles: many(t.articles) })),
    articlesRelations: relations(t.articles, ({ one, many }) => ({
      author: one(t.users, { fields: [t.articles.authorId], references: [t.users.id] }),
      comments: many(t.comments),
    })),
    commentsRelations: relations(t.comments, ({ one }) => ({
      article: one(t.articles, { fields: [t.comments.articleId], references: [t.articles.id] }),
    })),
  };
}

const DDL = (s: string, serial: string) => `
  create table ${s}users (id integer primary key, name text not null);
  create table ${s}articles (id integer primary key, slug text not null unique,
    author_id integer not null references ${s}users (id) on delete cascade);
  create table ${s}comments (id ${serial} primary key,
    article_id integer not null references ${s}articles (id) on delete cascade, body text not null);
  create table ${s}tags (name text not null unique);
  create table ${s}article_tag (article_id integer not null references ${s}articles (id) on delete cascade,
    tag text not null, primary key (article_id, tag));
  create table ${s}user_follow (follower_id integer not null references ${s}users (id) on delete cascade,
    following_id integer not null references ${s}users (id) on delete cascade,
    primary key (follower_id, following_id));
  insert into ${s}users values (1, 'Ann'), (2, 'Bo'), (3, 'Cy');
  insert into ${s}articles values (1, 'one', 1), (2, 'two', 2);
  insert into ${s}comments (article_id, body) values (1, 'first'), (2, 'second');
  insert into ${s}tags values ('a'), ('b');
  insert into ${s}article_tag values (1, 'a');
  insert into ${s}user_follow values (1, 2);`;

function libsqlApp(): App {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-schema-"));
  const path = join(dir, "db.sqlite");
  const clients: ReturnType<typeof createClient>[] = [];
  const client = () => {
    const c = createClient({ url: `file:${path}` });
    clients.push(c);
    return c;
  };
  const admin = client();
  const t: Tables = {
    users: sqliteTable("users", { id: integer("id").primaryKey(), name: text("name").notNull() }),
    articles: sqliteTable("articles", {
      id: integer("id").primaryKey(),
      slug: text("slug").notNull(),
      authorId: integer("author_id").notNull(),
    }),
    comments: sqliteTable("comments", {
      id: integer("id").primaryKey(),
      articleId: integer("article_id").notNull(),
      body: text("body").notNull(),
    }),
    tags: sqliteTable("tags", { name: text("name").notNull() }),
    articleTag: sqliteTable("article_tag", {
      articleId: integer("article_id").notNull(),
      tag: text("tag").notNull(),
    }),
    userFollow: sqliteTable("user_follow", {
      followerId: integer("follower_id").notNull(),
      followingId: integer("following_id").notNull(),
    }),
  };
  const schema = schemaOf(t);
  const ready = admin.executeMultiple(DDL("", "integer"));
  return {
    t,
    db: (cache) => drizzleLibsql(client(), { schema, ...(cache && { cache }) }),
    exec: async (sql) => {
      await ready;
      await admin.executeMultiple(sql.replaceAll("$s.", ""));
    },
    async installCapture() {
      await ready;
      await edgecache(["capture", "install", "--db", path]);
    },
    async dropCapture(table) {
      for (const op of ["insert", "update", "delete"]) {
        await admin.execute(`drop trigger edgecache_capture_${table}_${op}`);
      }
    },
    async captured() {
      const { rows } = await admin.execute(
        "select distinct tbl_name from sqlite_master where type = 'trigger' order by 1",
      );
      return rows.map((r) => String(r.tbl_name));
    },
    async close() {
      for (const c of clients) c.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function pgTables(name: string): Tables {
  const s = pgSchema(name);
  return {
    users: s.table("users", { id: pgInteger("id").primaryKey(), name: pgText("name").notNull() }),
    articles: s.table("articles", {
      id: pgInteger("id").primaryKey(),
      slug: pgText("slug").notNull(),
      authorId: pgInteger("author_id").notNull(),
    }),
    comments: s.table("comments", {
      id: pgInteger("id").primaryKey(),
      articleId: pgInteger("article_id").notNull(),
      body: pgText("body").notNull(),
    }),
    tags: s.table("tags", { name: pgText("name").notNull() }),
    articleTag: s.table("article_tag", {
      articleId: pgInteger("article_id").notNull(),
      tag: pgText("tag").notNull(),
    }),
    userFollow: s.table("user_follow", {
      followerId: pgInteger("follower_id").notNull(),
      followingId: pgInteger("following_id").notNull(),
    }),
  };
}

function postgresJsApp(url: string): App {
  const name = `ec_schema_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const t = pgTables(name);
  const schema = schemaOf(t);
  const admin = new pg.Pool({ connectionString: url, max: 2 });
  const ready = admin.query(`create schema ${name}; ${DDL(`${name}.`, "serial")}`);
  const clients: ReturnType<typeof postgres>[] = [];
  return {
    t,
    db(cache) {
      const c = postgres(url, { max: 4, onnotice: () => {} });
      clients.push(c);
      return drizzlePostgresJs(c, { schema, ...(cache && { cache }) });
    },
    exec: async (sql) => {
      await ready;
      await admin.query(sql.replaceAll("$s.", `${name}.`));
    },
    async installCapture() {
      await ready;
      const source = await postgresSource({ url, schema: name, max: 1 });
      await source.installCapture();
      await source.close();
    },
    async dropCapture(table) {
      await admin.query(`drop trigger edgecache_capture on ${name}.${table}`);
    },
    async captured() {
      const { rows } = await admin.query(
        `select distinct c.relname from pg_trigger g join pg_class c on c.oid = g.tgrelid
          join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = $1 and g.tgname = 'edgecache_capture' order by 1`,
        [name],
      );
      return rows.map((r) => String(r.relname));
    },
    async close() {
      for (const c of clients) await c.end();
      await admin.query(`drop schema if exists ${name} cascade`);
      await admin.query(`drop schema if exists edgecache_${name} cascade`);
      await admin.end();
    },
  };
}

function schemaSuite(make: () => App): void {
  let app: App;
  const caches: EdgecacheDrizzleCache[] = [];
  const open = async (capture: boolean) => {
    await app.exec("select 1");
    const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all", ttl: 3_600_000 });
    caches.push(cache);
    const db = withTransactions(app.db(cache), { capture });
    // The catalog (foreign keys, captured tables) is read as the cache starts; capture is
    // followed once the application queries a captured table.
    await db.select().from(app.t.users).where(eq(app.t.users.id, 0));
    if (capture) await until(() => cache.getStats().writes === "capture");
    await cache.catchUp();
    await new Promise((r) => setTimeout(r, 50));
    return { cache, db };
  };
  const commentsOf = (db: AnyDb, article: number) =>
    db
      .select({ id: app.t.comments.id, body: app.t.comments.body })
      .from(app.t.comments)
      .where(eq(app.t.comments.articleId, article))
      .orderBy(asc(app.t.comments.id));
  /** Deletes article 1 (its comments cascade) and posts it again under the same slug. */
  const repost = async (db: AnyDb) => {
    await db.delete(app.t.articles).where(eq(app.t.articles.id, 1));
    await db.insert(app.t.articles).values({ id: 1, slug: "one", authorId: 1 });
  };

  beforeEach(() => {
    app = make();
  });
  afterEach(async () => {
    for (const c of caches.splice(0)) await c.close();
    await app.close();
  });

  describe("cascades (A)", () => {
    it("a delete that cascades drops the cached rows of the child table, without capture", async () => {
      const { db } = await open(false);
      expect(await commentsOf(db, 1)).toHaveLength(1);
      await repost(db);
      // Before the fix: the deleted article's comment, from the cache, for the TTL.
      expect(await commentsOf(db, 1)).toEqual([]);
    });

    it("in a transaction, the cascade's tables go at the commit", async () => {
      const { db } = await open(false);
      expect(await commentsOf(db, 1)).toHaveLength(1);
      await db.transaction(async (tx: AnyDb) => {
        await tx.delete(app.t.articles).where(eq(app.t.articles.id, 1));
      });
      expect(await commentsOf(db, 1)).toEqual([]);
    });

    it("with capture, cascaded rows are captured: other articles' comments stay cached", async () => {
      await app.installCapture();
      const { cache, db } = await open(true);
      await commentsOf(db, 1);
      await commentsOf(db, 2);
      await repost(db);
      const misses = cache.getStats().misses;
      expect(await commentsOf(db, 2)).toHaveLength(1);
      expect(cache.getStats().misses).toBe(misses); // still a hit
      expect(await commentsOf(db, 1)).toEqual([]);
    });

    it("with capture, a cascade child table capture does not cover goes as a table", async () => {
      await app.installCapture();
      await app.dropCapture("comments");
      const { cache, db } = await open(true);
      expect(cache.getStats().capture?.tables.some((t) => t.endsWith("comments"))).toBe(false);
      await commentsOf(db, 1);
      await repost(db);
      expect(await commentsOf(db, 1)).toEqual([]);
    });
  });

  describe("tables without a single-column key (B)", () => {
    it("capture covers link tables and tables without a primary key", async () => {
      await app.installCapture();
      const captured = await app.captured();
      for (const t of ["article_tag", "tags", "user_follow", "users", "comments"]) {
        expect(captured).toContain(t);
      }
      expect(captured.some((t) => t.startsWith("_edgecache"))).toBe(false);
    });

    it("writes made around Drizzle to them are seen (never a stale read)", async () => {
      await app.installCapture();
      const { cache, db } = await open(true);
      const follows = () =>
        db
          .select()
          .from(app.t.userFollow)
          .where(eq(app.t.userFollow.followerId, 1))
          .orderBy(asc(app.t.userFollow.followingId));
      const tags = () => db.select().from(app.t.tags).orderBy(asc(app.t.tags.name));
      const articleTags = () => db.select().from(app.t.articleTag);
      expect(await follows()).toEqual([{ followerId: 1, followingId: 2 }]);
      expect(await tags()).toHaveLength(2);
      expect(await articleTags()).toHaveLength(1);
      await app.exec(`insert into $s.user_follow values (1, 3);
        insert into $s.tags values ('c'); delete from $s.article_tag;`);
      await until(async () => (await follows()).length === 2);
      await cache.catchUp();
      expect(await tags()).toHaveLength(3);
      expect(await articleTags()).toEqual([]);
    });

    it("with capture, a write to a link table drops only the cached selects its row matches", async () => {
      await app.installCapture();
      const { cache, db } = await open(true);
      const { userFollow: f, users } = app.t;
      // The users `id` follows: the link table read in a subquery, by its follower.
      const followed = (id: number) =>
        db
          .select({ id: users.id, name: users.name })
          .from(users)
          .where(
            inArray(users.id, db.select({ id: f.followingId }).from(f).where(eq(f.followerId, id))),
          )
          .orderBy(asc(users.id));
      await followed(1);
      await followed(2);
      await db.insert(f).values({ followerId: 2, followingId: 3 });
      const misses = cache.getStats().misses;
      // Before: the link table has no single-column key, so any write to it emptied both.
      expect(await followed(1)).toEqual([{ id: 2, name: "Bo" }]);
      expect(cache.getStats().misses).toBe(misses);
      expect(await followed(2)).toEqual([{ id: 3, name: "Cy" }]);
    });
  });

  it("property: reads of link tables, after random writes through Drizzle and around it, match the database", async () => {
    await app.installCapture();
    const { cache, db } = await open(true);
    const plain = app.db();
    const { userFollow: f, tags } = app.t;
    const byFollower = (d: AnyDb, id: number) =>
      d.select().from(f).where(eq(f.followerId, id)).orderBy(asc(f.followingId));
    const pair = (d: AnyDb, a: number, b: number) =>
      d
        .select()
        .from(f)
        .where(and(eq(f.followerId, a), eq(f.followingId, b)));
    const allTags = (d: AnyDb) => d.select().from(tags).orderBy(asc(tags.name));
    const id = fc.integer({ min: 1, max: 3 });
    const op = fc.oneof(
      fc.record({ kind: fc.constant("follow"), a: id, b: id, outside: fc.boolean() }),
      fc.record({ kind: fc.constant("unfollow"), a: id, b: id, outside: fc.boolean() }),
      fc.record({ kind: fc.constant("tag"), a: id, b: id, outside: fc.boolean() }),
      fc.record({ kind: fc.constant("read"), a: id, b: id, outside: fc.constant(false) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 8 }), async (ops) => {
        for (const o of ops) {
          if (o.kind === "follow") {
            if (o.outside) {
              await app.exec(
                `insert into $s.user_follow values (${o.a}, ${o.b}) on conflict do nothing`,
              );
            } else {
              await db
                .insert(f)
                .values({ followerId: o.a, followingId: o.b })
                .onConflictDoNothing();
            }
          } else if (o.kind === "unfollow") {
            if (o.outside) {
              await app.exec(`delete from $s.user_follow where follower_id = ${o.a}`);
            } else {
              await db.delete(f).where(and(eq(f.followerId, o.a), eq(f.followingId, o.b)));
            }
          } else if (o.kind === "tag") {
            const name = `t${o.a}${o.b}`;
            if (o.outside) await app.exec(`delete from $s.tags where name = '${name}'`);
            else await db.insert(tags).values({ name }).onConflictDoNothing();
          } else {
            // Writes made around Drizzle are seen once capture has applied them.
            await cache.catchUp();
            expect(await byFollower(db, o.a)).toEqual(await byFollower(plain, o.a));
            expect(await pair(db, o.a, o.b)).toEqual(await pair(plain, o.a, o.b));
            expect(await allTags(db)).toEqual(await allTags(plain));
          }
        }
      }),
      { numRuns: 15 },
    );
    // And the cache serves them: the same read twice with no write between is a hit (a count
    // of hits over the random runs' reads was 0 once, in a fresh-clone CI at 10df7c9 on
    // postgres.js; why is not established: every read there matched the database).
    await cache.catchUp();
    await allTags(db);
    const hits = cache.getStats().hits;
    expect(await allTags(db)).toEqual(await allTags(plain));
    expect(cache.getStats().hits).toBe(hits + 1);
  });

  describe("relational queries (C)", () => {
    const withArticles = (db: AnyDb) =>
      db.query.users.findMany({
        with: { articles: { columns: { slug: true } } },
        orderBy: (u: AnyTable, { asc }: { asc: (c: unknown) => unknown }) => [asc(u.id)],
      });
    const first = (db: AnyDb) =>
      db.query.articles.findFirst({
        where: (a: AnyTable, { eq }: { eq: (a: unknown, b: unknown) => unknown }) =>
          eq(a.slug, "two"),
        with: { author: true, comments: true },
      });

    it("are cached: a hit the second time, with the same value", async () => {
      const { cache, db } = await open(false);
      const plain = app.db();
      const expected = await withArticles(plain);
      expect(await withArticles(db)).toEqual(expected);
      const hits = cache.getStats().hits;
      expect(await withArticles(db)).toStrictEqual(await withArticles(db));
      expect(await withArticles(db)).toEqual(expected);
      expect(cache.getStats().hits).toBeGreaterThan(hits);
      const one = await first(db);
      expect(one).toEqual(await first(plain));
      expect(await first(db)).toStrictEqual(one);
    });

    it("a write to any table they read invalidates them", async () => {
      const { db } = await open(false);
      await withArticles(db);
      await first(db);
      await db.insert(app.t.articles).values({ id: 3, slug: "three", authorId: 3 });
      expect((await withArticles(db))[2].articles).toEqual([{ slug: "three" }]);
      await db
        .update(app.t.comments)
        .set({ body: "edited" })
        .where(eq(app.t.comments.articleId, 2));
      expect((await first(db)).comments[0].body).toBe("edited");
      await db.update(app.t.users).set({ name: "Bea" }).where(eq(app.t.users.id, 2));
      expect((await first(db)).author.name).toBe("Bea");
    });

    it("with capture, a write made around Drizzle invalidates them", async () => {
      await app.installCapture();
      const { cache, db } = await open(true);
      await first(db);
      await app.exec(`update $s.comments set body = 'outside' where article_id = 2`);
      await cache.catchUp();
      expect((await first(db)).comments[0].body).toBe("outside");
    });

    it("in a transaction they are neither served from the cache nor stored", async () => {
      const { cache, db } = await open(false);
      await withArticles(db);
      const before = cache.getStats();
      await db.transaction(async (tx: AnyDb) => {
        await tx.insert(app.t.articles).values({ id: 4, slug: "four", authorId: 1 });
        const inside = await withArticles(tx);
        expect(inside[0].articles.map((a: { slug: string }) => a.slug)).toContain("four");
      });
      const after = cache.getStats();
      expect(after.hits).toBe(before.hits);
      expect(after.misses).toBe(before.misses);
      expect((await withArticles(db))[0].articles).toHaveLength(2);
    });
  });
}

describe("drizzle on a real app's schema: libSQL (file)", () => {
  schemaSuite(libsqlApp);
});

pgServer.describe("drizzle on a real app's schema: postgres.js", () => {
  schemaSuite(() => postgresJsApp(pgServer.url));
});

pgServer.describe("drizzle cascades on a client capture does not know (node-postgres)", () => {
  it("uses the Drizzle schema's own foreign keys", async () => {
    const name = `ec_schema_fk_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    const s = pgSchema(name);
    const articles = s.table("articles", { id: pgInteger("id").primaryKey() });
    const comments = s.table("comments", {
      id: pgInteger("id").primaryKey(),
      articleId: pgInteger("article_id")
        .notNull()
        .references(() => articles.id, { onDelete: "cascade" }),
    });
    const pool = new pg.Pool({ connectionString: pgServer.url, max: 2 });
    try {
      await pool.query(`create schema ${name};
        create table ${name}.articles (id integer primary key);
        create table ${name}.comments (id integer primary key,
          article_id integer not null references ${name}.articles (id) on delete cascade);
        insert into ${name}.articles values (1); insert into ${name}.comments values (1, 1);`);
      const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
      const db = withTransactions(drizzleNodePg(pool, { cache, schema: { articles, comments } }));
      const list = () => db.select().from(comments).where(eq(comments.articleId, 1));
      expect(await list()).toHaveLength(1);
      await db.delete(articles).where(eq(articles.id, 1));
      await db.insert(articles).values({ id: 1 });
      expect(await list()).toEqual([]);
    } finally {
      await pool.query(`drop schema if exists ${name} cascade`);
      await pool.end();
    }
  });
});
