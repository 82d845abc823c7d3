import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "@libsql/client";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createDataApi, type DataApi } from "../../src/app/data-api.ts";
import { Cache } from "../../src/core/cache/index.ts";
import { type CaptureFollower, followCapture } from "../../src/core/capture-feed.ts";
import { localChangeLog } from "../../src/core/change-log/in-process.ts";
import { resolveResource } from "../../src/core/data/query.ts";
import { DEMO_SCHEMA, demoViews, seedDemo } from "../../src/demo/seed.ts";
import type { Source } from "../../src/sources/source.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { quiet, until } from "../helpers/cluster.ts";

/**
 * The data API's SQLite source on a libSQL client: what a user of `sqliteSource({ client })`
 * relies on beyond the conformance suite (libsql-conformance.test.ts): the same errors as
 * on better-sqlite3, writes that roll back and wait for a busy database, and change
 * capture following the client's file.
 */

let dir: string;
const opened: { close(): unknown }[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "edgecache-libsql-source-"));
});

afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await o.close();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

let files = 0;
/** A new database file with `sql` run in it (by better-sqlite3, closed before libSQL opens it). */
function file(sql: string[], journal = "WAL"): string {
  const path = join(dir, `db${++files}.db`);
  const db = new Database(path);
  db.pragma(`journal_mode = ${journal}`);
  for (const s of sql) db.exec(s);
  db.close();
  return path;
}

function client(url: string, options: { intMode?: "number" | "bigint" | "string" } = {}): Client {
  const c = createClient({ url, ...options });
  opened.push(c);
  return c;
}

function source(options: Parameters<typeof sqliteSource>[0]): ReturnType<typeof sqliteSource> {
  const s = sqliteSource(options);
  opened.push(s);
  return s;
}

const CONSTRAINTS = [
  `CREATE TABLE teams (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, size INTEGER CHECK (size < 10), born DATETIME)`,
  `CREATE TABLE members (id TEXT PRIMARY KEY, "teamId" TEXT NOT NULL REFERENCES teams(id))`,
  `CREATE TABLE scores (id INTEGER PRIMARY KEY, points INTEGER) STRICT`,
  `INSERT INTO teams VALUES ('t1', 'one', 1, '2024-01-31')`,
];

describe("libSQL source: options", () => {
  it("refuses a client that is not a libSQL Client, as the database option refuses", () => {
    for (const bad of [{}, { execute() {} }, new Database(":memory:"), "file:x.db"]) {
      expect(() => sqliteSource({ client: bad as never })).toThrow(
        expect.objectContaining({
          code: "E_BAD_OPTION",
          message: expect.stringMatching(/option "client": expected a libSQL Client, got/),
        }),
      );
    }
  });

  it("says where a libSQL Client goes when it is given as database", () => {
    expect(() => sqliteSource({ database: client(":memory:") as never })).toThrow(
      /expected a better-sqlite3 Database \(a libSQL Client goes in option client\)/,
    );
  });

  it("refuses two of path, database and client together", () => {
    const c = client(":memory:");
    expect(() => sqliteSource({ path: join(dir, "x.db"), client: c } as never)).toThrow(
      expect.objectContaining({
        code: "E_BAD_OPTION",
        message: expect.stringMatching(/"path" and "client" exclude each other/),
      }),
    );
    expect(() => sqliteSource({ database: new Database(":memory:"), client: c } as never)).toThrow(
      /"database" and "client" exclude each other/,
    );
  });

  it('reads integers as numbers whatever the intMode; in memory refuses intMode "string"', async () => {
    const path = file(CONSTRAINTS);
    for (const intMode of ["number", "bigint", "string"] as const) {
      // A file is read on edgecache's own connection, not the client's.
      const s = source({ client: client(`file:${path}`, { intMode }) });
      const teams = resolveResource(await s.schema(), "teams")!;
      expect(await s.get(teams, "t1")).toEqual({
        id: "t1",
        name: "one",
        size: 1,
        born: "2024-01-31",
      });
    }
    const bigints = client(":memory:", { intMode: "bigint" });
    await bigints.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)");
    const s = source({ client: bigints });
    expect(await s.insert("t", { n: 7 })).toEqual({ id: 1, n: 7 });
    const strings = source({ client: client(":memory:", { intMode: "string" }) });
    await expect(strings.schema()).rejects.toMatchObject({
      code: "E_BAD_OPTION",
      message: expect.stringMatching(/intMode "string"/),
    });
  });
});

