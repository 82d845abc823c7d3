import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import { Kysely, MysqlDialect, PostgresDialect, SqliteDialect, sql } from "kysely";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { sqlDriver } from "../../src/database/drivers.ts";
import { type CachedDialect, kyselyCache } from "../../src/kysely/index.ts";
import { postgresSource } from "../../src/sources/postgres.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { until } from "../helpers/cluster.ts";
import { requirePostgres } from "../helpers/services.ts";

const server = await requirePostgres();

// biome-ignore lint/suspicious/noExplicitAny: the tables are the harness's, typed loosely.
type Db = Kysely<any>;

/** A database with `users` (id, name) behind a Kysely dialect, and SQL around Kysely. */
interface Harness {
  /** `users` as Kysely names it (schema-qualified on PostgreSQL). */
  users: string;
  /** A dialect of a new client, cached when `cached` options are given, and that client. */
  dialect(cached?: { capture?: boolean }): {
    dialect: CachedDialect | SqliteDialect | PostgresDialect;
  };
  /** A fresh read of `select id, name from users order by id`, on a connection of its own. */
  fresh(): Promise<{ id: number; name: string }[]>;
  /** Runs SQL around Kysely, on a connection of its own. */
  around(statement: string, params?: unknown[]): Promise<void>;
  reset(): Promise<void>;
  installCapture(): Promise<void>;
  close(): Promise<void>;
}

