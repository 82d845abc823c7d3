import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import Database from "better-sqlite3";
import fc from "fast-check";
import pg from "pg";
import postgres from "postgres";
import { afterAll, beforeAll, expect, it } from "vitest";
import { sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { edgecache } from "../helpers/built-cli.ts";
import { type CapturedSchema, capturedSchema, following } from "../helpers/following.ts";
import { requirePostgres } from "../helpers/services.ts";

// PostgreSQL orders text by its collation. A plain `order by name` follows the column's
// collation: where the catalog shows it orders by code point (a column declared
// `collate "C"`, or the database's default when it is a libc C locale such as C.UTF-8), the
// planner follows the window as under `collate "C"`; an ICU or language collation is not
// followed (the read registers wider, reason "collation"). Either way every read equals a
// fresh query.

const service = await requirePostgres();

/** Sequences of writes around the cache (one name in every column) and reads of `columns`. */
function operations(columns: string[], names: fc.Arbitrary<string>) {
  const ids = fc.constantFrom("1", "2", "3", "4", "5", "6");
  const op = fc.oneof(
    fc.record({ kind: fc.constant("upsert" as const), id: ids, name: names }),
    fc.record({ kind: fc.constant("delete" as const), id: ids }),
    fc.record({
      kind: fc.constant("read" as const),
      column: fc.constantFrom(...columns),
      value: names,
      paged: fc.boolean(),
    }),
  );
  return fc.array(op, { minLength: 4, maxLength: 20 });
}

const url = service.url;

const clients = {
  "postgres.js": () => {
    const c = postgres(url, { max: 2, onnotice: () => {} });
    return { client: c, end: () => c.end() };
  },
  "node-postgres": () => {
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    return { client: pool, end: () => pool.end() };
  },
};

for (const [library, connect] of Object.entries(clients)) {
  service.describe(`${library}: text orders by the column's collation`, () => {
    let t: string;
    let admin: postgres.Sql;
    let db: CapturedSchema;
    let defaultIsCodePoint: boolean;

    beforeAll(async () => {
      db = await capturedSchema(
        url,
        "ec_coll",
        (schema) => `create table ${schema}.people (id text primary key, plain text not null,
          c text collate "C" not null, icu text collate "en-US-x-icu" not null);
        insert into ${schema}.people values ('1', 'ann', 'ann', 'ann'), ('2', 'Bo', 'Bo', 'Bo'),
          ('3', 'émile', 'émile', 'émile'), ('4', 'Zed', 'Zed', 'Zed');`,
      );
      admin = db.admin;
      t = `${db.schema}.people`;
      const [row] =
        await admin`select datcollate from pg_database where datname = current_database()`;
      defaultIsCodePoint = ["C", "POSIX", "C.UTF-8", "C.utf8"].includes(String(row!.datcollate));
    });
    afterAll(async () => {
      await db?.drop();
    });

    it("registers a plain order exactly where the collation orders by code point, and reads equal a fresh query", async () => {
      const app = connect();
      const sql = sqlCache({ client: app.client, tiers: [memoryStore()] });
      try {
        await sql.query(`select id from ${t} where id = $1`, ["1"]);
        await following(sql);
        const page = (column: string) =>
          `select id, plain, c, icu from ${t} order by ${column}, id limit 2`;
        const above = (column: string) =>
          `select id, ${column} from ${t} where ${column} >= $1 order by id`;
        const fresh = (q: string, p: unknown[]) => admin.unsafe(q, p as never[]);
        for (const column of ["plain", "c", "icu"]) {
          expect(await sql.query(page(column), [])).toEqual([...(await fresh(page(column), []))]);
          await sql.query(above(column), ["b"]);
        }
        const shape = (q: string) => sql.getStats().shapes.find((s) => s.sql === q);
        const followed = (q: string) => !shape(q)?.reasons.includes("collation");
        expect(followed(page("c"))).toBe(true);
        expect(followed(above("c"))).toBe(true);
        expect(followed(page("icu"))).toBe(false);
        expect(followed(above("icu"))).toBe(false);
        expect(followed(page("plain"))).toBe(defaultIsCodePoint);
        expect(followed(above("plain"))).toBe(defaultIsCodePoint);

        // A row that sorts after the page by code point (and before it in a language's
        // order): the code-point pages stay cached.
        const { hits } = sql.getStats();
        await admin.unsafe(`insert into ${t} values ('5', 'zz', 'zz', 'zz')`);
        expect(await sql.catchUp()).toBe(true);
        await sql.query(page("c"), []);
        expect(sql.getStats().hits - hits).toBe(1);

        const names = fc.constantFrom("a", "B", "b", "Z", "é", "e", "ß", "Émile", "zz", "Ab", "");
        await fc.assert(
          fc.asyncProperty(operations(["plain", "c", "icu"], names), async (ops) => {
            for (const o of ops) {
              if (o.kind === "read") {
                const [q, p] = o.paged ? [page(o.column), []] : [above(o.column), [o.value]];
                expect(await sql.query(q, p)).toEqual([...(await fresh(q, p))]);
                continue;
              }
              if (o.kind === "upsert") {
                await admin.unsafe(
                  `insert into ${t} values ($1, $2, $2, $2) on conflict (id) do update
                    set plain = $2, c = $2, icu = $2`,
                  [o.id, o.name],
                );
              } else await admin.unsafe(`delete from ${t} where id = $1`, [o.id]);
              expect(await sql.catchUp()).toBe(true);
            }
          }),
          { numRuns: 15 },
        );
      } finally {
        await sql.close();
        await app.end();
      }
    });
  });
}

// SQLite: a column declared with a collation (NOCASE, RTRIM) compares and orders by it,
// which the catalog does not name: the entry asks the database (sqlite/dialect.ts's probes)
// and follows only code-point columns.
const sqliteClients = {
  "better-sqlite3": (path: string) => {
    const db = new Database(path);
    return { client: db, end: async () => db.close() };
  },
  libsql: (path: string) => {
    const c = createClient({ url: `file:${path}` });
    return { client: c, end: async () => c.close() };
  },
};

for (const [library, open] of Object.entries(sqliteClients)) {
  it(`${library}: a column declared COLLATE NOCASE or RTRIM is not followed as code points, and reads equal a fresh query`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgecache-collation-"));
    const path = join(dir, "db.sqlite");
    const admin = new Database(path);
    admin.pragma("busy_timeout = 5000");
    admin.exec(`create table people (id text primary key, plain text not null,
        nocase text collate nocase not null, rtrim text collate rtrim not null);
      insert into people values ('1', 'ann', 'ann', 'ann'), ('2', 'Bo', 'Bo', 'Bo'),
        ('3', 'émile', 'émile', 'émile'), ('4', 'Zed', 'Zed', 'Zed');`);
    await edgecache(["capture", "install", "--db", path]);
    const app = open(path);
    const sql = sqlCache({ client: app.client, tiers: [memoryStore()] });
    try {
      await sql.query("select id from people where id = ?", ["1"]);
      await following(sql);
      const page = (column: string) =>
        `select id, plain, nocase, rtrim from people order by ${column}, id limit 2`;
      const equal = (column: string) =>
        `select id, plain, nocase, rtrim from people where ${column} = ? order by id`;
      const fresh = (q: string, p: unknown[]) => admin.prepare(q).all(...(p as never[]));
      for (const column of ["plain", "nocase", "rtrim"]) {
        await sql.query(page(column), []);
        await sql.query(equal(column), ["ann"]);
      }
      const shape = (q: string) => sql.getStats().shapes.find((s) => s.sql === q);
      const followed = (q: string) => !shape(q)?.reasons.includes("collation");
      for (const q of [page("plain"), equal("plain")]) expect(followed(q)).toBe(true);
      for (const c of ["nocase", "rtrim"]) {
        expect(followed(page(c))).toBe(false);
        expect(followed(equal(c))).toBe(false);
      }
      const names = fc.constantFrom("ann", "ANN", "Ann", "ann ", "a", "B", "é", "Émile", "zz", "");
      await fc.assert(
        fc.asyncProperty(operations(["plain", "nocase", "rtrim"], names), async (ops) => {
          for (const o of ops) {
            if (o.kind === "read") {
              const [q, p] = o.paged ? [page(o.column), []] : [equal(o.column), [o.value]];
              expect(await sql.query(q, p)).toEqual(fresh(q, p));
              continue;
            }
            if (o.kind === "upsert") {
              admin
                .prepare(`insert into people values (?, ?, ?, ?) on conflict (id) do update
                  set plain = excluded.plain, nocase = excluded.nocase, rtrim = excluded.rtrim`)
                .run(o.id, o.name, o.name, o.name);
            } else admin.prepare("delete from people where id = ?").run(o.id);
            expect(await sql.catchUp()).toBe(true);
          }
        }),
        { numRuns: 15 },
      );
    } finally {
      await sql.close();
      await app.end();
      admin.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