describe("libSQL source: writes", () => {
  it("answers a constraint violation with the same code and message as better-sqlite3, in a file and in memory", async () => {
    const memory = client(":memory:");
    for (const sql of CONSTRAINTS) await memory.execute(sql);
    const libsqls = [
      source({ client: client(`file:${file(CONSTRAINTS)}`) }),
      source({ client: memory }),
    ];
    const db = new Database(":memory:");
    for (const s of CONSTRAINTS) db.exec(s);
    const better = source({ database: db });
    opened.push(db);
    const writes: [string, Record<string, unknown>][] = [
      ["teams", { id: "t1", name: "again" }], // primary key
      ["teams", { id: "t2", name: "one" }], // unique
      ["teams", { id: "t3", name: "three", size: 12 }], // check
      ["members", { id: "m1", teamId: "nope" }], // foreign key: on as on better-sqlite3
      ["scores", { id: 1, points: 1.5 }], // STRICT: a REAL in an INTEGER column
    ];
    for (const [table, values] of writes) {
      const failed = async (s: Source) => {
        const err = await s.insert(table, values).then(
          () => undefined,
          (e: { code: string; message: string }) => e,
        );
        return { code: err?.code, message: err?.message };
      };
      const expected = await failed(better);
      expect(expected.code).toMatch(/E_CONFLICT|E_BAD_BODY/);
      for (const libsql of libsqls) {
        expect({ table, values, ...(await failed(libsql)) }).toEqual({
          table,
          values,
          ...expected,
        });
      }
    }
  });

  it("rolls a write back when a step refuses what SQLite stored", async () => {
    const s = source({ client: client(`file:${file(CONSTRAINTS)}`) });
    const teams = resolveResource(await s.schema(), "teams")!;
    // DATETIME has numeric affinity: "2025" would be stored as a number, found after the UPDATE.
    await expect(s.update("teams", "t1", { born: "2025", name: "changed" })).rejects.toMatchObject({
      code: "E_BAD_BODY",
    });
    expect(await s.get(teams, "t1")).toMatchObject({ name: "one", born: "2024-01-31" });
  });

  it("waits for another connection's write lock without blocking the event loop, then fails busy; the application's writes still commit", async () => {
    const path = file(CONSTRAINTS);
    const other = client(`file:${path}`);
    const app = client(`file:${path}`);
    const waiting = source({ client: app });
    const impatient = source({ client: client(`file:${path}`), busyTimeout: 30 });
    await waiting.schema();
    await impatient.schema();
    const tx = await other.transaction("write");
    try {
      await expect(impatient.insert("teams", { id: "t9", name: "nine" })).rejects.toMatchObject({
        code: "E_SOURCE_BUSY",
      });
      // The event loop runs while the insert waits: timer ticks come (counted, not timed, so
      // a loaded machine only slows them) and the insert is still waiting after them.
      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      let settled = false;
      const insert = waiting.insert("teams", { id: "t2", name: "two" });
      insert.then(
        () => (settled = true),
        () => (settled = true),
      );
      while (ticks <= 5) await new Promise((resolve) => setTimeout(resolve, 5));
      clearInterval(timer);
      expect(settled).toBe(false);
      await tx.commit();
      await expect(insert).resolves.toMatchObject({ id: "t2", name: "two" });
    } finally {
      tx.close();
    }
    // A statement of libSQL's that met SQLITE_BUSY stays active, and its connection's later
    // writes are answered, never committed (issue 45): the source waited on its own.
    await app.execute("INSERT INTO teams (id, name) VALUES ('t3', 'three')");
    const { rows } = await client(`file:${path}`).execute("SELECT id FROM teams ORDER BY id");
    expect(rows.map((r) => r.id)).toEqual(["t1", "t2", "t3"]);
  });
});

