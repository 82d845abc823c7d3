import { asc, desc, eq } from "drizzle-orm";
import { doublePrecision, integer, pgSchema, text, timestamp } from "drizzle-orm/pg-core";
import type { drizzle } from "drizzle-orm/postgres-js";
import fc from "fast-check";
import type postgres from "postgres";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { EdgecacheDrizzleCache } from "../../src/drizzle/index.ts";
import { requirePostgres } from "../helpers/services.ts";
import { type FollowingPostgres, followingPostgres } from "./postgres-following.ts";

/**
 * PostgreSQL's timestamps and floats in results patched in place: drizzle-orm's postgres.js
 * driver hands the cache timestamps as the server's text while capture records ISO text,
 * and a float may be NaN or infinite (which capture records as text). Every read through
 * the cache equals a fresh query while pages ordered by them are patched.
 */

const pg = await requirePostgres();

const schemaName = `ec_forms_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
const events = pgSchema(schemaName).table("events", {
  id: integer("id").primaryKey(),
  at: timestamp("at", { withTimezone: true, mode: "string" }).notNull(),
  seen: timestamp("seen", { precision: 3, mode: "string" }),
  score: doublePrecision("score"),
  tag: text("tag").notNull(),
});

/** Timestamps as an application writes them: several offsets and fractions of a second. */
const AT = fc.constantFrom(
  "2024-01-01T00:00:00Z",
  "2024-01-01T00:00:00.5Z",
  "2024-01-01T00:00:00.123456Z",
  "2024-01-01T01:00:00.1+01:00",
  "2023-12-31T23:59:59.999999Z",
  "2024-06-30 12:00:00.25+02",
  "1999-01-01T00:00:00Z",
);
const SEEN = fc.constantFrom(
  null,
  "2024-01-01 00:00:00",
  "2024-01-01 00:00:00.12",
  "2025-05-05 05:05:05.5",
);
/** Floats as SQL literals: fractions binary floats cannot hold exactly, NaN and infinity. */
const SCORE = fc.constantFrom(
  "null",
  "0.1",
  "0.2",
  "0.1::float8 + 0.2::float8",
  "1e-7",
  "-3.5",
  "2",
  "'NaN'",
  "'Infinity'",
);
const ID = fc.integer({ min: 1, max: 16 });
const TAG = fc.constantFrom("a", "b");

type Op =
  | {
      k: "put";
      id: number;
      at: string;
      seen: string | null;
      score: string;
      tag: string;
      around: boolean;
    }
  | { k: "delete"; id: number; around: boolean }
  | { k: "read"; n: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("put" as const),
      id: ID,
      at: AT,
      seen: SEEN,
      score: SCORE,
      tag: TAG,
      around: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("delete" as const), id: ID, around: fc.boolean() }),
  },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("read" as const), n: fc.nat() }) },
);

type Db = ReturnType<typeof drizzle>;

/** The reads: pages ordered by a timestamp (with and without zone), by a float, lookups. */
const reads: ((db: Db) => Promise<unknown>)[] = [
  (db) =>
    db
      .select()
      .from(events)
      .where(eq(events.tag, "a"))
      .orderBy(desc(events.at), asc(events.id))
      .limit(3),
  (db) =>
    db
      .select()
      .from(events)
      .where(eq(events.tag, "b"))
      .orderBy(desc(events.at), asc(events.id))
      .limit(2)
      .offset(2),
  (db) =>
    db
      .select()
      .from(events)
      .where(eq(events.tag, "a"))
      .orderBy(asc(events.score), asc(events.id))
      .limit(3),
  (db) =>
    db
      .select()
      .from(events)
      .where(eq(events.tag, "b"))
      .orderBy(desc(events.seen), asc(events.id))
      .limit(3),
  (db) =>
    db
      .select()
      .from(events)
      .where(eq(events.tag, "b"))
      .orderBy(asc(events.at), asc(events.id))
      .limit(3)
      .offset(1),
  (db) => db.select().from(events).orderBy(asc(events.seen), desc(events.id)).limit(4),
  (db) => db.select().from(events).where(eq(events.id, 3)),
  (db) => db.select().from(events).where(eq(events.tag, "a")).orderBy(asc(events.id)),
];

pg.describe("drizzle on postgres.js: timestamps and floats patched in place", () => {
  let h: FollowingPostgres;
  let admin: postgres.Sql;
  let cache: EdgecacheDrizzleCache;
  let db: Db;
  let fresh: Db;

  beforeAll(async () => {
    h = await followingPostgres(
      pg.url,
      schemaName,
      (schema) => `create table ${schema}.events (
        id integer primary key, at timestamptz not null, seen timestamp(3),
        score double precision, tag text not null)`,
      (d) => d.select().from(events).where(eq(events.id, 0)),
    );
    ({ admin, cache, db, fresh } = h);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("a page ordered by a timestamp: a newer row around Drizzle is patched in, a hit after", async () => {
    await admin.unsafe(`delete from ${schemaName}.events`);
    await cache.catchUp();
    await admin.unsafe(`insert into ${schemaName}.events values
      (1, '2024-01-01T00:00:00Z', null, 0.5, 'a'), (2, '2024-01-02T00:00:00.5Z', null, 1.5, 'a')`);
    await cache.catchUp();
    const page = (d: Db) => reads[0]!(d);
    expect(await page(db)).toEqual(await page(fresh));
    const before = cache.getStats();
    await admin.unsafe(
      `insert into ${schemaName}.events values (3, '2024-01-03T00:00:00.123456Z', null, 0.1::float8 + 0.2::float8, 'a')`,
    );
    expect(await cache.catchUp()).toBe(true);
    const patched = cache.getStats().patched - before.patched;
    expect(patched).toBeGreaterThan(0);
    expect(await page(db)).toEqual(await page(fresh));
    expect(cache.getStats().hits).toBe(before.hits + 1);
    // NaN has no place a page can be patched to: the table's pages are removed instead.
    await admin.unsafe(`update ${schemaName}.events set score = 'NaN' where id = 1`);
    expect(await cache.catchUp()).toBe(true);
    expect(await page(db)).toEqual(await page(fresh));
    expect(cache.getStats().misses).toBe(before.misses + 1);
  });

  it("every read equals a fresh query after random writes through Drizzle and around it", async () => {
    const start = cache.getStats();
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 10, maxLength: 60 }), async (ops) => {
        for (const o of ops) {
          if (o.k === "read") {
            const read = reads[o.n % reads.length]!;
            expect(await read(db)).toEqual(await read(fresh));
          } else if (o.k === "delete") {
            if (o.around) {
              await admin.unsafe(`delete from ${schemaName}.events where id = $1`, [o.id]);
              await cache.catchUp(); // the lag
            } else await db.delete(events).where(eq(events.id, o.id));
          } else {
            const score = o.score === "null" ? "null" : `(${o.score})::float8`;
            if (o.around) {
              await admin.unsafe(
                `insert into ${schemaName}.events values ($1, $2, $3, ${score}, $4)
                 on conflict (id) do update set at = excluded.at, seen = excluded.seen,
                   score = excluded.score, tag = excluded.tag`,
                [o.id, o.at, o.seen, o.tag],
              );
              await cache.catchUp(); // the lag
            } else {
              const [picked] = await admin.unsafe(`select ${score} as value`);
              const row = {
                id: o.id,
                at: o.at,
                seen: o.seen,
                score: picked!.value as number | null,
                tag: o.tag,
              };
              await db
                .insert(events)
                .values(row)
                .onConflictDoUpdate({ target: events.id, set: row });
            }
          }
        }
      }),
      { numRuns: 40 },
    );
    const end = cache.getStats();
    expect(end.hits - start.hits).toBeGreaterThan(0);
    expect(end.patched - start.patched).toBeGreaterThan(0);
  }, 120_000);
});
