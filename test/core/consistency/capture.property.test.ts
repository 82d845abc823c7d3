import { join } from "node:path";
import Database from "better-sqlite3";
import pgLib from "pg";
import postgres from "postgres";
import {
  createNodeEdgecache,
  type NodeEdgecache,
} from "../../../src/adapter/node/modes/data-api.ts";
import { createDataApi } from "../../../src/app/data-api.ts";
import { Cache } from "../../../src/core/cache/index.ts";
import { followCapture } from "../../../src/core/capture-feed.ts";
import { localChangeLog } from "../../../src/core/change-log/in-process.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { demoViews } from "../../../src/demo/seed.ts";
import { seedPostgresDemo } from "../../../src/demo/seed-postgres.ts";
import { postgresSource } from "../../../src/sources/postgres.ts";
import { sqliteSource } from "../../../src/sources/sqlite.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { quiet, until } from "../../helpers/cluster.ts";
import { withPostgresDatabase } from "../../helpers/postgres.ts";
import { requirePostgres } from "../../helpers/services.ts";
import { consistencyProperty, type Deployment, type DirectWrite } from "./property.ts";

/**
 * The consistency property with change capture installed and half of the writes made
 * directly in the database (another connection, raw SQL): zero stale reads once capture
 * has applied them, on SQLite and on PostgreSQL.
 */

const json = (body: unknown): RequestInit => ({
  headers: { "content-type": "application/json" },
  body: body === undefined ? undefined : JSON.stringify(body),
});

function statement(write: DirectWrite, placeholder: (n: number) => string) {
  const q = (name: string) => `"${name}"`;
  switch (write.op) {
    case "insert": {
      const names = Object.keys(write.values);
      return {
        sql: `INSERT INTO ${q(write.table)} (${names.map(q).join(", ")}) VALUES (${names.map((_, i) => placeholder(i + 1)).join(", ")})`,
        params: Object.values(write.values),
      };
    }
    case "update": {
      const names = Object.keys(write.values);
      if (names.length === 0) return undefined;
      return {
        sql: `UPDATE ${q(write.table)} SET ${names.map((n, i) => `${q(n)} = ${placeholder(i + 1)}`).join(", ")} WHERE id = ${placeholder(names.length + 1)}`,
        params: [...Object.values(write.values), write.id],
      };
    }
    case "delete":
      return {
        sql: `DELETE FROM ${q(write.table)} WHERE id = ${placeholder(1)}`,
        params: [write.id],
      };
  }
}

async function sqliteCaptured(dir: string): Promise<Deployment> {
  const ec = await createNodeEdgecache({ cwd: dir, demo: { users: 60, orders: 240 } });
  const installer = sqliteSource({ path: ec.databasePath });
  await installer.installCapture();
  await installer.close();
  await until(() => ec.capture?.installed === true);
  const raw = new Database(ec.databasePath);
  raw.pragma("foreign_keys = ON"); // as the data API's connection: deletes cascade
  const pending = raw.prepare("SELECT 1 FROM _edgecache_changes LIMIT 1");
  return {
    databasePath: ec.databasePath,
    read: async (path) => ec.app.request(path),
    write: async (method, path, body) => ec.app.request(path, { method, ...json(body) }),
    async bypass(write) {
      const s = statement(write, () => "?");
      if (s) raw.prepare(s.sql).run(...(s.params as unknown[]));
    },
    settled: () => until(() => pending.get() === undefined),
    patches: async () => ec.cache.stats().patches,
    entries: async () => [...ec.cache.keys()].length,
    async close() {
      raw.close();
      await ec.close();
    },
  };
}

consistencyProperty(
  "one node, half of the writes around it (SQLite capture)",
  sqliteCaptured,
  25,
  10,
);

/**
 * Capture installed on a PostgreSQL database, once every node has picked it up, and the
 * pieces of a deployment that go around edgecache: raw SQL on a connection of its own.
 */
