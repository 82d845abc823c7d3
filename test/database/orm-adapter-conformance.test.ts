import { createClient } from "@libsql/client";
import Database from "better-sqlite3";
import { asc, eq } from "drizzle-orm";
import { drizzle } from "drizzle-orm/libsql";
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { Kysely, SqliteDialect } from "kysely";
import postgres from "postgres";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { kyselyCache } from "../../src/kysely/index.ts";
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import {
  type Item,
  type OrmAdapterFixture,
  ormAdapterConformance,
} from "../../src/testing/index.ts";
import { requirePostgres } from "../helpers/services.ts";
import { postgresItems, sqliteItems } from "./items-fixture.ts";

// Every ORM adapter held to the ORM-adapter suite: the raw SQL entry (SQLite, PostgreSQL),
// Kysely and Drizzle, each on the one statement cache with change capture followed.

/** Plain items, whatever form the ORM gives its rows in. */
const plain = (rows: readonly Record<string, unknown>[]): Item[] =>
  rows.map((r) => ({ id: Number(r.id), name: String(r.name) }));

/** The raw SQL entry over `client`, placeholders as `p` spells them. */
function rawSql(
  client: unknown,
  t: string,
  p: (n: number) => string,
): Omit<OrmAdapterFixture, "around" | "close"> & { close(): Promise<void> } {
  const sql = sqlCache({ client, tiers: [memoryStore()] });
  const read = async (text: string, params: unknown[]) =>
    plain((await sql.query(text, params)) as Record<string, unknown>[]);
  return {
    cache: sql,
    list: () => read(`select id, name from ${t} order by id`, []),
    get: async (id) => (await read(`select id, name from ${t} where id = ${p(1)}`, [id]))[0],
    insert: async (id, name) =>
      void (await sql.execute(`insert into ${t} values (${p(1)}, ${p(2)})`, [id, name])),
    rename: async (id, name) =>
      void (await sql.execute(`update ${t} set name = ${p(1)} where id = ${p(2)}`, [name, id])),
    remove: async (id) => void (await sql.execute(`delete from ${t} where id = ${p(1)}`, [id])),
    rolledBack: async (id, name) => {
      await sql.execute("begin");
      await sql.execute(`insert into ${t} values (${p(1)}, ${p(2)})`, [id, name]);
      await sql.execute("rollback");
      throw new Error("rolled back");
    },
    close: () => sql.close(),
  };
}

ormAdapterConformance("raw SQL (better-sqlite3)", async () => {
  const db = await sqliteItems(true);
  const client = new Database(db.path);
  const entry = rawSql(client, "items", () => "?");
  return {
    ...entry,
    around: db.around,
    close: async () => {
      await entry.close();
      client.close();
      db.close();
    },
  };
});

ormAdapterConformance("Kysely (SQLite)", async () => {
  const db = await sqliteItems(true);
  const database = new Database(db.path);
  const dialect = kyselyCache(new SqliteDialect({ database }), {
    client: database,
    tiers: [memoryStore()],
  });
  // biome-ignore lint/suspicious/noExplicitAny: the suite's one table, typed loosely.
  const k = new Kysely<any>({ dialect });
  return {
    cache: dialect.cache,
    list: async () =>
      plain(await k.selectFrom("items").select(["id", "name"]).orderBy("id").execute()),
    get: async (id) =>
      plain(await k.selectFrom("items").select(["id", "name"]).where("id", "=", id).execute())[0],
    insert: async (id, name) => void (await k.insertInto("items").values({ id, name }).execute()),
    rename: async (id, name) =>
      void (await k.updateTable("items").set({ name }).where("id", "=", id).execute()),
    remove: async (id) => void (await k.deleteFrom("items").where("id", "=", id).execute()),
    rolledBack: (id, name) =>
      k.transaction().execute(async (tx) => {
        await tx.insertInto("items").values({ id, name }).execute();
        throw new Error("rolled back");
      }),
    around: db.around,
    close: async () => {
      await k.destroy();
      db.close();
    },
  };
});

const items = sqliteTable("items", {
  id: integer("id").primaryKey(),
  name: text("name").notNull().unique(),
});

ormAdapterConformance("Drizzle (libSQL)", async () => {
  const db = await sqliteItems(true);
  const client = createClient({ url: `file:${db.path}` });
  const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
  const orm = withTransactions(drizzle(client, { cache }));
  const row = { id: items.id, name: items.name };
  return {
    cache,
    list: async () => plain(await orm.select(row).from(items).orderBy(asc(items.id))),
    get: async (id) => plain(await orm.select(row).from(items).where(eq(items.id, id)))[0],
    insert: async (id, name) => void (await orm.insert(items).values({ id, name })),
    rename: async (id, name) =>
      void (await orm.update(items).set({ name }).where(eq(items.id, id))),
    remove: async (id) => void (await orm.delete(items).where(eq(items.id, id))),
    rolledBack: (id, name) =>
      orm.transaction(async (tx) => {
        await tx.insert(items).values({ id, name });
        throw new Error("rolled back");
      }),
    around: db.around,
    close: async () => {
      await cache.close();
      client.close();
      db.close();
    },
  };
});

const pg = await requirePostgres();
if (pg) {
  ormAdapterConformance("raw SQL (postgres.js)", async () => {
    const db = await postgresItems(pg.url, true);
    const client = postgres(pg.url, { max: 2, onnotice: () => {} });
    const entry = rawSql(client, db.table, (n) => `$${n}`);
    return {
      ...entry,
      around: db.around,
      close: async () => {
        await entry.close();
        await client.end();
        await db.close();
      },
    };
  });
}
