import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import {
  and,
  asc,
  desc,
  eq,
  gt,
  gte,
  inArray,
  isNotNull,
  isNull,
  like,
  lt,
  lte,
  or,
  type SQL,
  sql,
} from "drizzle-orm";
import { drizzle as drizzleLibsql } from "drizzle-orm/libsql";
import { drizzle as drizzleNodePg } from "drizzle-orm/node-postgres";
import { integer as pgInteger, pgSchema, text as pgText } from "drizzle-orm/pg-core";
import { drizzle as drizzlePostgresJs } from "drizzle-orm/postgres-js";
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import fc from "fast-check";
import pg from "pg";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCache } from "../../src/core/cache/index.ts";
import type { WriteEvent } from "../../src/core/deps/planner.ts";
import { drizzleCache, withTransactions } from "../../src/drizzle/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { requirePostgres } from "../helpers/services.ts";
import type { AnyDb, AnyTable } from "./drivers.ts";

/**
 * Reads register what they depend on (rows, predicates, windows), from their SQL: checked
 * at random against real databases. Random selects of the supported shapes through Drizzle
 * with the cache, random row writes made in the database and applied to the cache as write
 * events (what change capture delivers), and every cached read compared with a fresh query.
 */

type Row = { id: number; a: number | null; b: string | null };

interface Db {
  dialect: "sqlite" | "postgres";
  items: AnyTable;
  /** The table's name as Drizzle's invalidation and write events name it. */
  name: string;
  db(cache?: ReturnType<typeof drizzleCache>): AnyDb;
  /** Runs SQL outside Drizzle (`?` placeholders), returning rows. */
  query(sql: string, params?: unknown[]): Promise<Row[]>;
  close(): Promise<void>;
}

