import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNodeEdgecache, type NodeEdgecache } from "../../src/adapter/node/modes/data-api.ts";
import { API_GRACE_MS } from "../../src/core/capture-feed.ts";
import type { Row } from "../../src/core/data/query.ts";
import { resolveResource } from "../../src/core/data/query.ts";
import { parseListQuery } from "../../src/core/data/query-params.ts";
import { randomId } from "../../src/core/random-id.ts";
import { demoViews } from "../../src/demo/seed.ts";
import { isPostgresUrl, postgresSource } from "../../src/sources/postgres.ts";
import type { Source } from "../../src/sources/source.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { edgecache } from "../helpers/built-cli.ts";
import { until } from "../helpers/cluster.ts";
import { withPostgresDatabase } from "../helpers/postgres.ts";
import { requirePostgres } from "../helpers/services.ts";

/**
 * Change capture end to end, on SQLite and on the real PostgreSQL: writes made straight
 * in the database (raw SQL on another connection) are seen through the data API within
 * milliseconds, and after a restart; each read is compared with the database.
 */

interface Database_ {
  /** What `--db` takes. */
  db: string;
  /** Raw SQL on a connection of its own; `?` placeholders. */
  exec(sql: string, params?: unknown[]): Promise<void>;
  /** Several statements in one transaction that rolls back. */
  rolledBack(statements: string[]): Promise<void>;
  /** Changes captured and not yet applied. */
  backlog(): Promise<number>;
  fresh(): Promise<Source>;
  close(): Promise<void>;
}

function sqliteDatabase(dir: string): Database_ {
  const path = join(dir, "app.db");
  let raw: Database.Database | undefined;
  const conn = () => {
    raw ??= new Database(path);
    raw.pragma("foreign_keys = ON");
    return raw;
  };
  return {
    db: path,
    async exec(sql, params = []) {
      conn()
        .prepare(sql)
        .run(...params);
    },
    async rolledBack(statements) {
      const db = conn();
      db.exec("BEGIN");
      for (const s of statements) db.exec(s);
      db.exec("ROLLBACK");
    },
    async backlog() {
      const row = conn().prepare("SELECT count(*) AS n FROM _edgecache_changes").get() as {
        n: number;
      };
      return row.n;
    },
    fresh: async () => sqliteSource({ path, views: demoViews }),
    async close() {
      raw?.close();
    },
  };
}

function postgresDatabase(url: string): Database_ {
  const raw = postgres(url, { max: 1, onnotice: () => {} });
  const numbered = (sql: string) => {
    let n = 0;
    return sql.replace(/\?/g, () => `$${++n}`);
  };
  return {
    db: url,
    async exec(sql, params = []) {
      await raw.unsafe(numbered(sql), params as never[]);
    },
    async rolledBack(statements) {
      await raw
        .begin(async (tx) => {
          for (const s of statements) await tx.unsafe(s);
          throw new Error("roll back");
        })
        .catch(() => {});
    },
    async backlog() {
      const [row] = await raw.unsafe("SELECT count(*)::int AS n FROM edgecache.changes");
      return Number(row?.n);
    },
    fresh: () => postgresSource({ url, max: 2, views: demoViews }),
    async close() {
      await raw.end();
    },
  };
}

