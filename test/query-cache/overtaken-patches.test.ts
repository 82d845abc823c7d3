import { type Client, createClient } from "@libsql/client";
import { describe, expect, it } from "vitest";
import { capturedFile } from "./captured-file.ts";

// A group patch whose statement is still running when the next records come (issue 71): its
// result is brought through the first record that concerns it and stored as of that record,
// then through the next, and so on, rather than refused by the write fence and lost. (That
// a record which concerns it only once brought through an earlier one, a favourite of an
// article that record brought in, is not skipped: test/core/cache/loads.test.ts.) Each is
// kept through every record, not dropped and read again; the list shows its sort columns
// and key, as a patch needs to place a new row and to read the rows after its last.

const SCHEMA = `
  create table articles (id integer primary key, slug text not null unique, title text not null, created_at integer not null);
  create table favorites (user_id integer not null, article_id integer not null, primary key (user_id, article_id));
  insert into articles values (1,'s1','one',10),(2,'s2','two',20),(3,'s3','three',30),(4,'s4','four',40);
  insert into favorites values (1, 4);
`;
const LIST = `select a.id, a.slug, a.title, a.created_at,
    (select count(*) from favorites f where f.article_id = a.id) as favorites
  from articles a group by a.id order by a.created_at desc, a.id desc limit ?`;

/** A libSQL client whose statements wait while `hold` is set. */
function gated(client: Client) {
  const state = { hold: undefined as Promise<void> | undefined, holding: 0, held: 0 };
  const proxy = new Proxy(client, {
    get(target, name) {
      const value = Reflect.get(target, name, target);
      if (name !== "execute") return typeof value === "function" ? value.bind(target) : value;
      return async (...args: Parameters<Client["execute"]>) => {
        if (state.hold && state.holding > 0) {
          state.holding--;
          state.held++;
          await state.hold;
        }
        return target.execute(...args);
      };
    },
  });
  return { client: proxy, state };
}

const RETITLE = "update articles set title = 'three again' where id = 3";

describe("a group patch overtaken by the next records", () => {
  it.each([
    [
      "a new article, then a favourite of it",
      RETITLE,
      ["insert into articles values (5, 's5', 'five', 50)", "insert into favorites values (2, 5)"],
    ],
    [
      "a favourite of a held article, then another",
      RETITLE,
      ["insert into favorites values (2, 4)", "insert into favorites values (3, 4)"],
    ],
    [
      "a retitle, then a new article that pushes a row out",
      RETITLE,
      [
        "update articles set title = 'four again' where id = 4",
        "insert into articles values (6, 's6', 'six', 60)",
      ],
    ],
    // The new article's statement finds it gone: the delete that follows leaves the list as
    // the statement read it.
    [
      "a new article deleted before its statement runs",
      "insert into articles values (5, 's5', 'five', 50)",
      ["delete from articles where id = 5"],
    ],
    // The row that slides in is read after the last row the list keeps, not at a position a
    // newer article has moved.
    [
      "the newest article deleted, then a new one before the row sliding in is read",
      "delete from articles where id = 4",
      ["insert into articles values (6, 's6', 'six', 60)"],
    ],
  ])("%s", async (_, first, later) => {
    const h = await overtaken();
    try {
      await h.read(3);
      expect(await h.read(3)).toEqual(h.fresh(3)); // read since stored: its patches are wanted
      // The first record's patch waits on its statement while the later ones are applied.
      const release = h.hold(1);
      const written = h.write(first);
      await until(() => h.state.held > 0);
      for (const statement of later) await h.write(statement);
      release();
      await written;
      await h.settled();
      const { hits } = h.sql.getStats();
      expect(await h.read(3)).toEqual(h.fresh(3));
      const stats = h.sql.getStats();
      expect(stats.groupPatches.followed).toBeGreaterThan(0);
      // Kept through every record, not dropped and read again.
      expect(stats.groupPatches.dropped).toBe(0);
      expect(stats.hits).toBe(hits + 1);
    } finally {
      await h.close();
    }
  });
});

describe("results nobody read since they were stored, kept by a statement they share", () => {
  // Three windows of one list share the first record's keyed statement, so it runs though
  // none was read since stored; each is then brought through the later record on its own,
  // and is kept there too (its first statement ran: what it kept is not thrown away).
  it("are brought through the next record, each, not dropped", async () => {
    const h = await overtaken();
    try {
      for (const limit of [2, 3, 4]) await h.read(limit);
      const release = h.hold(1);
      const written = h.write(RETITLE);
      await until(() => h.state.held > 0);
      await h.write("insert into articles values (5, 's5', 'five', 50)");
      release();
      await written;
      await h.settled();
      const { hits } = h.sql.getStats();
      for (const limit of [2, 3, 4]) expect(await h.read(limit)).toEqual(h.fresh(limit));
      const stats = h.sql.getStats();
      expect(stats.groupPatches.followed).toBe(3);
      expect(stats.groupPatches.dropped).toBe(0);
      expect(stats.hits).toBe(hits + 3);
    } finally {
      await h.close();
    }
  });
});

/** A captured SQLite file, its raw SQL entry on a gated libSQL client. */
async function overtaken() {
  let state!: ReturnType<typeof gated>["state"];
  const h = await capturedFile(SCHEMA, (path) => {
    const made = gated(createClient({ url: `file:${path}` }));
    state = made.state;
    return made.client;
  });
  const numbers = (row: unknown[]) => row.map((v) => (typeof v === "bigint" ? Number(v) : v));
  return {
    sql: h.sql,
    state,
    fresh: (limit: number) =>
      (h.fresh(LIST, [limit]) as object[]).map((r) => numbers(Object.values(r))),
    read: async (limit: number) =>
      ((await h.sql.query(LIST, [limit])) as Record<string, unknown>[]).map((r) =>
        numbers(Object.values(r)),
      ),
    /** The next `n` statements wait until the function returned is called. */
    hold(n: number) {
      let open!: () => void;
      state.hold = new Promise<void>((resolve) => {
        open = resolve;
      });
      state.holding = n;
      return () => {
        state.hold = undefined;
        open();
      };
    },
    /** A write around the cache, then a catch-up (its patches may still be running). */
    write(statement: string) {
      h.writer.prepare(statement).run();
      return h.sql.catchUp();
    },
    /** Every change applied, and the patches' jobs done. */
    async settled() {
      await h.sql.catchUp();
      await h.sql.engine.drain();
    },
    close: () => h.close(),
  };
}

async function until(test: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !test(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!test()) throw new Error("timed out");
}