function libsqlDb(): Db {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-shapes-"));
  const url = `file:${join(dir, "db.sqlite")}`;
  const clients: ReturnType<typeof createClient>[] = [];
  const client = () => {
    const c = createClient({ url });
    clients.push(c);
    return c;
  };
  const admin = client();
  const shared = client();
  const items = sqliteTable("items", {
    id: integer("id").primaryKey(),
    a: integer("a"),
    b: text("b"),
  });
  return {
    dialect: "sqlite",
    items,
    name: "items",
    // One client for every Drizzle database: each run makes new ones over it.
    db: (cache) => drizzleLibsql(shared, cache ? { cache } : {}),
    async query(q, params = []) {
      const r = await admin.execute({ sql: q, args: params as never });
      return r.rows.map((row) => ({ ...row }) as unknown as Row);
    },
    async close() {
      for (const c of clients) c.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function postgresDb(url: string, driver: "postgres-js" | "node-postgres"): Db {
  const schemaName = `ec_shapes_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const items = pgSchema(schemaName).table("items", {
    id: pgInteger("id").primaryKey(),
    a: pgInteger("a"),
    b: pgText("b"),
  });
  const clients: postgres.Sql[] = [];
  const client = () => {
    const c = postgres(url, { max: 2, onnotice: () => {} });
    clients.push(c);
    return c;
  };
  const admin = client();
  // One client (a few connections) for every Drizzle database: each run makes new ones over it.
  const shared = client();
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  return {
    dialect: "postgres",
    items,
    name: `${schemaName}.items`,
    db: (cache) =>
      driver === "postgres-js"
        ? drizzlePostgresJs(shared, cache ? { cache } : {})
        : drizzleNodePg(pool, cache ? { cache } : {}),
    async query(q, params = []) {
      let n = 0;
      const text = q.replace(/\?/g, () => `$${++n}`).replace(/\bitems\b/g, `${schemaName}.items`);
      return (await admin.unsafe(text, params as never[])) as unknown as Row[];
    },
    async close() {
      await admin.unsafe(`drop schema if exists ${schemaName} cascade`);
      for (const c of clients) await c.end();
      await pool.end();
    },
  };
}

const A = fc.constantFrom(null, 0, 1, 2, 3, 4, 5);
const B = fc.constantFrom(
  null,
  "a",
  "ab",
  "Ab",
  "AB",
  "abc",
  "aBc",
  "b",
  "B",
  "ba",
  "é",
  "Z",
  "a_b",
);
const ID = fc.integer({ min: 1, max: 8 });

type Cond =
  | { k: "cmp"; col: "a"; op: "eq" | "gt" | "gte" | "lt" | "lte"; v: number }
  | { k: "cmp"; col: "b"; op: "eq" | "gt" | "lt"; v: string }
  | { k: "like"; v: string }
  | { k: "null"; col: "a" | "b"; not: boolean }
  | { k: "id"; ids: number[] }
  | { k: "fn"; v: string }
  | { k: "and" | "or"; l: Cond; r: Cond };

const leaf: fc.Arbitrary<Cond> = fc.oneof(
  fc.record({
    k: fc.constant("cmp" as const),
    col: fc.constant("a" as const),
    op: fc.constantFrom("eq", "gt", "gte", "lt", "lte" as const),
    v: fc.integer({ min: -1, max: 6 }),
  }),
  fc.record({
    k: fc.constant("cmp" as const),
    col: fc.constant("b" as const),
    op: fc.constantFrom("eq", "gt", "lt" as const),
    v: fc.constantFrom("a", "ab", "Ab", "b", "é"),
  }),
  fc.record({
    k: fc.constant("like" as const),
    v: fc.constantFrom("a%", "ab%", "A%", "b%", "%b", "a_%", "ab", "abc%"),
  }),
  fc.record({
    k: fc.constant("null" as const),
    col: fc.constantFrom("a", "b" as const),
    not: fc.boolean(),
  }),
  fc.record({ k: fc.constant("id" as const), ids: fc.array(ID, { minLength: 1, maxLength: 3 }) }),
  fc.record({ k: fc.constant("fn" as const), v: fc.constantFrom("ab", "b") }),
);
const cond: fc.Arbitrary<Cond> = fc.oneof(
  { weight: 3, arbitrary: leaf },
  {
    weight: 2,
    arbitrary: fc.record({ k: fc.constantFrom("and", "or" as const), l: leaf, r: leaf }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constantFrom("and", "or" as const),
      l: fc.record({ k: fc.constantFrom("and", "or" as const), l: leaf, r: leaf }),
      r: leaf,
    }),
  },
);

interface Read {
  where?: Cond;
  order: { col: "a" | "b" | "bC"; desc: boolean }[];
  idDesc: boolean;
  limit?: number;
  offset?: number;
  columns: "all" | "noKey" | "count";
}

const read: fc.Arbitrary<Read> = fc.record(
  {
    where: cond,
    order: fc.array(
      fc.record({ col: fc.constantFrom("a", "b", "bC" as const), desc: fc.boolean() }),
      {
        maxLength: 2,
      },
    ),
    idDesc: fc.boolean(),
    limit: fc.integer({ min: 0, max: 4 }),
    offset: fc.integer({ min: 0, max: 3 }),
    columns: fc.constantFrom("all", "all", "noKey", "count" as const),
  },
  { requiredKeys: ["order", "idDesc", "columns"] },
);

type Write = { op: "put" | "delete"; id: number; a: number | null; b: string | null };
const write: fc.Arbitrary<Write> = fc.record({
  op: fc.constantFrom("put", "put", "delete" as const),
  id: ID,
  a: A,
  b: B,
});
// Reads come from a small pool per run, so that cached entries are read again after writes.
const step = fc.oneof(
  { weight: 3, arbitrary: fc.nat().map((n) => ({ read: n })) },
  { weight: 2, arbitrary: write.map((w) => ({ write: w })) },
);

function where(h: Db, c: Cond): SQL {
  const t = h.items;
  switch (c.k) {
    case "cmp":
      return { eq, gt, gte, lt, lte }[c.op](t[c.col], c.v);
    case "like":
      return like(t.b, c.v);
    case "null":
      return c.not ? isNotNull(t[c.col]) : isNull(t[c.col]);
    case "id":
      return c.ids.length === 1 ? eq(t.id, c.ids[0]) : inArray(t.id, c.ids);
    case "fn":
      return sql`lower(${t.b}) = ${c.v}`;
    case "and":
      return and(where(h, c.l), where(h, c.r))!;
    case "or":
      return or(where(h, c.l), where(h, c.r))!;
  }
}

function select(h: Db, db: AnyDb, r: Read) {
  const t = h.items;
  if (r.columns === "count") {
    // An aggregate: registered at table level.
    const q = db
      .select({ n: sql<number>`count(*)`.mapWith(Number) })
      .from(t)
      .$dynamic();
    return r.where ? q.where(where(h, r.where)) : q;
  }
  let q = (r.columns === "all" ? db.select() : db.select({ b: t.b, a: t.a })).from(t).$dynamic();
  if (r.where) q = q.where(where(h, r.where));
  const order = r.order.map((o) => {
    // A text order with COLLATE "C" (PostgreSQL) is one the planner follows; SQLite has no "C".
    const column =
      o.col === "bC" ? (h.dialect === "postgres" ? sql`${t.b} collate "C"` : t.b) : t[o.col];
    return o.desc ? desc(column) : asc(column);
  });
  // Always ending with the key: the fresh query's order is then the cached one's.
  q = q.orderBy(...order, r.idDesc ? desc(t.id) : asc(t.id));
  if (r.limit !== undefined) {
    q = q.limit(r.limit);
    if (r.offset !== undefined) q = q.offset(r.offset);
  }
  return q;
}

async function applyWrite(
  h: Db,
  caches: ReturnType<typeof drizzleCache> | ReturnType<typeof drizzleCache>[],
  w: Write,
): Promise<void> {
  const [old] = await h.query("select id, a, b from items where id = ?", [w.id]);
  let event: WriteEvent | undefined;
  if (w.op === "delete") {
    if (!old) return;
    await h.query("delete from items where id = ?", [w.id]);
    event = { table: h.name, op: "delete", old: { ...old } };
  } else {
    const row = { id: w.id, a: w.a, b: w.b };
    if (old) {
      await h.query("update items set a = ?, b = ? where id = ?", [w.a, w.b, w.id]);
      event = { table: h.name, op: "update", old: { ...old }, new: row };
    } else {
      await h.query("insert into items (id, a, b) values (?, ?, ?)", [w.id, w.a, w.b]);
      event = { table: h.name, op: "insert", new: row };
    }
  }
  for (const cache of [caches].flat()) await cache.engine.applyWrite([event]);
}

function propertySuite(make: () => Db | Promise<Db>): void {
  let h: Db;
  let fresh: AnyDb;
  beforeAll(async () => {
    h = await make();
    // A PostgreSQL column whose collation is not binary (the server's default here is
    // C.UTF-8): an ORDER BY of it without COLLATE "C" must not register a window.
    const ddl =
      h.dialect === "postgres"
        ? 'create table items (id integer primary key, a integer, b text collate "en-US-x-icu")'
        : "create table items (id integer primary key, a integer, b text)";
    if (h.dialect === "postgres") {
      await h.query(`create schema if not exists ${h.name.split(".")[0]}`);
    }
    await h.query(ddl);
    fresh = h.db();
  });
  afterAll(async () => {
    await h?.close();
  });

  it("every cached read equals a fresh query after random row writes applied as events", async () => {
    const totals = { reads: 0, hits: 0, tableLevelHits: 0, exact: 0, widened: 0, table: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ id: ID, a: A, b: B }), { maxLength: 8 }),
        fc.array(read, { minLength: 1, maxLength: 5 }),
        fc.array(step, { minLength: 10, maxLength: 40 }),
        async (seed, pool, steps) => {
          await h.query("delete from items");
          for (const r of new Map(seed.map((r) => [r.id, r])).values()) {
            await h.query("insert into items (id, a, b) values (?, ?, ?)", [r.id, r.a, r.b]);
          }
          const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
          const db = withTransactions(h.db(cache));
          // The same reads on a cache that drops whole tables on each write: the baseline.
          const tableLevel = drizzleCache({
            cache: createCache({ tiers: [memoryStore()], policy: "table" }),
            strategy: "all",
          });
          const tableDb = withTransactions(h.db(tableLevel));
          for (const s of steps) {
            if ("write" in s) {
              await applyWrite(h, [cache, tableLevel], s.write);
              continue;
            }
            const r = pool[s.read % pool.length]!;
            const got = await select(h, db, r);
            const want = await select(h, fresh, r);
            expect(got, JSON.stringify(r)).toEqual(want);
            expect(await select(h, tableDb, r)).toEqual(want);
            totals.reads++;
          }
          const stats = cache.getStats();
          totals.hits += stats.hits;
          totals.tableLevelHits += tableLevel.getStats().hits;
          // A write drops a subset of what dropping its table does: never fewer hits.
          expect(stats.hits).toBeGreaterThanOrEqual(tableLevel.getStats().hits);
          totals.exact += stats.registrations.exact;
          totals.widened += stats.registrations.widened;
          totals.table += stats.registrations.table;
        },
      ),
      { numRuns: 60 },
    );
    // The reads were registered by their shapes, and entries outlived writes.
    expect(totals.exact).toBeGreaterThan(0);
    expect(totals.widened).toBeGreaterThan(0);
    expect(totals.table).toBeGreaterThan(0);
    expect(totals.hits).toBeGreaterThan(totals.reads / 4);
    expect(totals.hits).toBeGreaterThan(totals.tableLevelHits);
  }, 120_000);

  it("a write to one row leaves the cached queries it cannot change", async () => {
    await h.query("delete from items");
    for (const [id, a, b] of [
      [1, 1, "ab"],
      [2, 2, "b"],
      [3, 3, "c"],
    ] as const) {
      await h.query("insert into items (id, a, b) values (?, ?, ?)", [id, a, b]);
    }
    const cache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
    const db = withTransactions(h.db(cache));
    const t = h.items;
    const queries = {
      row1: () => db.select().from(t).where(eq(t.id, 1)),
      aBelow2: () => db.select().from(t).where(lt(t.a, 2)).orderBy(t.id),
      firstTwo: () => db.select().from(t).orderBy(asc(t.a), asc(t.id)).limit(2),
      count: () => db.select({ n: sql<number>`count(*)` }).from(t),
    };
    for (const q of Object.values(queries)) await q();
    await applyWrite(h, cache, { op: "put", id: 3, a: 9, b: "z" });
    const before = cache.getStats().hits;
    const hit: Record<string, boolean> = {};
    for (const [name, q] of Object.entries(queries)) {
      const hits = cache.getStats().hits;
      await q();
      hit[name] = cache.getStats().hits > hits;
    }
    // Row 3 is not row 1, has a >= 2 and sorts after the first two: only the count goes.
    expect(hit).toEqual({ row1: true, aBelow2: true, firstTwo: true, count: false });
    expect(cache.getStats().hits - before).toBe(3);
    expect(cache.getStats().registrations).toMatchObject({
      exact: 3,
      table: 2, // the count, stored again after the write
      reasons: { aggregate: 2 },
    });
    // A write that moves row 3 into the first two drops that page, not row 1's lookup.
    await applyWrite(h, cache, { op: "put", id: 3, a: 0, b: "z" });
    const hits = cache.getStats().hits;
    expect((await queries.firstTwo())[0].id).toBe(3);
    expect((await queries.row1())[0].id).toBe(1);
    expect(cache.getStats().hits - hits).toBe(1);
  });
}

describe("SQL shapes on libSQL: reads registered by their SQL", () => {
  propertySuite(() => libsqlDb());
});

const postgresService = await requirePostgres();
postgresService.describe("SQL shapes on postgres-js: reads registered by their SQL", () => {
  propertySuite(() => postgresDb(postgresService.url, "postgres-js"));
});
postgresService.describe("SQL shapes on node-postgres: reads registered by their SQL", () => {
  propertySuite(() => postgresDb(postgresService.url, "node-postgres"));
});