function captureSuite(
  name: string,
  open: () => Promise<{ dir: string; database: Database_; drop(): Promise<void> }>,
) {
  describe(`change capture: ${name}`, () => {
    let dir: string;
    let database: Database_;
    let drop: () => Promise<void>;
    let node: NodeEdgecache;
    let fresh: Source;

    const start = () =>
      createNodeEdgecache({
        cwd: dir,
        demoDatabase: database.db,
        demo: { users: 40, orders: 160 },
      });

    beforeAll(async () => {
      ({ dir, database, drop } = await open());
      node = await start();
      fresh = await database.fresh();
    }, 60_000);

    afterAll(async () => {
      await fresh?.close();
      await node?.close();
      await database?.close();
      await drop?.();
    });

    async function read(path: string): Promise<{ body: unknown; status: string }> {
      const res = await node.app.request(path);
      const json = (await res.json()) as { data?: unknown };
      return {
        body: path.includes("?") ? json.data : res.status === 404 ? null : json,
        status: res.headers.get("cache-status") ?? "",
      };
    }

    /** What the database holds for a path, never through the cache. */
    async function truth(path: string): Promise<unknown> {
      const url = new URL(path, "http://x");
      const [, , resourceName, id] = url.pathname.split("/");
      const resource = resolveResource(await fresh.schema(), resourceName!)!;
      if (id !== undefined) return (await fresh.get(resource, decodeURIComponent(id))) ?? null;
      return fresh.list(resource, parseListQuery(resource, url.searchParams));
    }

    /** Reads each path twice (a miss, then a hit), so the cache holds them. */
    async function warm(paths: string[]): Promise<void> {
      for (const path of paths) {
        await read(path);
        expect((await read(path)).status).toMatch(/hit/);
      }
    }

    async function expectFresh(paths: string[]): Promise<void> {
      await until(async () => (await database.backlog()) === 0);
      for (const path of paths)
        expect({ path, body: (await read(path)).body }).toEqual({ path, body: await truth(path) });
    }

    async function firstUser(): Promise<Row> {
      const users = (await truth("/v1/users?limit=1")) as Row[];
      return users[0]!;
    }

    it("is installed with the CLI, and a running node picks it up", async () => {
      const before = await edgecache(["capture", "status", "--db", database.db, "--json"]);
      expect(JSON.parse(before.stdout)).toMatchObject({ installed: false });
      const { stdout } = await edgecache(["capture", "install", "--db", database.db]);
      expect(stdout).toMatch(/capture: installed/);
      expect(stdout).toMatch(/tables: {2}orders, users/);
      expect(stdout).not.toMatch(/password|secret/);
      await until(() => node.capture?.installed === true);
    });

    it("UPDATE, INSERT and multi-row statements made around edgecache are seen at once", async () => {
      const user = await firstUser();
      const paths = [
        `/v1/users/${user.id}`,
        "/v1/users?lastName=Capture&limit=5",
        `/v1/orders?userId=${user.id}&limit=50`,
        `/v1/usersWithOrders/${user.id}`,
        "/v1/orders?status=refunded&limit=50",
      ];
      await warm(paths);
      await database.exec(`UPDATE users SET "lastName" = ? WHERE id = ?`, ["Capture", user.id]);
      await expectFresh(paths);
      await database.exec(
        `INSERT INTO orders (id, "userId", total, status, "createdAt") VALUES (?, ?, ?, ?, ?)`,
        ["o-capture-1", user.id, 42.5, "pending", "2025-05-05T05:05:05Z"],
      );
      await expectFresh(paths);
      // One statement, many rows.
      await database.exec(`UPDATE orders SET status = 'refunded' WHERE "userId" = ?`, [user.id]);
      await expectFresh(paths);
      // Still exact: an entry no write touched is still a hit.
      await warm(["/v1/users?firstName=Nobody&limit=5"]);
      await database.exec(`UPDATE users SET "firstName" = 'Other' WHERE id = ?`, [user.id]);
      await expectFresh(paths);
      expect((await read("/v1/users?firstName=Nobody&limit=5")).status).toMatch(/hit/);
    });

    it("a DELETE that cascades is seen on every cached response it touches", async () => {
      const user = await firstUser();
      const paths = [
        `/v1/users/${user.id}`,
        `/v1/orders?userId=${user.id}&limit=50`,
        `/v1/usersWithOrders/${user.id}`,
        "/v1/orders?limit=20",
      ];
      await warm(paths);
      await database.exec("DELETE FROM users WHERE id = ?", [user.id]);
      await expectFresh(paths);
      expect((await read(`/v1/users/${user.id}`)).body).toBeNull();
    });

    it("a rolled-back transaction changes nothing and leaves nothing to apply", async () => {
      const user = await firstUser();
      const path = `/v1/users/${user.id}`;
      await warm([path]);
      await database.rolledBack([`UPDATE users SET "lastName" = 'Ghost' WHERE id = '${user.id}'`]);
      expect(await database.backlog()).toBe(0);
      expect(await read(path)).toEqual({
        body: await truth(path),
        status: expect.stringMatching(/hit/),
      });
    });

    it("the data API's own writes leave no backlog and are read back at once", async () => {
      const user = await firstUser();
      const res = await node.app.request(`/v1/users/${user.id}`, {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ firstName: "ViaApi" }),
      });
      expect(res.status).toBe(200);
      expect(await database.backlog()).toBe(0);
      expect((await read(`/v1/users/${user.id}`)).body).toEqual(
        await truth(`/v1/users/${user.id}`),
      );
    });

    it("writes made while edgecache is stopped are replayed before it serves; the cache is kept", async () => {
      const user = await firstUser();
      const touched = `/v1/users/${user.id}`;
      const untouched = "/v1/orders?status=shipped&limit=3";
      await warm([touched, untouched]);
      await node.close();
      await database.exec(`UPDATE users SET "lastName" = ? WHERE id = ?`, [
        "WhileStopped",
        user.id,
      ]);
      expect(await database.backlog()).toBe(1);
      node = await start();
      expect(await database.backlog()).toBe(0);
      expect((await read(touched)).body).toMatchObject({ lastName: "WhileStopped" });
      // Resumed, not emptied: the persistent tier still answers what the write left alone.
      expect((await read(untouched)).status).toMatch(/hit/);
    });

    it("a write whose node died before recording it is captured after the grace period", async () => {
      const user = await firstUser();
      const path = `/v1/users/${user.id}`;
      await warm([path]);
      // Another node's data API write, committed with its mark but never recorded.
      const dying = await database.fresh();
      await dying.update("users", String(user.id), { lastName: "Orphaned" }, { capture: "dead" });
      await dying.close();
      expect(await database.backlog()).toBe(1);
      await until(async () => (await database.backlog()) === 0, API_GRACE_MS + 5000);
      expect((await read(path)).body).toMatchObject({ lastName: "Orphaned" });
    }, 20_000);

    it("measures the lag from the database's record to applied", () => {
      const stats = node.capture?.stats();
      expect(stats?.applied).toBeGreaterThan(0);
      expect(stats?.lagP99).toBeDefined();
    });

    it("a statement that empties a table (TRUNCATE in PostgreSQL) empties what the cache shows", async () => {
      const paths = ["/v1/orders?limit=5", "/v1/orders?status=pending&limit=5"];
      await warm(paths);
      const truncate = isPostgresUrl(database.db) ? "TRUNCATE orders" : "DELETE FROM orders";
      await database.exec(truncate);
      await expectFresh(paths);
      expect((await read(paths[0]!)).body).toEqual([]);
    });

    it("is uninstalled with the CLI, and the node stops capturing", async () => {
      const { stdout } = await edgecache(["capture", "uninstall", "--db", database.db]);
      expect(stdout).toMatch(/not installed/);
      await until(() => node.capture?.installed === false);
    });
  });
}

