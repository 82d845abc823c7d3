/**
 * The servers the fuzzer runs against, one per mode, each on 127.0.0.1 with a port of its
 * own, in a temp dir it removes on close: the data API over the SQLite demo, the proxy in
 * front of a local origin, a node of tenants, and the admin API with and without a token.
 * No vitest here: `bench/fuzz.ts` uses them too.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import { createNodeEdgecache } from "../../src/adapter/node/modes/data-api.ts";
import { createNodeProxy } from "../../src/adapter/node/modes/proxy.ts";
import { createTenantNode } from "../../src/adapter/node/tenants/dispatcher.ts";
import { openTenantState } from "../../src/adapter/node/tenants/state.ts";
import { startEchoOrigin } from "./echo-origin.ts";
import { adminBodies, rowBodies, type WireReply, wellFormed } from "./http-fuzz.ts";
import type { VariantTarget } from "./variants.ts";

export const MODES = ["data", "proxy", "tenants", "admin-token", "admin-loopback"] as const;
export type Mode = (typeof MODES)[number];

const TOKEN = "fuzz-admin-token";
const USER_COLUMNS = ["id", "firstName", "lastName", "email", "createdAt", "userId", "total"];
const ADMIN_PATHS = [
  "/_edgecache/",
  "/_edgecache",
  "/_edgecache/stats",
  "/_edgecache/stats?format=prometheus",
  "/_edgecache/metrics",
  "/_edgecache/changes",
  "/_edgecache/keys",
  "/_edgecache/keys?prefix=GET%20%2Fv1&tag=users",
  "/_edgecache/keys/GET%20%2Fv1%2Fusers",
  "/_edgecache/invalidate",
  "/_edgecache/purge",
  "/_edgecache/warm",
  "/_edgecache/rules",
  "/_edgecache/health",
];

/**
 * The one 5xx a proxy answers for a client's input: RFC 9111 5.2.1.7's 504 to a request that
 * says only-if-cached and finds nothing stored, which alone carries `detail=E_NOT_FOUND` in
 * its Cache-Status (a HEAD's has no body to say so). The origins here never fail, so no 502
 * and no other 504 is legitimate.
 */
function onlyIfCached(reply: WireReply): string | undefined {
  return reply.status === 504 && /\r\ncache-status: [^\r]*detail=E_NOT_FOUND/i.test(reply.text)
    ? "only-if-cached with nothing stored (RFC 9111 5.2.1.7)"
    : undefined;
}

export function startMode(mode: Mode): Promise<VariantTarget> {
  switch (mode) {
    case "data":
      return startData(mode, {});
    case "admin-token":
      return startData(mode, { adminToken: TOKEN });
    case "admin-loopback":
      return startData(mode, {});
    case "proxy":
      return startProxyMode();
    case "tenants":
      return startTenants();
  }
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "edgecache-fuzz-"));
}

/** Whether two rows are the same (the API's JSON against the database's row). */
function sameRow(api: unknown, row: Record<string, unknown>): boolean {
  return JSON.stringify(api) === JSON.stringify(row);
}

/** `GET path` answers the database's row now: 200 with it, or 404 once it is gone. */
async function checkRow(
  port: number,
  path: string,
  row: Record<string, unknown> | undefined,
  headers: Record<string, string> = {},
): Promise<void> {
  const reply = await wellFormed(port, path, headers);
  if (!row) {
    if (reply.status !== 404) throw new Error(`GET ${path}: ${reply.status}, expected 404`);
    return;
  }
  if (reply.status !== 200 || !sameRow(JSON.parse(reply.body), row)) {
    throw new Error(
      `GET ${path}: ${reply.status} ${reply.body.slice(0, 300)}, expected ${JSON.stringify(row)}`,
    );
  }
}