function sqliteHarness(): Harness {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-kysely-"));
  const path = join(dir, "db.sqlite");
  const admin = new Database(path);
  admin.pragma("journal_mode = WAL");
  const opened: Database.Database[] = [admin];
  return {
    users: "users",
    dialect(cached) {
      const database = new Database(path);
      opened.push(database);
      const dialect = new SqliteDialect({ database });
      if (!cached) return { dialect };
      return {
        dialect: kyselyCache(dialect, {
          client: database,
          tiers: [memoryStore()],
          capture: cached.capture ?? true,
        }),
      };
    },
    fresh: async () =>
      admin.prepare("select id, name from users order by id").all() as {
        id: number;
        name: string;
      }[],
    around: async (statement, params = []) => {
      admin.prepare(statement.replaceAll(/\$\d+/g, "?")).run(...params);
    },
    async reset() {
      admin.exec(`create table if not exists users (id integer primary key, name text not null);
        delete from users; insert into users values (1, 'Ann'), (2, 'Bo'), (3, 'Cy');`);
    },
    async installCapture() {
      const source = sqliteSource({ path });
      await source.installCapture();
      await source.close();
    },
    async close() {
      for (const d of opened) d.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function postgresHarness(url: string): Harness {
  const schema = `ec_kysely_${process.pid}_${Date.now().toString(36)}`;
  const admin = new pg.Pool({ connectionString: url, max: 2 });
  return {
    users: `${schema}.users`,
    dialect(cached) {
      const pool = new pg.Pool({ connectionString: url, max: 4 });
      const dialect = new PostgresDialect({ pool });
      if (!cached) return { dialect };
      return {
        dialect: kyselyCache(dialect, {
          client: pool,
          tiers: [memoryStore()],
          capture: cached.capture ?? true,
        }),
      };
    },
    fresh: async () => (await admin.query(`select id, name from ${schema}.users order by id`)).rows,
    around: async (statement, params = []) => {
      await admin.query(statement.replaceAll("users", `${schema}.users`), params);
    },
    async reset() {
      await admin.query(`create schema if not exists ${schema};
        create table if not exists ${schema}.users (id integer primary key, name text not null);
        delete from ${schema}.users; insert into ${schema}.users values (1, 'Ann'), (2, 'Bo'), (3, 'Cy');`);
    },
    async installCapture() {
      const source = await postgresSource({ url, schema, max: 1 });
      await source.installCapture();
      await source.close();
    },
    async close() {
      await admin.query(`drop schema if exists ${schema} cascade`);
      await admin.query(`drop schema if exists edgecache_${schema} cascade`);
      // The others were Kysely's, ended by db.destroy().
      await admin.end();
    },
  };
}

function kyselySuite(make: () => Harness, withCapture: boolean): void {
  let h: Harness;
  const dbs: Db[] = [];
  const open = async () => {
    const { dialect } = h.dialect({ capture: withCapture });
    const db: Db = new Kysely({ dialect });
    dbs.push(db);
    const cache = (dialect as CachedDialect).cache;
    await byId(db, 1); // capture follows the tables the application reads
    if (withCapture) {
      await until(() => cache.getStats().writes === "capture");
      await cache.catchUp();
    }
    return { db, cache };
  };
  const byId = (db: Db, id: number) =>
    db.selectFrom(h.users).select(["id", "name"]).where("id", "=", id).execute();
  const all = (db: Db) => db.selectFrom(h.users).select(["id", "name"]).orderBy("id").execute();

  beforeAll(async () => {
    h = make();
    await h.reset();
    if (withCapture) await h.installCapture();
  });
  afterEach(async () => {
    for (const db of dbs.splice(0)) await db.destroy();
    await h.reset();
  });
  afterAll(async () => {
    await h?.close();
  });

  it("a read twice: the second answered from the cache, with the same rows", async () => {
    const { db, cache } = await open();
    const hits = cache.getStats().hits;
    expect(await all(db)).toEqual(await h.fresh());
    expect(await all(db)).toEqual(await h.fresh());
    expect(cache.getStats().hits).toBe(hits + 1);
  });

  it("a write through Kysely is seen by the next read, and reports its rows", async () => {
    const { db } = await open();
    await all(db);
    const result = await db
      .updateTable(h.users)
      .set({ name: "Bea" })
      .where("id", "=", 2)
      .executeTakeFirst();
    expect(result.numUpdatedRows).toBe(1n);
    expect(await all(db)).toEqual(await h.fresh());
    await db.insertInto(h.users).values({ id: 4, name: "Dee" }).execute();
    await db.deleteFrom(h.users).where("id", "=", 1).execute();
    expect(await all(db)).toEqual(await h.fresh());
  });

  it("a transaction: its reads are not served from the cache, its writes seen once it commits; a rollback changes nothing", async () => {
    const { db, cache } = await open();
    expect((await byId(db, 1))[0]?.name).toBe("Ann");
    await db.transaction().execute(async (tx) => {
      await tx.updateTable(h.users).set({ name: "Flo" }).where("id", "=", 1).execute();
      expect((await byId(tx, 1))[0]?.name).toBe("Flo"); // its own write, not the cached row
    });
    expect((await byId(db, 1))[0]?.name).toBe("Flo");
    const hits = cache.getStats().hits;
    await expect(
      db.transaction().execute(async (tx) => {
        await tx.updateTable(h.users).set({ name: "Gus" }).where("id", "=", 1).execute();
        throw new Error("roll back");
      }),
    ).rejects.toThrow("roll back");
    expect((await byId(db, 1))[0]?.name).toBe("Flo");
    expect(cache.getStats().hits).toBe(hits + 1);
  });

  if (withCapture) {
    it("capture: an update of row 2 leaves the cached read of row 1 a hit; a write around Kysely is seen", async () => {
      const { db, cache } = await open();
      await byId(db, 1);
      const hits = cache.getStats().hits;
      await db.updateTable(h.users).set({ name: "Hal" }).where("id", "=", 2).execute();
      expect((await byId(db, 1))[0]?.name).toBe("Ann");
      expect(cache.getStats().hits).toBe(hits + 1);
      const applied = cache.getStats().capture!.applied;
      await h.around("update users set name = $1 where id = $2", ["Ivy", 1]);
      expect(await cache.catchUp()).toBe(true);
      expect((await byId(db, 1))[0]?.name).toBe("Ivy");
      // Changes made around the cache count as applied, not only its own mutations'.
      expect(cache.getStats().capture!.applied).toBeGreaterThan(applied);
    });
  } else {
    it("without capture: a write empties the cached reads of its table", async () => {
      const { db, cache } = await open();
      await byId(db, 1);
      const misses = cache.getStats().misses;
      await db.updateTable(h.users).set({ name: "Hal" }).where("id", "=", 2).execute();
      expect((await byId(db, 1))[0]?.name).toBe("Ann");
      expect(cache.getStats().misses).toBe(misses + 1);
      expect(cache.getStats().writes).toBe("tables");
    });
  }

  it("every read after an acknowledged write equals a fresh query (random reads and writes)", async () => {
    const { db, cache } = await open();
    const op = fc.oneof(
      fc.record({ kind: fc.constant("read" as const), id: fc.integer({ min: 1, max: 6 }) }),
      fc.record({ kind: fc.constant("list" as const), limit: fc.integer({ min: 1, max: 4 }) }),
      fc.record({
        kind: fc.constantFrom("update", "upsert", "delete"),
        id: fc.integer({ min: 1, max: 6 }),
        name: fc.constantFrom("Ann", "Bo", "Cy", "Dee", "Eve"),
        around: fc.boolean(),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 25 }), async (ops) => {
        await h.reset();
        await cache.invalidate();
        if (withCapture) await cache.catchUp();
        for (const o of ops) {
          if (o.kind === "read") {
            const fresh = (await h.fresh()).filter((r) => r.id === o.id);
            expect(await byId(db, o.id)).toEqual(fresh);
          } else if (o.kind === "list") {
            const rows = await db
              .selectFrom(h.users)
              .select(["id", "name"])
              .orderBy("name")
              .orderBy("id")
              .limit(o.limit)
              .execute();
            const fresh = [...(await h.fresh())]
              .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id - b.id))
              .slice(0, o.limit);
            expect(rows).toEqual(fresh);
          } else if (o.around && withCapture) {
            await writeAround(o);
            expect(await cache.catchUp()).toBe(true);
          } else {
            await writeThrough(db, o);
          }
        }
      }),
      { numRuns: 12 },
    );
    expect(cache.getStats().hits).toBeGreaterThan(0);
  });

  type Write = { kind: "update" | "upsert" | "delete"; id: number; name: string };
  const writeThrough = async (db: Db, w: Write) => {
    if (w.kind === "update") {
      await db.updateTable(h.users).set({ name: w.name }).where("id", "=", w.id).execute();
    } else if (w.kind === "delete") {
      await db.deleteFrom(h.users).where("id", "=", w.id).execute();
    } else {
      await db
        .insertInto(h.users)
        .values({ id: w.id, name: w.name })
        .onConflict((c) => c.column("id").doUpdateSet({ name: w.name }))
        .execute();
    }
  };
  const writeAround = async (w: Write) => {
    if (w.kind === "update")
      await h.around("update users set name = $1 where id = $2", [w.name, w.id]);
    else if (w.kind === "delete") await h.around("delete from users where id = $1", [w.id]);
    else {
      await h.around(
        "insert into users (id, name) values ($1, $2) on conflict (id) do update set name = excluded.name",
        [w.id, w.name],
      );
    }
  };
}

