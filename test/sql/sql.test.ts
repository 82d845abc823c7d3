import fc from "fast-check";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { sqlDriver } from "../../src/database/drivers.ts";
import { type SqlCache, sqlCache } from "../../src/sql/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { requirePostgres } from "../helpers/services.ts";
import { betterSqliteRaw, libsqlRaw, postgresJsRaw, type RawHarness } from "./harness.ts";

const pg = await requirePostgres();

/** Polls until `check` holds; fails after `ms` (a bound for a test, not a measurement). */
async function eventually(check: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error("still not so after the wait");
    await new Promise((r) => setTimeout(r, 10));
  }
}

function rawSuite(make: () => RawHarness, withCapture: boolean): void {
  let h: RawHarness;
  let fresh: (sql: string, params: unknown[]) => Promise<unknown[]>;
  const opened: SqlCache[] = [];
  const users = () => h.table("users");

  /** An entry on a client of its own, once it follows capture (when installed). */
  const open = async (options?: { patchInPlace?: boolean }) => {
    const sql = sqlCache({ client: h.client(), tiers: [memoryStore()], ...options });
    opened.push(sql);
    // An installation is followed once the application reads one of its tables.
    await sql.query(`select id, name from ${users()} where id = ${h.p(1)}`, [0]);
    if (withCapture) {
      await eventually(() => sql.getStats().writes === "capture");
      // The previous test's reset, still in the change table, applied before this one reads.
      await sql.catchUp();
    }
    return sql;
  };
  /** Whether the database's default collation orders text by code point (PostgreSQL). */
  const codePointDefault = async () => {
    const [row] = (await fresh(
      "select datcollate from pg_database where datname = current_database()",
      [],
    )) as { datcollate: string }[];
    return ["C", "POSIX", "C.UTF-8", "C.utf8"].includes(row!.datcollate);
  };
  const byId = (sql: SqlCache, id: number) =>
    sql.query(`select id, name from ${users()} where id = ${h.p(1)}`, [id]);

  beforeAll(async () => {
    h = make();
    await h.reset();
    if (withCapture) await h.installCapture();
    const plain = sqlDriver(h.client())!;
    fresh = async (sql, params) => (await plain.run(sql, params)).rows;
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await h.reset();
  });
  afterAll(async () => {
    await h?.close();
  });

  if (withCapture) {
    it("an update of row 2 through execute leaves the cached select of row 1 a hit", async () => {
      const sql = await open();
      expect(await byId(sql, 1)).toEqual([{ id: 1, name: "Ann" }]);
      const before = sql.getStats();
      await sql.execute(`update ${users()} set name = ${h.p(1)} where id = ${h.p(2)}`, ["Cy", 2]);
      expect(await byId(sql, 1)).toEqual([{ id: 1, name: "Ann" }]);
      expect(await byId(sql, 2)).toEqual([{ id: 2, name: "Cy" }]);
      const after = sql.getStats();
      expect(after.hits).toBe(before.hits + 1);
      expect(after.writes).toBe("capture");
      expect(after.registrations.exact).toBeGreaterThan(0);
    });

    it("a write around the entry (another connection) is seen after catchUp(), and counts in capture.applied", async () => {
      const sql = await open();
      expect(await byId(sql, 1)).toEqual([{ id: 1, name: "Ann" }]);
      const applied = sql.getStats().capture!.applied;
      await h.exec(`update ${users()} set name = 'Di' where id = 1`);
      expect(await sql.catchUp()).toBe(true);
      expect(await byId(sql, 1)).toEqual([{ id: 1, name: "Di" }]);
      expect(sql.getStats().capture!.applied).toBeGreaterThan(applied);
    });

    it("a hot query a write invalidated is reloaded in the background: a hit afterwards", async () => {
      // Not patched in place, so the write invalidates it.
      const sql = await open({ patchInPlace: false });
      expect(await byId(sql, 1)).toEqual([{ id: 1, name: "Ann" }]);
      // Two hits make it hot (the engine's rehydrate.minHits).
      await byId(sql, 1);
      await byId(sql, 1);
      const reloads = sql.engine.stats().rehydrations;
      await h.exec(`update ${users()} set name = 'Rae' where id = 1`);
      expect(await sql.catchUp()).toBe(true);
      await sql.engine.drain();
      const { hits, misses } = sql.getStats();
      expect(await byId(sql, 1)).toEqual([{ id: 1, name: "Rae" }]);
      expect(sql.getStats()).toMatchObject({ hits: hits + 1, misses });
      expect(sql.engine.stats().rehydrations).toBe(reloads + 1);
    });

    it("with reload: false, the hot query is a miss after the write", async () => {
      const sql = sqlCache({
        client: h.client(),
        tiers: [memoryStore()],
        reload: false,
        patchInPlace: false,
      });
      opened.push(sql);
      await sql.query(`select id, name from ${users()} where id = ${h.p(1)}`, [0]);
      await eventually(() => sql.getStats().writes === "capture");
      await sql.catchUp();
      for (let i = 0; i < 3; i++) await byId(sql, 1);
      await h.exec(`update ${users()} set name = 'Rae' where id = 1`);
      expect(await sql.catchUp()).toBe(true);
      await sql.engine.drain();
      const { misses } = sql.getStats();
      expect(await byId(sql, 1)).toEqual([{ id: 1, name: "Rae" }]);
      expect(sql.getStats().misses).toBe(misses + 1);
    });

    it("a page a captured write shifts: patched in place (a hit), its text order followed by the column's collation", async () => {
      const sql = await open();
      // PostgreSQL orders `name` by its collation: followed where the catalog shows it is by
      // code point (this database's C.UTF-8; test/sql/collation.test.ts has the others).
      const followed = h.p(1) === "?" || (await codePointDefault());
      const page = `select id, name from ${users()} order by name, id limit 2`;
      expect(await sql.query(page, [])).toEqual([
        { id: 1, name: "Ann" },
        { id: 2, name: "Bo" },
      ]);
      await h.exec(`insert into ${users()} (id, name) values (3, 'Al')`);
      expect(await sql.catchUp()).toBe(true);
      const { hits, patched } = sql.getStats();
      expect(await sql.query(page, [])).toEqual([
        { id: 3, name: "Al" },
        { id: 1, name: "Ann" },
      ]);
      expect(sql.getStats().hits - hits).toBe(followed ? 1 : 0);
      expect(patched).toBe(followed ? 1 : 0);
      // `select *` names no column: its rows cannot be told from the table's, so removed.
      const star = `select * from ${users()} order by name, id limit 2`;
      await sql.query(star, []);
      await sql.execute(`update ${users()} set name = 'Ab' where id = 2`);
      const before = sql.getStats();
      expect(await sql.query(star, [])).toEqual(await fresh(star, []));
      expect(await sql.query(page, [])).toEqual(await fresh(page, []));
      expect(sql.getStats().hits - before.hits).toBe(followed ? 1 : 0);
      expect(sql.getStats().patched - before.patched).toBe(0);
    });

    it("a key lookup with another condition: a write that fails the condition empties it", async () => {
      const sql = await open();
      const q = `select id, name from ${users()} where id = ${h.p(1)} and name = ${h.p(2)}`;
      expect(await sql.query(q, [1, "Ann"])).toEqual([{ id: 1, name: "Ann" }]);
      await sql.execute(`update ${users()} set name = 'Zed' where id = 1`);
      expect(await sql.query(q, [1, "Ann"])).toEqual([]);
      await h.exec(`update ${users()} set name = 'Ann' where id = 1`);
      await sql.catchUp();
      expect(await sql.query(q, [1, "Ann"])).toEqual([{ id: 1, name: "Ann" }]);
    });

    it("a condition on another column registers exactly: a write of rows it does not match leaves it", async () => {
      const sql = await open();
      const named = `select id, name from ${users()} where name = ${h.p(1)} order by id`;
      expect(await sql.query(named, ["Ann"])).toEqual([{ id: 1, name: "Ann" }]);
      await sql.execute(`update ${users()} set name = ${h.p(1)} where id = ${h.p(2)}`, ["Cy", 2]);
      const before = sql.getStats().hits;
      expect(await sql.query(named, ["Ann"])).toEqual([{ id: 1, name: "Ann" }]);
      expect(sql.getStats().hits).toBe(before + 1);
      await sql.execute(`update ${users()} set name = ${h.p(1)} where id = ${h.p(2)}`, ["Ann", 2]);
      expect(await sql.query(named, ["Ann"])).toEqual([
        { id: 1, name: "Ann" },
        { id: 2, name: "Ann" },
      ]);
      expect(sql.getStats().registrations.widened).toBe(0);
    });

    it("a join of a user with their posts stays a hit when another user's post changes", async () => {
      const sql = await open();
      const t = h.table("posts");
      const userPosts = (id: number) =>
        sql.query(
          `select users.id as uid, users.name, posts.id as pid from ${users()} left join ${t} on posts.user_id = users.id where users.id = ${h.p(1)} order by posts.id`,
          [id],
        );
      expect(await userPosts(1)).toEqual([{ uid: 1, name: "Ann", pid: 1 }]);
      await sql.execute(`insert into ${t} (id, user_id, title) values (2, 2, 'other')`);
      let hits = sql.getStats().hits;
      expect(await userPosts(1)).toEqual([{ uid: 1, name: "Ann", pid: 1 }]);
      expect(sql.getStats().hits).toBe(hits + 1);
      expect(sql.getStats().registrations).toMatchObject({ widened: 0, table: 0 });
      // A post of user 1, written around the entry: seen.
      await h.exec(`insert into ${t} (id, user_id, title) values (3, 1, 'mine')`);
      await sql.catchUp();
      hits = sql.getStats().hits;
      expect(await userPosts(1)).toEqual([
        { uid: 1, name: "Ann", pid: 1 },
        { uid: 1, name: "Ann", pid: 3 },
      ]);
      expect(sql.getStats().hits).toBe(hits);
    });

    it("a read naming a captured table in another case is never stale", async () => {
      const sql = await open();
      const upper = `select id, name from ${users().toUpperCase()} where id = ${h.p(1)}`;
      expect(await sql.query(upper, [1])).toEqual([{ id: 1, name: "Ann" }]);
      await h.exec(`update ${users()} set name = 'Di' where id = 1`);
      await sql.catchUp();
      expect(await sql.query(upper, [1])).toEqual([{ id: 1, name: "Di" }]);
    });
  } else {
    it("without capture, execute empties the reads of its table, and only those", async () => {
      const sql = await open();
      const posts = `select id, title from ${h.table("posts")} where id = ${h.p(1)}`;
      await byId(sql, 1);
      await sql.query(posts, [1]);
      await sql.execute(`update ${users()} set name = ${h.p(1)} where id = ${h.p(2)}`, ["Cy", 2]);
      const before = sql.getStats();
      expect(before.writes).toBe("tables");
      expect(await byId(sql, 1)).toEqual([{ id: 1, name: "Ann" }]);
      await sql.query(posts, [1]);
      const after = sql.getStats();
      expect(after.misses).toBe(before.misses + 1);
      expect(after.hits).toBe(before.hits + 1);
    });

    it("a statement whose target it cannot tell empties every read it cached", async () => {
      const sql = await open();
      await byId(sql, 1);
      await sql.query(`select id, title from ${h.table("posts")}`);
      expect(sql.getStats().keys).toBe(3); // with open()'s read of id 0
      await sql.execute(`create table if not exists ${users()}_extra (id integer primary key)`);
      expect(sql.getStats().keys).toBe(0);
    });
  }

  it("every read equals a fresh query, with writes through execute and around it", async () => {
    const sql = await open();
    const u = users();
    const t = h.table("posts");
    const p = h.p;
    const ids = fc.integer({ min: 1, max: 4 });
    const names = fc.constantFrom("Ann", "Bo", "Cy", "Di");
    const reads: Record<string, (o: { id: number; name: string }) => [string, unknown[]]> = {
      one: (o) => [`select id, name from ${u} where id = ${p(1)}`, [o.id]],
      all: () => [`select id, name from ${u} order by id`, []],
      named: (o) => [`select id, name from ${u} where name = ${p(1)} order by id`, [o.name]],
      page: (o) => [`select id, name from ${u} where id >= ${p(1)} order by id limit 2`, [o.id]],
      count: () => [`select count(*) as n from ${u}`, []],
      // Joins along posts.user_id (docs/guides/drizzle.md, Joins).
      userPosts: (o) => [
        `select users.id as uid, users.name, posts.id as pid from ${u} left join ${t} on posts.user_id = users.id where users.id = ${p(1)} order by posts.id`,
        [o.id],
      ],
      postsBy: (o) => [
        `select posts.id, posts.user_id, users.name from ${t} join ${u} on users.id = posts.user_id where users.name = ${p(1)} order by posts.id limit 2`,
        [o.name],
      ],
    };
    const op = fc.oneof(
      fc.record({ kind: fc.constant("update" as const), id: ids, name: names }),
      fc.record({ kind: fc.constant("upsert" as const), id: ids, name: names }),
      fc.record({ kind: fc.constant("delete" as const), id: ids }),
      fc.record({ kind: fc.constant("around" as const), id: ids, name: names }),
      fc.record({ kind: fc.constant("post" as const), id: ids, userId: ids, around: fc.boolean() }),
      {
        arbitrary: fc.record({
          kind: fc.constant("read" as const),
          read: fc.constantFrom(...Object.keys(reads)),
          id: ids,
          name: names,
        }),
        weight: 6,
      },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 25 }), async (ops) => {
        for (const o of ops) {
          if (o.kind === "update") {
            await sql.execute(`update ${u} set name = ${p(1)} where id = ${p(2)}`, [o.name, o.id]);
          } else if (o.kind === "upsert") {
            await sql.execute(
              `insert into ${u} (id, name) values (${p(1)}, ${p(2)}) on conflict (id) do update set name = excluded.name`,
              [o.id, o.name],
            );
          } else if (o.kind === "delete") {
            await sql.execute(`delete from ${u} where id = ${p(1)}`, [o.id]);
          } else if (o.kind === "post") {
            const values = `(${o.id}, ${o.userId}, 't')`;
            if (!o.around) {
              await sql.execute(
                `insert into ${t} (id, user_id, title) values ${values} on conflict (id) do update set user_id = excluded.user_id`,
              );
            } else {
              await h.exec(`delete from ${t} where id = ${o.id}`);
              await h.exec(`insert into ${t} (id, user_id, title) values ${values}`);
              if (withCapture) await sql.catchUp();
              else await sql.invalidate([t]);
            }
          } else if (o.kind === "around") {
            await h.exec(`update ${u} set name = '${o.name}' where id = ${o.id}`);
            // With capture, the lag; without, the application says what it changed.
            if (withCapture) await sql.catchUp();
            else await sql.invalidate([u]);
          } else {
            const [text, params] = reads[o.read]!(o);
            expect(await sql.query(text, params)).toEqual(await fresh(text, params));
          }
        }
      }),
      { numRuns: 15 },
    );
    expect(sql.getStats().hits).toBeGreaterThan(0);
    // With SQLite capture (commit order), results were patched in place too.
    if (withCapture && h.p(1) === "?") expect(sql.getStats().patched).toBeGreaterThan(0);
  });
}