async function startData(mode: Mode, options: { adminToken?: string }): Promise<VariantTarget> {
  const cwd = tempDir();
  const node = await createNodeEdgecache({
    cwd,
    port: 0,
    hostname: "127.0.0.1",
    demo: { users: 50, orders: 150 },
    logLevel: "silent",
    ...options,
  });
  const { url } = await node.listen();
  const port = Number(new URL(url).port);
  const db = new Database(node.databasePath, { readonly: true });
  const ids = (
    db.prepare("SELECT id FROM users ORDER BY id LIMIT 5").all() as { id: string }[]
  ).map((r) => r.id);
  const orderIds = (db.prepare("SELECT id FROM orders LIMIT 3").all() as { id: string }[]).map(
    (r) => r.id,
  );
  const known = ids[0]!;
  const row = () =>
    db.prepare("SELECT * FROM users WHERE id = ?").get(known) as
      | Record<string, unknown>
      | undefined;
  const admin = mode !== "data";
  const dataPaths = [
    "/v1/users",
    "/v1/orders",
    "/v1/usersWithOrders",
    "/v1/nope",
    ...ids.map((id) => `/v1/users/${id}`),
    ...ids.map((id) => `/v1/usersWithOrders/${id}`),
    ...orderIds.map((id) => `/v1/orders/${id}`),
  ];
  const paths = fc.oneof(
    { weight: admin ? 1 : 6, arbitrary: fc.constantFrom(...dataPaths) },
    { weight: admin ? 6 : 1, arbitrary: fc.constantFrom(...ADMIN_PATHS) },
  );
  return {
    name: mode,
    port,
    ...(options.adminToken && { adminToken: options.adminToken }),
    loopbackData: true,
    allowed: () => undefined,
    paths,
    credentials: [`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `Bearer ${TOKEN}x`],
    bodies: admin ? adminBodies(port) : rowBodies(USER_COLUMNS),
    async check() {
      await checkRow(port, `/v1/users/${known}`, row());
      if (!admin) return;
      const stats = await wellFormed(
        port,
        "/_edgecache/stats",
        options.adminToken ? { Authorization: `Bearer ${options.adminToken}` } : {},
      );
      if (stats.status !== 200 || typeof JSON.parse(stats.body).hits !== "number") {
        throw new Error(`GET /_edgecache/stats: ${stats.status} ${stats.body.slice(0, 200)}`);
      }
      if (options.adminToken) {
        const refused = await wellFormed(port, "/_edgecache/stats");
        if (refused.status !== 401) throw new Error(`without the token: ${refused.status}`);
      }
    },
    async close() {
      db.close();
      await node.close();
      rmSync(cwd, { recursive: true, force: true });
    },
  };
}

async function startProxyMode(): Promise<VariantTarget> {
  const cwd = tempDir();
  const origin = await startEchoOrigin();
  const node = await createNodeProxy({
    origins: [{ origin: origin.url }],
    cwd,
    cacheFile: join(cwd, "proxy.cache.db"),
    port: 0,
    hostname: "127.0.0.1",
    logLevel: "silent",
  });
  const { url } = await node.listen();
  const port = Number(new URL(url).port);
  const pagePaths = [
    "/",
    "/page/a",
    "/page/b",
    "/vary/a",
    "/private/a",
    "/tagged/a",
    "/page/a?x=1",
  ];
  return {
    name: "proxy",
    port,
    origin,
    allowed: onlyIfCached,
    paths: fc.oneof(
      { weight: 5, arbitrary: fc.constantFrom(...pagePaths) },
      { weight: 1, arbitrary: fc.constantFrom(...ADMIN_PATHS) },
    ),
    credentials: ["Bearer x"],
    bodies: fc.oneof(adminBodies(port), fc.json()),
    async check() {
      for (const path of ["/page/known", "/page/a"]) {
        const reply = await wellFormed(port, path);
        if (reply.status !== 200 || reply.body !== `page ${path}`) {
          throw new Error(`GET ${path}: ${reply.status} ${reply.body.slice(0, 200)}`);
        }
      }
    },
    async close() {
      await node.close();
      await origin.close();
      rmSync(cwd, { recursive: true, force: true });
    },
  };
}

async function startTenants(): Promise<VariantTarget> {
  const dir = tempDir();
  const origin = await startEchoOrigin();
  const statePath = join(dir, "state.db");
  const state = await openTenantState(statePath);
  const dbPath = join(dir, "red.db");
  const setup = new Database(dbPath);
  setup.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
  setup.prepare("INSERT INTO items (id, name) VALUES (1, 'one'), (2, 'two'), (3, 'three')").run();
  setup.close();
  const red = await state.create({
    name: "red",
    source: { database: dbPath },
    readKey: true,
    publicHost: "red.example",
  });
  const blue = await state.create({ name: "blue", source: { origin: origin.url } });
  await state.close();
  const node = await createTenantNode({
    state: statePath,
    port: 0,
    hostname: "127.0.0.1",
    adminToken: TOKEN,
    logLevel: "silent",
  });
  const { url } = await node.listen();
  const port = Number(new URL(url).port);
  const db = new Database(dbPath, { readonly: true });
  const item = () =>
    db.prepare("SELECT * FROM items WHERE id = 1").get() as Record<string, unknown> | undefined;
  const keys = [red.key, red.readKey, blue.key].filter((k): k is string => k !== undefined);
  return {
    name: "tenants",
    port,
    origin,
    allowed: onlyIfCached,
    paths: fc.oneof(
      {
        weight: 5,
        arbitrary: fc.constantFrom(
          "/v1/items",
          "/v1/items/1",
          "/v1/items/2",
          "/v1/items/99",
          "/v1/nope",
          "/page/a",
          "/vary/a",
        ),
      },
      { weight: 2, arbitrary: fc.constantFrom(...ADMIN_PATHS) },
    ),
    credentials: [...keys.map((k) => `Bearer ${k}`), `Bearer ${TOKEN}`, "Bearer ek_wrong"],
    bodies: fc.oneof(rowBodies(["id", "name"]), adminBodies(port)),
    async check() {
      await checkRow(port, "/v1/items/1", item(), { "X-Edgecache-Key": red.key });
      const page = await wellFormed(port, "/page/known", { Authorization: `Bearer ${blue.key}` });
      if (page.status !== 200 || page.body !== "page /page/known") {
        throw new Error(`blue's GET /page/known: ${page.status} ${page.body.slice(0, 200)}`);
      }
      const none = await wellFormed(port, "/v1/items/1");
      if (none.status !== 401) throw new Error(`without a key: ${none.status}`);
    },
    async close() {
      db.close();
      await node.close();
      await origin.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