async function postgresAround(url: string, nodes: NodeEdgecache[]) {
  const installer = await postgresSource({ url, max: 1 });
  await installer.installCapture();
  await installer.close();
  await until(() => nodes.every((n) => n.capture?.installed === true));
  const raw = postgres(url, { max: 1, onnotice: () => {} });
  return {
    databasePath: url,
    fresh: () => postgresSource({ url, max: 2, views: demoViews }),
    async bypass(write: DirectWrite) {
      const s = statement(write, (n) => `$${n}`);
      if (s) await raw.unsafe(s.sql, s.params as never[]);
    },
    settled: () =>
      until(async () => (await raw.unsafe("SELECT 1 FROM edgecache.changes LIMIT 1")).length === 0),
    end: () => raw.end(),
  };
}

const pg = await requirePostgres();
const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

pg.describe("capture on PostgreSQL", () => {
  consistencyProperty(
    "one node on PostgreSQL, half of the writes around it (capture)",
    (dir) =>
      withPostgresDatabase(pg.url, "ec_capture_prop", async (url, drop) => {
        const ec = await createNodeEdgecache({
          cwd: dir,
          demoDatabase: url,
          demo: { users: 60, orders: 240 },
        });
        const { end, ...around } = await postgresAround(url, [ec]);
        return {
          ...around,
          read: async (path) => ec.app.request(path),
          write: async (method, path, body) => ec.app.request(path, { method, ...json(body) }),
          patches: async () => ec.cache.stats().patches,
          entries: async () => [...ec.cache.keys()].length,
          async close() {
            await end();
            await ec.close();
            await drop();
          },
        };
      }),
    15,
    5,
  );

  consistencyProperty(
    "two nodes on Redis and PostgreSQL, half of the writes around them (capture)",
    (dir) =>
      withPostgresDatabase(pg.url, "ec_capture_cluster", async (url, drop) => {
        const redis = { url: REDIS, prefix: `test:${randomId()}:`, leaseMs: 2000 };
        const options = { cwd: dir, demoDatabase: url, demo: { users: 60, orders: 240 }, redis };
        const nodes = [
          await createNodeEdgecache({ ...options, cacheFile: join(dir, "a.cache.db") }),
          await createNodeEdgecache({ ...options, cacheFile: join(dir, "b.cache.db") }),
        ];
        const { end, ...around } = await postgresAround(url, nodes);
        const pick = () => nodes[Math.floor(Math.random() * nodes.length)]!;
        const sum = (f: (n: (typeof nodes)[number]) => number) =>
          nodes.reduce((t, n) => t + f(n), 0);
        return {
          ...around,
          read: async (path) => pick().app.request(path),
          write: async (method, path, body) => pick().app.request(path, { method, ...json(body) }),
          patches: async () => sum((n) => n.cache.stats().patches),
          entries: async () => sum((n) => [...n.cache.keys()].length),
          async close() {
            await end();
            for (const n of nodes) await n.close();
            await drop();
          },
        };
      }),
    10,
    3,
  );

  consistencyProperty(
    "the data API on a node-postgres Pool (library), half of the writes around it (capture)",
    (_dir) =>
      withPostgresDatabase(pg.url, "ec_capture_nodepg", async (url, drop) => {
        const seeder = postgres(url, { max: 1, onnotice: () => {} });
        await seedPostgresDemo(seeder, { users: 60, orders: 240 });
        await seeder.end();
        const pool = new pgLib.Pool({ connectionString: url, max: 4 });
        pool.on("error", () => {});
        const source = await postgresSource({ client: pool, views: demoViews });
        await source.installCapture();
        const feed = source.captureFeed();
        const cache = new Cache({
          tiers: [memoryStore()],
          log: localChangeLog({ outside: { active: () => true, pending: () => feed.pending() } }),
          logger: quiet,
        });
        const api = await createDataApi({ source, cache });
        const follower = followCapture(cache, feed, quiet);
        await follower.caughtUp;
        await until(() => follower.installed && follower.leading);
        const { end, ...around } = await postgresAround(url, []);
        return {
          ...around,
          read: async (path) => api.app.request(path),
          write: async (method, path, body) => api.app.request(path, { method, ...json(body) }),
          patches: async () => cache.stats().patches,
          entries: async () => [...cache.keys()].length,
          async close() {
            await end();
            await follower.close();
            api.detach();
            await source.close();
            await pool.end();
            await drop();
          },
        };
      }),
    10,
    5,
  );
});