describe("raw SQL with change capture: libSQL (file)", () => {
  rawSuite(() => libsqlRaw(), true);
});

pg.describe("raw SQL with change capture: postgres.js", () => {
  rawSuite(() => postgresJsRaw(pg.url), true);
});

describe("raw SQL without change capture: libSQL (file)", () => {
  rawSuite(() => libsqlRaw(), false);
});

describe("raw SQL with change capture: better-sqlite3 (file)", () => {
  rawSuite(() => betterSqliteRaw(), true);
});

describe("raw SQL without change capture: better-sqlite3 (file)", () => {
  rawSuite(() => betterSqliteRaw(), false);
});

pg.describe("raw SQL without change capture: postgres.js", () => {
  rawSuite(() => postgresJsRaw(pg.url), false);
});

pg.describe("raw SQL with change capture: node-postgres", () => {
  rawSuite(() => postgresJsRaw(pg.url, "pg"), true);
});

pg.describe("raw SQL without change capture: node-postgres", () => {
  rawSuite(() => postgresJsRaw(pg.url, "pg"), false);
});

describe("getStats().shapes: each query's explanation", () => {
  it("names the granularity of each stored query and why not finer", async () => {
    const h = betterSqliteRaw();
    await h.reset();
    await h.installCapture();
    const sql = sqlCache({ client: h.client(), tiers: [memoryStore()] });
    try {
      await sql.query("select id, name from users where id = ?", [1]);
      await eventually(() => sql.getStats().writes === "capture");
      await sql.invalidate();
      await sql.query("select id, name from users where id = ?", [1]);
      await sql.query("select id, name from users where id = ?", [2]);
      await sql.query("select user_id, count(*) as n from posts group by user_id", []);
      await sql.query("select id, name from users where id = ?", [2]);
      const shapes = sql.getStats().shapes;
      // Its lookups under its shape: the share of the reads it carries.
      expect(shapes[0]).toMatchObject({
        sql: "select id, name from users where id = ?",
        granularity: "row",
        reasons: [],
        stored: 3,
        hits: 1,
        misses: 3,
      });
      expect(shapes).toContainEqual(
        expect.objectContaining({
          granularity: "table",
          reasons: ["group-by"],
          stored: 1,
          hits: 0,
          misses: 1,
        }),
      );
    } finally {
      await sql.close();
      await h.close();
    }
  });
});