captureSuite("SQLite", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-capture-"));
  const database = sqliteDatabase(dir);
  return { dir, database, drop: async () => rmSync(dir, { recursive: true, force: true }) };
});

const pg = await requirePostgres();
pg.describe("PostgreSQL", () => {
  let release: () => void = () => {};
  captureSuite("PostgreSQL", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgecache-capture-pg-"));
    // The database lives until the suite's afterAll calls drop.
    return new Promise((resolveOpen) => {
      void withPostgresDatabase(pg.url, "ec_capture", async (url, dropDb) => {
        const database = postgresDatabase(url);
        await new Promise<void>((done) => {
          release = done;
          resolveOpen({
            dir,
            database,
            drop: async () => {
              await dropDb();
              rmSync(dir, { recursive: true, force: true });
              release();
            },
          });
        });
      });
    });
  });
});

describe("change capture with two nodes on Redis over one SQLite file", () => {
  it("one node consumes the change table, both serve the new row, and both count it applied", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgecache-capture-cluster-"));
    const redis = {
      url: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
      prefix: `test:${randomId()}:`,
      leaseMs: 2000,
    };
    const options = { cwd: dir, demo: { users: 30, orders: 90 }, redis, adminToken: "t" };
    const nodes = [
      await createNodeEdgecache({ ...options, cacheFile: join(dir, "a.cache.db") }),
      await createNodeEdgecache({ ...options, cacheFile: join(dir, "b.cache.db") }),
    ];
    const database = sqliteDatabase(dir);
    const path = join(dir, "edgecache.db");
    try {
      await edgecache(["capture", "install", "--db", path]);
      await until(() => nodes.every((n) => n.capture?.installed === true));
      const users = (await (await nodes[0]!.app.request("/v1/users?limit=1")).json()) as {
        data: Row[];
      };
      const id = String(users.data[0]!.id);
      for (const node of nodes) {
        await node.app.request(`/v1/users/${id}`);
        const again = await node.app.request(`/v1/users/${id}`);
        expect(again.headers.get("cache-status")).toMatch(/hit/);
      }
      const raw = new Database(path);
      raw.prepare(`UPDATE users SET lastName = 'Both' WHERE id = ?`).run(id);
      raw.close();
      await until(async () => {
        const seen = await Promise.all(
          nodes.map(
            async (n) => ((await (await n.app.request(`/v1/users/${id}`)).json()) as Row).lastName,
          ),
        );
        return seen.every((name) => name === "Both");
      });
      // One of them read it from the change table; each applied it, from Redis, and counts
      // it, the node that does not lead capture included.
      await until(() => nodes.every((n) => (n.capture?.stats().applied ?? 0) > 0));
      expect(nodes.map((n) => n.capture?.stats().applied)).toEqual([1, 1]);
      // As /_edgecache/stats says, with which node reads the change table.
      const blocks = await Promise.all(
        nodes.map(
          async (n) =>
            (
              (await (
                await n.app.request("/_edgecache/stats", { headers: { authorization: "Bearer t" } })
              ).json()) as { capture: unknown }
            ).capture,
        ),
      );
      for (const block of blocks) expect(block).toMatchObject({ installed: true, applied: 1 });
      // And in each node's Prometheus metrics.
      for (const node of nodes) {
        const metrics = await node.app.request("/_edgecache/metrics", {
          headers: { authorization: "Bearer t" },
        });
        expect(await metrics.text()).toMatch(/^edgecache_captured_applied_total 1$/m);
      }
    } finally {
      for (const node of nodes) await node.close();
      await database.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