describe("libSQL source: in memory", () => {
  it("serves reads of several statements while writes come, on the client's one connection", async () => {
    const c = client(":memory:");
    await c.executeMultiple(DEMO_SCHEMA);
    // A client whose statements take a moment (as over a network): statements of reads and
    // writes come in between one another.
    const later = <T>(work: () => Promise<T>) =>
      new Promise((resolve) => setTimeout(resolve, 2)).then(work);
    const slowly = <T extends object>(o: T): T =>
      new Proxy(o, {
        get(target, name) {
          const value = Reflect.get(target, name, target);
          if (typeof value !== "function") return value;
          if (name === "execute") {
            return (...args: unknown[]) => later(() => value.apply(target, args));
          }
          if (name === "transaction") {
            return async (...args: unknown[]) => slowly(await value.apply(target, args));
          }
          return value.bind(target);
        },
      });
    const slow = slowly(c);
    const s = source({ client: slow, views: demoViews });
    for (let i = 0; i < 5; i++) {
      await s.insert("users", { id: `u${i}`, firstName: "F", lastName: "L", email: `u${i}@x` });
      await s.insert("orders", { id: `o${i}`, userId: `u${i}`, total: i, status: "new" });
    }
    const view = resolveResource(await s.schema(), "usersWithOrders")!;
    const query = { filters: [], sort: [{ column: "id", desc: false }], limit: 10, offset: 0 };
    // A view's read is two statements; a write between them would hold the connection.
    const work = Array.from({ length: 40 }, (_, i) =>
      i % 2 === 0 ? s.list(view, query) : s.update("orders", `o${i % 5}`, { total: i }),
    );
    const results = await Promise.allSettled(work);
    expect(results.filter((r) => r.status === "rejected")).toEqual([]);
  });
});

describe("libSQL source: a busy COMMIT", () => {
  it("fails the write, rolled back, rather than running its steps again (rollback journal)", async () => {
    const path = file(CONSTRAINTS, "DELETE");
    const s = source({ client: client(`file:${path}`), busyTimeout: 2000 });
    const teams = resolveResource(await s.schema(), "teams")!;
    // A reader's SHARED lock: the write takes its RESERVED lock, but cannot commit.
    const reader = await client(`file:${path}`).transaction("read");
    await reader.execute("SELECT count(*) FROM teams");
    const insert = s.insert("teams", { id: "t5", name: "five" });
    // Released while a write tried again would still be trying: its steps, run already,
    // would then commit nothing and answer no row.
    const released = new Promise<void>((resolve) => setTimeout(() => resolve(reader.close()), 50));
    await expect(insert).rejects.toMatchObject({ code: "E_SOURCE_BUSY" });
    expect(await s.get(teams, "t5")).toBeUndefined();
    await released;
    expect(await s.insert("teams", { id: "t6", name: "six" })).toMatchObject({ id: "t6" });
  });
});

