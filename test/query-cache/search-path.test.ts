import { eq } from "drizzle-orm";
import { drizzle } from "drizzle-orm/node-postgres";
import { integer, pgTable, text } from "drizzle-orm/pg-core";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import postgres from "postgres";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { type CachedDialect, kyselyCache } from "../../src/kysely/index.ts";
import { postgresSource } from "../../src/sources/postgres.ts";
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { following } from "../helpers/following.ts";
import { requirePostgres } from "../helpers/services.ts";

/**
 * Tables named without their schema, on PostgreSQL, are the tables the session's search path
 * reaches (docs/guides/kysely.md): a pool whose path points at another schema than `public`
 * (`-c search_path=...`, `ALTER DATABASE ... SET search_path`, `$user`) has its reads and
 * writes planned on that schema's tables, and a path changed through the cache leaves no read
 * answered for the wrong table. A database of its own (its `public` is the file's), a schema
 * per test. Kysely, raw SQL and Drizzle (whose tables declared without a schema are named
 * as `public`'s: its writes to one the path finds elsewhere go by table).
 */

const server = await requirePostgres();

// biome-ignore lint/suspicious/noExplicitAny: the tests' tables are untyped
type Db = Kysely<any>;

server.describe("tables named through the search path (PostgreSQL)", () => {
  let url = "";
  let admin: postgres.Sql;
  let serverAdmin: postgres.Sql;
  const closers: (() => Promise<void>)[] = [];

  const database = `ec_search_path_${process.pid}_${Math.floor(Math.random() * 1e6)}`;

  beforeAll(async () => {
    serverAdmin = postgres(server.url, { max: 1, onnotice: () => {} });
    await serverAdmin.unsafe(`create database ${database}`);
    const u = new URL(server.url);
    u.pathname = `/${database}`;
    url = u.toString();
    admin = postgres(url, { max: 1, onnotice: () => {} });
  });

  // Each test's caches end with it: the next one's consume the change tables in their turn.
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  afterAll(async () => {
    await admin.end();
    await serverAdmin.unsafe(`drop database if exists ${database} with (force)`);
    await serverAdmin.end();
  });

  /** A schema of its own with `ddl`, capture installed there. */
  async function schemaWith(ddl: (schema: string) => string): Promise<string> {
    const schema = `app_${Math.random().toString(36).slice(2, 8)}`;
    await admin.unsafe(`create schema ${schema}; ${ddl(schema)}`);
    await install(schema);
    return schema;
  }

  async function install(schema: string): Promise<void> {
    const source = await postgresSource({ url, schema, max: 1 });
    await source.installCapture();
    await source.close();
  }

  /** Kysely over a node-postgres pool, cached, whose connections start with `options`. */
  function kysely(options: string | undefined, capture: boolean) {
    const pool = new pg.Pool({ connectionString: url, max: 4, ...(options && { options }) });
    const dialect = kyselyCache(new PostgresDialect({ pool }), {
      client: pool,
      tiers: [memoryStore()],
      capture,
    });
    const db: Db = new Kysely({ dialect });
    closers.push(() => db.destroy());
    return { db, cache: (dialect as CachedDialect).cache };
  }

  const FAMILY = (s: string) => `
    create table ${s}.parents (id integer primary key, name text not null);
    create table ${s}.children (id integer primary key,
      parent_id integer not null references ${s}.parents (id) on delete cascade, name text not null);
    insert into ${s}.parents values (1, 'Ann'), (2, 'Bo');
    insert into ${s}.children values (10, 1, 'x'), (11, 1, 'y'), (20, 2, 'z');`;

  for (const capture of [true, false]) {
    it(`a cascading delete through Kysely, tables named bare and found by the pool's search_path, leaves no stale read of the child table (capture ${capture ? "followed" : "off"})`, async () => {
      const schema = await schemaWith(FAMILY);
      const { db, cache } = kysely(`-c search_path=${schema}`, capture);
      const children = (parent: number) =>
        db.selectFrom("children").select(["id", "name"]).where("parent_id", "=", parent).execute();
      expect(await children(1)).toHaveLength(2);
      if (capture) await following(cache);
      expect(await children(1)).toHaveLength(2);
      const hits = cache.getStats().hits;
      expect(await children(1)).toHaveLength(2);
      expect(cache.getStats().hits).toBe(hits + 1);
      // Capture installed in the schema is followed: its tables are named as capture names them.
      if (capture) expect(cache.getStats().capture?.tables).toContain(`${schema}.children`);

      await db.deleteFrom("parents").where("id", "=", 1).execute();
      expect(await children(1)).toEqual([]);
      expect(await children(2)).toEqual([{ id: 20, name: "z" }]);
    });
  }

  const USERS = (s: string) => `
    create table ${s}.users (id integer primary key, name text not null);
    insert into ${s}.users values (1, '${s} one'), (2, '${s} two');`;

  it("same-named tables in public and another schema: reads and writes through Kysely reach the table the database's search_path finds (ALTER DATABASE ... SET search_path)", async () => {
    await admin.unsafe(`drop table if exists public.users; ${USERS("public")}`);
    await install("public");
    const schema = await schemaWith(USERS);
    await admin.unsafe(`alter database ${database} set search_path = ${schema}, public`);
    try {
      const { db, cache } = kysely(undefined, true);
      const byId = async (id: number) =>
        (await db.selectFrom("users").select("name").where("id", "=", id).execute())[0]?.name;
      expect(await byId(1)).toBe(`${schema} one`);
      await following(cache);
      expect(await byId(1)).toBe(`${schema} one`);
      // Written bare: the search path's table, not public's.
      await db.updateTable("users").set({ name: "bare" }).where("id", "=", 1).execute();
      expect(await byId(1)).toBe("bare");
      // Written with its schema named.
      await db.updateTable(`${schema}.users`).set({ name: "named" }).where("id", "=", 1).execute();
      expect(await byId(1)).toBe("named");
      // public's table is another table: its write leaves the read cached, and right.
      const hits = cache.getStats().hits;
      await db.updateTable("public.users").set({ name: "public" }).where("id", "=", 1).execute();
      expect(await byId(1)).toBe("named");
      expect(cache.getStats().hits).toBe(hits + 1);
      // And around the cache, through capture.
      await admin.unsafe(`update ${schema}.users set name = 'around' where id = 1`);
      await cache.catchUp();
      expect(await byId(1)).toBe("around");
    } finally {
      await admin.unsafe(`alter database ${database} reset search_path`);
    }
  });

  it("Drizzle, a table declared without a schema that the pool's search_path finds in another schema than public's same-named one: its writes are never settled by public's capture", async () => {
    await admin.unsafe(`drop table if exists public.users; ${USERS("public")}`);
    await install("public");
    const schema = await schemaWith(USERS);
    const pool = new pg.Pool({
      connectionString: url,
      max: 4,
      options: `-c search_path=${schema}`,
    });
    closers.push(() => pool.end());
    const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
    closers.push(() => cache.close());
    const db = withTransactions(drizzle(pool, { cache }));
    const users = pgTable("users", {
      id: integer("id").primaryKey(),
      name: text("name").notNull(),
    });
    const byId = async (id: number) =>
      (await db.select().from(users).where(eq(users.id, id)))[0]?.name;
    expect(await byId(1)).toBe(`${schema} one`);
    await following(cache);
    expect(await byId(1)).toBe(`${schema} one`);
    await db.update(users).set({ name: "through drizzle" }).where(eq(users.id, 1));
    expect(await byId(1)).toBe("through drizzle");
  });

  it("`$user` in the search path: a bare name reaches the schema named after the role", async () => {
    const [{ user } = { user: "" }] = await admin.unsafe<{ user: string }[]>(
      "select current_user as user",
    );
    const mine = postgres(url, { max: 1, onnotice: () => {} });
    closers.push(() => mine.end());
    await admin.unsafe(`drop table if exists public.users; ${USERS("public")}`);
    await admin.unsafe(`create schema if not exists "${user}"; ${USERS(`"${user}"`)}`);
    try {
      const sql = sqlCache({ client: mine, tiers: [memoryStore()] });
      closers.push(() => sql.close());
      const byId = async (id: number) =>
        (await sql.query<{ name: string }>("select name from users where id = $1", [id]))[0]?.name;
      expect(await byId(2)).toBe(`"${user}" two`);
      expect(await byId(2)).toBe(`"${user}" two`);
      await sql.execute(`update "${user}".users set name = 'renamed' where id = 2`);
      expect(await byId(2)).toBe("renamed");
    } finally {
      await admin.unsafe(`drop schema "${user}" cascade`);
    }
  });

  it("SET search_path through the cache: a read named bare afterwards is never answered with another table's cached rows", async () => {
    await admin.unsafe(`drop table if exists public.users; ${USERS("public")}`);
    const schema = await schemaWith(USERS);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    closers.push(() => client.end());
    const warnings: string[] = [];
    const sql = sqlCache({
      client,
      tiers: [memoryStore()],
      logger: { warn: (m: string) => warnings.push(m) },
    });
    closers.push(() => sql.close());
    const byId = async (id: number) =>
      (await sql.query<{ name: string }>("select name from users where id = $1", [id]))[0]?.name;
    expect(await byId(1)).toBe("public one");
    expect(await byId(1)).toBe("public one");
    await sql.execute(`set search_path to ${schema}`);
    expect(await byId(1)).toBe(`${schema} one`);
    await sql.execute(`update ${schema}.users set name = 'changed' where id = 1`);
    expect(await byId(1)).toBe("changed");
    expect(warnings.join("\n")).toMatch(/search_path/);
  });
});