describe("kysely on better-sqlite3, with change capture", () => {
  kyselySuite(() => sqliteHarness(), true);
});

describe("kysely on better-sqlite3, without change capture", () => {
  kyselySuite(() => sqliteHarness(), false);
});

server.describe("kysely on node-postgres, with change capture", () => {
  kyselySuite(() => postgresHarness(server.url), true);
});

server.describe("kysely on node-postgres, without change capture", () => {
  kyselySuite(() => postgresHarness(server.url), false);
});

server.describe("kysely on a node-postgres pool smaller than its statements in flight", () => {
  it("never waits for a connection its own statements hold: 12 reads and 4 writes at once on a pool of 2", async () => {
    const h = postgresHarness(server.url);
    await h.reset();
    await h.installCapture();
    const pool = new pg.Pool({ connectionString: server.url, max: 2 });
    const dialect = kyselyCache(new PostgresDialect({ pool }), {
      client: pool,
      tiers: [memoryStore()],
    });
    const db: Db = new Kysely({ dialect });
    try {
      // A fresh cache: capture's catalog, the foreign keys and the column kinds all still
      // to be read while every pooled connection is held by a statement waiting on them.
      const work = Promise.all([
        ...[1, 2, 3, 1, 2, 3].map((id) =>
          db.selectFrom(h.users).select(["id", "name"]).where("id", "=", id).execute(),
        ),
        ...["Ann", "Bo", "Cy"].flatMap((name) => [
          db.selectFrom(h.users).select(["id", "name"]).where("name", "=", name).execute(),
          db.selectFrom(h.users).select("id").orderBy("name").limit(2).execute(),
        ]),
        ...[1, 2, 3, 2].map((id) =>
          db
            .updateTable(h.users)
            .set({ name: `N${id}` })
            .where("id", "=", id)
            .execute(),
        ),
      ]);
      // A liveness bound, not a speed one: the deadlock this guards against never ends.
      const stuck = new Promise<"stuck">((r) => setTimeout(() => r("stuck"), 30_000).unref());
      expect(await Promise.race([work.then(() => "done"), stuck])).toBe("done");
      await dialect.cache.catchUp();
      expect(await db.selectFrom(h.users).select(["id", "name"]).orderBy("id").execute()).toEqual(
        await h.fresh(),
      );
    } finally {
      await db.destroy();
      await h.close();
    }
  }, 60_000);
});