describe("libSQL source: change capture", () => {
  let path: string;
  let app: Client;
  let counted: { statements: number };
  let s: ReturnType<typeof sqliteSource>;
  let cache: Cache;
  let api: DataApi;
  let follower: CaptureFollower;

  beforeAll(async () => {
    path = join(dir, "captured.db");
    const seeder = new Database(path);
    seeder.pragma("journal_mode = WAL");
    seedDemo(seeder, { users: 20, orders: 60 });
    seeder.close();
    app = createClient({ url: `file:${path}` });
    // The application's client, counting what edgecache runs on it.
    counted = { statements: 0 };
    const watched = new Proxy(app, {
      get(target, name) {
        const value = Reflect.get(target, name, target);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          counted.statements++;
          return value.apply(target, args);
        };
      },
    });
    s = sqliteSource({ client: watched, views: demoViews });
    const status = await s.installCapture();
    expect(status).toMatchObject({ installed: true, missing: [] });
    expect(status.tables).toEqual(expect.arrayContaining(["orders", "users"]));
    cache = new Cache({ tiers: [memoryStore()], log: localChangeLog(), logger: quiet });
    api = await createDataApi({ source: s, cache });
    follower = followCapture(cache, s.captureFeed(), quiet);
    await follower.caughtUp;
  });

  afterAll(async () => {
    await follower?.close();
    await s?.close();
    app?.close();
  });

  const read = async (path: string) => {
    const res = await api.app.request(path);
    return {
      body: (await res.json()) as Record<string, unknown>,
      status: res.headers.get("cache-status") ?? "",
    };
  };

  async function backlog(): Promise<number> {
    const raw = new Database(path, { readonly: true });
    try {
      return (raw.prepare("SELECT count(*) AS n FROM _edgecache_changes").get() as { n: number }).n;
    } finally {
      raw.close();
    }
  }

  it("sees a write another connection makes to the file, and serves it", async () => {
    const [user] = (await app.execute("SELECT id FROM users ORDER BY id LIMIT 1")).rows;
    const url = `/v1/users/${String(user!.id)}`;
    await read(url);
    expect((await read(url)).status).toMatch(/hit/);
    const other = client(`file:${path}`);
    await other.execute({
      sql: `UPDATE users SET "lastName" = 'Outside' WHERE id = ?`,
      args: [user!.id!],
    });
    await until(async () => (await read(url)).body.lastName === "Outside");
    await until(async () => (await backlog()) === 0);
  });

  it("runs none of its following on the application's client", async () => {
    await until(() => follower.leading);
    const before = counted.statements;
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(counted.statements).toBe(before);
  });

  it("marks the data API's own writes in their transaction and removes them once recorded", async () => {
    const [user] = (await app.execute("SELECT id FROM users ORDER BY id LIMIT 1 OFFSET 1")).rows;
    const url = `/v1/users/${String(user!.id)}`;
    await read(url);
    const before = counted.statements;
    const res = await api.app.request(url, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ firstName: "ViaApi" }),
    });
    expect(res.status).toBe(200);
    expect(counted.statements).toBe(before); // the write ran on edgecache's own connection
    // Removed on edgecache's connection right after the write was recorded, not captured.
    expect(await backlog()).toBe(0);
    expect((await read(url)).body.firstName).toBe("ViaApi");
  });

  it("is uninstalled, and the follower sees it", async () => {
    const other = source({ client: client(`file:${path}`) });
    await other.uninstallCapture();
    expect(await other.captureStatus()).toMatchObject({ installed: false });
    await until(() => !follower.installed);
  });
});

describe("libSQL source: where capture cannot follow", () => {
  it("refuses capture in memory with what to do; the source still serves", async () => {
    const c = client(":memory:");
    await c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    const s = source({ client: c });
    await expect(s.installCapture()).rejects.toMatchObject({
      code: "E_BAD_OPTION",
      message: expect.stringMatching(/file: URL/),
    });
    expect(await s.captureFeed().installed()).toBe(false);
    expect(await s.insert("t", { v: "a" })).toEqual({ id: 1, v: "a" });
  });

  it("refuses capture on a remote URL with what to do", async () => {
    const s = source({ client: client("http://127.0.0.1:9") });
    const refusal = {
      code: "E_BAD_OPTION",
      message: expect.stringMatching(/URL is http:.*file: URL/),
    };
    await expect(s.installCapture()).rejects.toMatchObject(refusal);
    expect(() => s.captureFeed()).toThrow(expect.objectContaining(refusal));
    // No server here: the source answers as for any unreachable database.
    await expect(s.schema()).rejects.toMatchObject({ code: "E_SOURCE_UNAVAILABLE" });
  });
});
