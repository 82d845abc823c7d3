import { asc, eq, gt } from "drizzle-orm";
import { doublePrecision, integer, pgSchema, text, timestamp } from "drizzle-orm/pg-core";
import type { drizzle } from "drizzle-orm/postgres-js";
import type postgres from "postgres";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { EdgecacheDrizzleCache } from "../../src/drizzle/index.ts";
import { requirePostgres } from "../helpers/services.ts";
import { type FollowingPostgres, followingPostgres } from "./postgres-following.ts";

/**
 * Timestamps capture cannot write as ISO text, and floats of older installs. Found in
 * review: the trigger's `to_char(...)` gave NULL for +-infinity and a BC date without its
 * era ("0044-..."), both taken as canonical, so a page was patched with a value the table
 * does not hold; and an install from before EXACT_FLOATS recorded 0.1 + 0.2 as 0.3 for a
 * writer with extra_float_digits = 0 while floats were compared. Now such timestamps are
 * captured as PostgreSQL's text (a change of the whole table), and floats and instants are
 * compared only with current triggers.
 */

const pg = await requirePostgres();
const schemaName = `ec_rforms_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
const ev = pgSchema(schemaName).table("ev", {
  id: integer("id").primaryKey(),
  at: timestamp("at", { withTimezone: true, mode: "string" }).notNull(),
  score: doublePrecision("score"),
  tag: text("tag").notNull(),
});
type Db = ReturnType<typeof drizzle>;

pg.describe(
  "postgres.js capture: timestamps capture cannot write as ISO, older installs' floats",
  () => {
    let h: FollowingPostgres;
    let admin: postgres.Sql;
    let cache: EdgecacheDrizzleCache;
    let db: Db;
    let fresh: Db;
    beforeAll(async () => {
      h = await followingPostgres(
        pg.url,
        schemaName,
        (schema) => `create table ${schema}.ev (
          id integer primary key, at timestamptz not null, score double precision, tag text not null)`,
        (d) => d.select().from(ev).where(eq(ev.id, 0)),
      );
      ({ admin, cache, db, fresh } = h);
    });
    afterAll(async () => {
      await h?.close();
    });

    const page = (d: Db) => d.select().from(ev).orderBy(asc(ev.at), asc(ev.id)).limit(5);

    async function patchedAfter(update: string) {
      await admin.unsafe(`delete from ${schemaName}.ev`);
      await admin.unsafe(`insert into ${schemaName}.ev values
      (1, '2024-01-01T00:00:00Z', 1, 'a'), (2, '2024-01-02T00:00:00Z', 2, 'a'), (3, '2024-01-03T00:00:00Z', 3, 'a')`);
      expect(await cache.catchUp()).toBe(true);
      await new Promise((r) => setTimeout(r, 100)); // the change table emptied: loads are exact
      expect(await page(db)).toEqual(await page(fresh));
      await new Promise((r) => setTimeout(r, 50));
      const before = cache.getStats();
      await admin.unsafe(update); // around Drizzle
      expect(await cache.catchUp()).toBe(true);
      const got = await page(db);
      return { got, want: await page(fresh), patched: cache.getStats().patched - before.patched };
    }

    it("'infinity' is never patched in as null", async () => {
      const r = await patchedAfter(`update ${schemaName}.ev set at = 'infinity' where id = 2`);
      expect(r.got).toEqual(r.want);
    });

    it("'-infinity' is never patched in as null at the end of an ascending page", async () => {
      const r = await patchedAfter(`update ${schemaName}.ev set at = '-infinity' where id = 2`);
      expect(r.got).toEqual(r.want);
    });

    it("a BC timestamp is never patched in without its era", async () => {
      const r = await patchedAfter(
        `update ${schemaName}.ev set at = '0044-03-15 12:00:00+00 BC' where id = 2`,
      );
      expect(r.got).toEqual(r.want);
    });

    it("'-infinity' outside a full page: the page the row now leads is not kept", async () => {
      await admin.unsafe(`delete from ${schemaName}.ev`);
      await admin.unsafe(`insert into ${schemaName}.ev values
      (1, '2024-01-01T00:00:00Z', 1, 'a'), (2, '2024-01-02T00:00:00Z', 2, 'a'), (3, '2024-01-03T00:00:00Z', 3, 'a')`);
      expect(await cache.catchUp()).toBe(true);
      await new Promise((r) => setTimeout(r, 100));
      const first = (d: Db) => d.select().from(ev).orderBy(asc(ev.at), asc(ev.id)).limit(2);
      expect(await first(db)).toEqual(await first(fresh));
      await admin.unsafe(`update ${schemaName}.ev set at = '-infinity' where id = 3`);
      expect(await cache.catchUp()).toBe(true);
      const got = await first(db);
      const want = await first(fresh);
      expect(got).toEqual(want);
    });

    it("an install before EXACT_FLOATS, a writer with extra_float_digits = 0: a float filter misses no change", async () => {
      // Triggers as installed before this commit: no extra_float_digits of their own.
      const fns = await admin.unsafe(
        `select p.oid::regprocedure::text as f from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'edgecache_${schemaName}' and p.proname like 'capture_%' and p.proname <> 'capture_truncate'`,
      );
      for (const { f } of fns) await admin.unsafe(`alter function ${f} reset extra_float_digits`);
      await admin.unsafe(`delete from ${schemaName}.ev`);
      await admin.unsafe(`insert into ${schemaName}.ev values
      (1, '2024-01-01T00:00:00Z', 1, 'a'), (2, '2024-01-02T00:00:00Z', 0.1, 'a')`);
      expect(await cache.catchUp()).toBe(true);
      await new Promise((r) => setTimeout(r, 1100)); // the catalog read again
      const above = (d: Db) => d.select().from(ev).where(gt(ev.score, 0.3)).orderBy(asc(ev.id));
      expect(await above(db)).toEqual(await above(fresh));
      await admin.begin(async (tx) => {
        await tx.unsafe("set local extra_float_digits = 0");
        await tx.unsafe(
          `update ${schemaName}.ev set score = 0.1::float8 + 0.2::float8 where id = 2`,
        );
      });
      expect(await cache.catchUp()).toBe(true);
      const got = await above(db);
      const want = await above(fresh);
      expect(got).toEqual(want);
    });
  },
);
