import { rmSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempDir } from "../app/harness.ts";
import { cli } from "./run-cli.ts";

describe("explain", () => {
  let dir: string;
  let db: string;
  beforeAll(() => {
    dir = tempDir();
    db = join(dir, "app.db");
    const d = new Database(db);
    d.exec(`create table users (id integer primary key, name text not null);
      create table posts (id integer primary key, user_id integer not null, title text)`);
    d.close();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const explain = async (sql: string, ...flags: string[]) => {
    const r = await cli(["explain", sql, ...flags, "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout) as {
      granularity: string;
      reasons: string[];
      tables: string[];
      uncaptured?: string[];
    };
  };

  it("tells each select's granularity and why not finer, from the database's catalog", async () => {
    expect(await explain("select id, name from users where id = ?", "--db", db)).toMatchObject({
      granularity: "row",
      reasons: [],
      tables: ["users"],
    });
    expect(
      await explain("select id, name from users where name = ? order by id limit 10", "--db", db),
    ).toMatchObject({ granularity: "predicate", reasons: [] });
    expect(
      await explain(
        "select u.id, p.title from users u join posts p on p.user_id = u.id where u.id = ?",
        "--db",
        db,
      ),
    ).toMatchObject({ granularity: "join", reasons: [] });
    expect(
      await explain("select user_id, count(*) from posts group by user_id", "--db", db),
    ).toMatchObject({ granularity: "table", reasons: ["group-by"] });
    expect(await explain("select id from users where lower(name) = ?", "--db", db)).toMatchObject({
      granularity: "predicate",
      reasons: ["expression"],
    });
    // Parameters given as they are: a number compared with a text column widens the condition.
    expect(
      await explain(
        "select id from users where name = ? order by id",
        "--db",
        db,
        "--params",
        "[1]",
      ),
    ).toMatchObject({ granularity: "predicate", reasons: ["type"] });
    // Without a catalog no table's key is known.
    expect(await explain("select id from users where id = ?")).toMatchObject({
      granularity: "table",
      reasons: ["unknown-table"],
    });
  }, 60_000);

  it("reads a captured link table (a composite key) by its lists, as the query caches do", async () => {
    const linked = join(dir, "linked.db");
    const d = new Database(linked);
    d.exec(`create table posts (id integer primary key, title text);
      create table tags (id integer primary key, name text);
      create table post_tags (post_id integer not null, tag_id integer not null, primary key (post_id, tag_id))`);
    d.close();
    const counted = `select p.id, p.title, (select count(*) from post_tags pt where pt.post_id = p.id) as n from posts p where p.id = ?`;
    // Not captured: the query caches do not know it.
    expect((await explain(counted, "--db", linked)).reasons).toContain("post_tags: unknown-table");
    expect((await cli(["capture", "install", "--db", linked])).code).toBe(0);
    const e = await explain(counted, "--db", linked);
    expect(e.granularity).not.toBe("table");
    expect(e.reasons.some((r) => r.includes("unknown-table"))).toBe(false);
  }, 60_000);

  it("takes a unique NOT NULL column from the catalog for the key a list does not show", async () => {
    const shown = join(dir, "slugs.db");
    const d = new Database(shown);
    d.exec(`create table posts (id integer primary key, slug text not null unique, title text);
      create table likes (id integer primary key, post_id integer not null, user_id integer not null);
      create table drafts (id integer primary key, slug text unique, title text)`);
    d.close();
    const list = (t: string) =>
      `select p.slug, p.title, (select count(*) from likes l where l.post_id = p.id) as n from ${t} p order by p.id limit 10`;
    const e = (await explain(list("posts"), "--db", shown)) as { maintained?: string[] };
    expect(e.maintained).toEqual(["posts", "likes"]);
    // A unique column that may be NULL names no row.
    const nullable = (await explain(list("drafts"), "--db", shown)) as { unmaintained?: string };
    expect(nullable.unmaintained).toBe("it shows neither its base's key nor a unique column of it");
  }, 60_000);

  it("says in words what each reason means, and which tables' writes remove a maintained result", async () => {
    const tracker = join(dir, "tracker.db");
    const d = new Database(tracker);
    d.exec(`create table issues (id integer primary key, title text, created_at integer);
      create table labels (id integer primary key, name text);
      create table issue_labels (issue_id integer not null, label_id integer not null, primary key (issue_id, label_id))`);
    d.close();
    expect((await cli(["capture", "install", "--db", tracker])).code).toBe(0);
    const list = `select i.id, i.title, json_group_array(l.name) as labels from issues i
      left join issue_labels il on il.issue_id = i.id left join labels l on l.id = il.label_id
      group by i.id order by i.created_at desc, i.id desc limit 20`;
    const r = await cli(["explain", list, "--db", tracker]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("labels: join: followed at table level");
    expect(r.stdout).toContain("a write to labels removes it (read again at its next lookup)");
  }, 60_000);

  it("prints a table for people, and refuses bad input with one line and exit 2", async () => {
    const r = await cli(["explain", "select id from users where id = ?", "--db", db]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("granularity: row");
    expect(r.stdout).toContain("why not finer: (exact)");
    // This database has no capture: what that costs is said beside the read's granularity.
    expect(r.stdout).toMatch(
      /capture is not installed on users: until `edgecache capture install`/,
    );
    expect(await explain("select id from users where id = ?", "--db", db)).toMatchObject({
      uncaptured: ["users"],
    });
    for (const [flags, message] of [
      [["--dialect", "mysql"], /--dialect: expected sqlite or postgres/],
      [["--params", "{"], /--params: expected a JSON array/],
      [["--db", join(dir, "none.db")], /no SQLite file at/],
    ] as const) {
      const bad = await cli(["explain", "select 1", ...flags]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(message);
    }
  }, 60_000);

  it("with capture installed, says nothing of it", async () => {
    const captured = join(dir, "captured.db");
    const d = new Database(captured);
    d.exec("create table users (id integer primary key, name text not null)");
    d.close();
    expect((await cli(["capture", "install", "--db", captured])).code).toBe(0);
    const r = await cli(["explain", "select id from users where id = ?", "--db", captured]);
    expect(r.stdout).toContain("granularity: row");
    expect(r.stdout).not.toContain("capture is not installed");
    expect(await explain("select id from users where id = ?", "--db", captured)).toMatchObject({
      uncaptured: [],
    });
  }, 60_000);
});