describe("kysely on SQLite: a window ordered by a DATETIME column (numbers and text as written)", () => {
  it("every page equals a fresh query after random writes through Kysely and around it, and is registered by its window", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgecache-kysely-at-"));
    const path = join(dir, "db.sqlite");
    const admin = new Database(path);
    admin.pragma("journal_mode = WAL");
    admin.exec("create table events (id integer primary key, at DATETIME, n integer)");
    const source = sqliteSource({ path });
    await source.installCapture();
    await source.close();
    const database = new Database(path);
    const dialect = kyselyCache(new SqliteDialect({ database }), {
      client: database,
      tiers: [memoryStore()],
    });
    const db: Db = new Kysely({ dialect });
    // What SQLite keeps in a DATETIME column: text, integers, reals, NULL.
    const at = fc.oneof(
      fc.constant(null),
      fc.integer({ min: -3, max: 3 }),
      fc.constantFrom(0.5, 2.25, -1.5),
      fc.constantFrom("2024-01-01", "2024-01-01 10:00:00", "2025-06-30T12:00:00Z", "a", ""),
    );
    const op = fc.oneof(
      fc.record({
        kind: fc.constant("page" as const),
        desc: fc.boolean(),
        // Few pages, so that one cached is read again after writes.
        limit: fc.integer({ min: 2, max: 3 }),
        offset: fc.integer({ min: 0, max: 1 }),
      }),
      fc.record({
        kind: fc.constantFrom("put", "put", "put", "delete"),
        id: fc.integer({ min: 1, max: 6 }),
        at,
        around: fc.boolean(),
      }),
    );
    const page = (desc: boolean, limit: number, offset: number) =>
      db
        .selectFrom("events")
        .select(["id", "at"])
        .orderBy("at", desc ? "desc" : "asc")
        .orderBy("id")
        .limit(limit)
        .offset(offset)
        .execute();
    const fresh = (desc: boolean, limit: number, offset: number) =>
      admin
        .prepare(
          `select id, at from events order by at ${desc ? "desc" : "asc"}, id limit ? offset ?`,
        )
        .all(limit, offset);
    try {
      await page(false, 1, 0); // capture follows the tables the application reads
      await until(() => dialect.cache.getStats().writes === "capture");
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 20, maxLength: 60 }), async (ops) => {
          admin.exec("delete from events");
          await dialect.cache.catchUp();
          await dialect.cache.invalidate();
          for (const o of ops) {
            if (o.kind === "page") {
              const expected = fresh(o.desc, o.limit, o.offset);
              expect(await page(o.desc, o.limit, o.offset)).toEqual(expected);
              expect(await page(o.desc, o.limit, o.offset)).toEqual(expected);
            } else if (o.around) {
              if (o.kind === "delete") admin.prepare("delete from events where id = ?").run(o.id);
              else {
                admin
                  .prepare(
                    "insert into events (id, at, n) values (?, ?, 0) on conflict (id) do update set at = excluded.at",
                  )
                  .run(o.id, o.at);
              }
              expect(await dialect.cache.catchUp()).toBe(true);
            } else if (o.kind === "delete") {
              await db.deleteFrom("events").where("id", "=", o.id).execute();
            } else {
              await db
                .insertInto("events")
                .values({ id: o.id, at: o.at, n: 0 })
                .onConflict((c) => c.column("id").doUpdateSet({ at: o.at }))
                .execute();
            }
          }
        }),
        { numRuns: 40 },
      );
      const shapes = dialect.cache.getStats().shapes;
      const paged = shapes.find((x) => x.sql.includes('order by "at"'));
      expect(paged).toMatchObject({ granularity: "predicate", reasons: [] });
      expect(dialect.cache.getStats().hits).toBeGreaterThan(0);
    } finally {
      await db.destroy();
      admin.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("kyselyCache's options", () => {
  it("refuses what it cannot cache, naming it", () => {
    const options = { tiers: [memoryStore()] };
    expect(() => kyselyCache({} as never, options)).toThrow(/dialect/);
    const mysql = new MysqlDialect({ pool: {} as never });
    expect(() => kyselyCache(mysql, options)).toThrow(/SQLite or PostgreSQL/);
    const sqlite = new SqliteDialect({ database: {} as never });
    expect(() => kyselyCache(sqlite, { ...options, client: 42 })).toThrow(/client/);
    expect(() => kyselyCache(sqlite, {} as never)).toThrow(/tiers/);
  });

  it("a dialect without a client is cached by table", async () => {
    const database = new Database(":memory:");
    const db: Db = new Kysely({
      dialect: kyselyCache(new SqliteDialect({ database }), { tiers: [memoryStore()] }),
    });
    try {
      await sql`create table t (id integer primary key, n integer)`.execute(db);
      await db.insertInto("t").values({ id: 1, n: 1 }).execute();
      const read = () => db.selectFrom("t").selectAll().execute();
      expect(await read()).toEqual([{ id: 1, n: 1 }]);
      database.prepare("update t set n = 2").run(); // around Kysely: not seen without capture
      expect(await read()).toEqual([{ id: 1, n: 1 }]);
      await db.updateTable("t").set({ n: 3 }).execute();
      expect(await read()).toEqual([{ id: 1, n: 3 }]);
      expect(sqlDriver(database)?.kind).toBe("better-sqlite3");
    } finally {
      await db.destroy();
    }
  });
});

describe("a transaction opened with the application's own SQL", () => {
  it("reads inside are neither served nor stored; its writes are seen at commit, not at rollback", async () => {
    const database = new Database(":memory:");
    const dialect = kyselyCache(new SqliteDialect({ database }), { tiers: [memoryStore()] });
    const db: Db = new Kysely({ dialect });
    try {
      await sql`create table t (id integer primary key, n integer)`.execute(db);
      await db.insertInto("t").values({ id: 1, n: 1 }).execute();
      const read = (on: Db) => on.selectFrom("t").select("n").where("id", "=", 1).execute();
      expect(await read(db)).toEqual([{ n: 1 }]);
      await db.connection().execute(async (c) => {
        await sql`begin`.execute(c);
        await c.updateTable("t").set({ n: 2 }).where("id", "=", 1).execute();
        expect(await read(c)).toEqual([{ n: 2 }]); // its own write, not the cached row
        await sql`rollback`.execute(c);
      });
      const hits = dialect.cache.getStats().hits;
      expect(await read(db)).toEqual([{ n: 1 }]);
      expect(dialect.cache.getStats().hits).toBe(hits + 1); // nothing stored inside
      await db.connection().execute(async (c) => {
        await sql`begin immediate`.execute(c);
        await c.updateTable("t").set({ n: 3 }).where("id", "=", 1).execute();
        await sql`savepoint s`.execute(c);
        await sql`rollback to s`.execute(c); // a savepoint's: the transaction goes on
        expect(await read(c)).toEqual([{ n: 3 }]);
        await sql`commit`.execute(c);
      });
      expect(await read(db)).toEqual([{ n: 3 }]);
    } finally {
      await db.destroy();
    }
  });
});