describe("a transaction opened through execute", () => {
  it("reads inside are neither served nor stored; its writes are seen at commit, not at rollback", async () => {
    const h = betterSqliteRaw();
    await h.reset();
    const sql = sqlCache({ client: h.client(), tiers: [memoryStore()], capture: false });
    const name = async (id: number) =>
      ((await sql.query("select name from users where id = ?", [id])) as { name: string }[])[0]
        ?.name;
    try {
      expect(await name(1)).toBe("Ann");
      await sql.execute("begin");
      await sql.execute("update users set name = ? where id = ?", ["Flo", 1]);
      expect(await name(1)).toBe("Flo"); // its own write, not the cached row
      await sql.execute("rollback");
      const hits = sql.getStats().hits;
      expect(await name(1)).toBe("Ann");
      expect(sql.getStats().hits).toBe(hits + 1); // nothing stored inside
      await sql.execute("begin immediate");
      await sql.execute("update users set name = ? where id = ?", ["Gus", 1]);
      await sql.execute("savepoint s");
      await sql.execute("rollback to s"); // a savepoint's: the transaction goes on
      expect(await name(1)).toBe("Gus");
      await sql.execute("commit");
      expect(await name(1)).toBe("Gus");
    } finally {
      await sql.close();
      await h.close();
    }
  });
});

describe("foreign-key actions, without capture", () => {
  it("a delete that cascades empties the cached reads of the child table too", async () => {
    const h = betterSqliteRaw();
    await h.reset();
    await h.exec(`create table if not exists notes (id integer primary key,
      user_id integer not null references users(id) on delete cascade, body text)`);
    await h.exec("insert into notes values (1, 1, 'a'), (2, 2, 'b')");
    const sql = sqlCache({ client: h.client(), tiers: [memoryStore()], capture: false });
    const notes = () => sql.query("select id, body from notes where user_id = ?", [1]);
    try {
      expect(await notes()).toEqual([{ id: 1, body: "a" }]);
      expect(await notes()).toEqual([{ id: 1, body: "a" }]);
      expect(sql.getStats().hits).toBe(1);
      await sql.execute("delete from users where id = ?", [1]); // cascades to notes
      expect(await notes()).toEqual([]);
    } finally {
      await sql.close();
      await h.close();
    }
  });
});
