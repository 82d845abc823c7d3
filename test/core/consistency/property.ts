import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createNodeEdgecache,
  type NodeEdgecache,
} from "../../../src/adapter/node/modes/data-api.ts";
import { resolveResource } from "../../../src/core/data/query.ts";
import { parseListQuery } from "../../../src/core/data/query-params.ts";
import { demoViews } from "../../../src/demo/seed.ts";
import type { Source } from "../../../src/sources/source.ts";
import { sqliteSource } from "../../../src/sources/sqlite.ts";

/**
 * The promise of the product, checked at random: thousands of reads and writes through
 * the data API, every read compared with a fresh query of the database. Zero stale reads,
 * and most cached entries a write cannot change survive it.
 */

/** A deployment under test: where reads and writes go, and what its caches did. */
export interface Deployment {
  databasePath: string;
  read(path: string): Promise<Response>;
  write(method: string, path: string, body?: unknown): Promise<Response>;
  /**
   * A write made directly in the database, around edgecache (change capture on): resolves
   * once it is committed. `settled` resolves once capture has applied what is pending.
   */
  bypass?: (write: DirectWrite) => Promise<void>;
  settled?: () => Promise<void>;
  /** A connection to the database that never goes through the cache (default: SQLite). */
  fresh?: () => Promise<Source>;
  /**
   * Stops a node cleanly and starts it again on the same files: what it stored before is
   * judged by the history it left (see LogStart.history).
   */
  restart?: () => Promise<void>;
  /** Entries patched in place, and entries registered, summed over the nodes. */
  patches(): Promise<number>;
  entries(): Promise<number>;
  close(): Promise<void>;
}

/** A row write made around edgecache, as a deployment's database takes it. */
export type DirectWrite =
  | { op: "insert"; table: string; values: Record<string, unknown> }
  | { op: "update"; table: string; id: string; values: Record<string, unknown> }
  | { op: "delete"; table: string; id: string };

const json = (body: unknown): RequestInit => ({
  headers: { "content-type": "application/json" },
  body: body === undefined ? undefined : JSON.stringify(body),
});

/** One node in this process: the single-process default, restarted now and then. */
export async function oneNode(dir: string): Promise<Deployment> {
  const options = { cwd: dir, demo: { users: 60, orders: 240 } };
  const nodes = [await createNodeEdgecache(options)];
  // Counters of the nodes stopped before: the totals span every life of the node.
  let earlier = 0;
  const deployment = nodesInProcess(nodes);
  return {
    ...deployment,
    async restart() {
      earlier += nodes[0]!.cache.stats().patches;
      await nodes[0]!.close();
      nodes[0] = await createNodeEdgecache(options);
    },
    patches: async () => earlier + (await deployment.patches()),
  };
}

/**
 * Nodes in this process over one database as one deployment: reads and writes go to any of
 * them at random; `close` runs after every node closed.
 */
export function nodesInProcess(nodes: NodeEdgecache[], close?: () => Promise<void>): Deployment {
  const pick = () => nodes[Math.floor(Math.random() * nodes.length)]!;
  const sum = (f: (n: NodeEdgecache) => number) => nodes.reduce((t, n) => t + f(n), 0);
  return {
    databasePath: nodes[0]!.databasePath,
    read: async (path) => pick().app.request(path),
    write: async (method, path, body) => pick().app.request(path, { method, ...json(body) }),
    patches: async () => sum((n) => n.cache.stats().patches),
    entries: async () => sum((n) => [...n.cache.keys()].length),
    async close() {
      for (const n of nodes) await n.close();
      await close?.();
    },
  };
}

/** Checks `deploy` with random reads and writes; `runs` property runs of 20 to 120 commands. */
export function consistencyProperty(
  name: string,
  deploy: (dir: string) => Promise<Deployment>,
  runs: number,
  minPatches: number,
): void {
  describe(`data API consistency (property): ${name}`, () => {
    let dir: string;
    let ec: Deployment;
    let fresh: Source;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "edgecache-prop-"));
      ec = await deploy(dir);
      // A second connection: what the database holds, never through the cache.
      fresh = ec.fresh
        ? await ec.fresh()
        : sqliteSource({ path: ec.databasePath, views: demoViews });
    }, 60_000);

    afterAll(async () => {
      await fresh?.close();
      await ec?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const schemaOf = () => fresh.schema();

    /** What the database says the response to `path` should hold. */
    async function expected(path: string): Promise<unknown> {
      const url = new URL(path, "http://x");
      const [, , name, id] = url.pathname.split("/");
      const resource = resolveResource(await schemaOf(), name!)!;
      if (id !== undefined) return (await fresh.get(resource, decodeURIComponent(id))) ?? null;
      return fresh.list(resource, parseListQuery(resource, url.searchParams));
    }

    async function ids(table: string): Promise<string[]> {
      const resource = resolveResource(await schemaOf(), table)!;
      const rows = await fresh.list(resource, {
        filters: [],
        sort: [{ column: "id", desc: false }],
        limit: 100_000,
        offset: 0,
      });
      return rows.map((r) => String(r.id));
    }

    const FIRST = ["Lane", "James", "Mary", "Zoe"];
    const LAST = ["Smith", "Allen", "Perez", "Young"];

    type Cmd =
      | { kind: "list"; path: string }
      | { kind: "item"; resource: string; pick: number }
      | {
          kind: "patchUser";
          pick: number;
          firstName?: string;
          lastName?: string;
          createdAt?: string;
        }
      | { kind: "postUser"; firstName: string; lastName: string }
      | { kind: "deleteUser"; pick: number }
      | { kind: "postOrder"; pick: number; total: number }
      | { kind: "patchOrder"; pick: number; total?: number; userPick?: number; status?: string }
      | { kind: "deleteOrder"; pick: number }
      | { kind: "restart" };

    // Offsets of whole pages as well as odd ones: a write that shifts a page is patched from
    // the page before or after it when that is cached.
    const window = fc
      .tuple(fc.constantFrom(2, 5, 20), fc.constantFrom(0, 0, 1, 2, -3))
      .map(([limit, page]) => ({ limit, offset: page < 0 ? -page : page * limit }));
    const listPath = fc.oneof(
      fc
        .tuple(fc.constantFrom(...FIRST), window)
        .map(([f, w]) => `/v1/users?firstName=${f}&limit=${w.limit}&offset=${w.offset}`),
      fc
        .tuple(fc.constantFrom("1", "2", "3"), window)
        .map(([p, w]) => `/v1/users?id=${p}*&sort=lastName&limit=${w.limit}&offset=${w.offset}`),
      fc
        .tuple(fc.constantFrom("-createdAt", "lastName,-firstName", "email"), window)
        .map(([s, w]) => `/v1/users?sort=${s}&limit=${w.limit}&offset=${w.offset}`),
      fc
        .tuple(fc.constantFrom("2024-06-01", "2025-01-01"), window)
        .map(([d, w]) => `/v1/users?createdAt[gte]=${d}&sort=createdAt&limit=${w.limit}`),
      fc
        .tuple(fc.integer({ min: 0, max: 400 }), window)
        .map(
          ([t, w]) => `/v1/orders?total[gte]=${t}&sort=-total&limit=${w.limit}&offset=${w.offset}`,
        ),
      fc
        .tuple(fc.constantFrom("paid", "pending"), window)
        .map(([s, w]) => `/v1/orders?status=${s}&limit=${w.limit}&offset=${w.offset}`),
      fc
        .tuple(fc.constantFrom(...FIRST), window)
        .map(([f, w]) => `/v1/usersWithOrders?firstName=${f}&limit=${w.limit}&offset=${w.offset}`),
    );
    const cmd: fc.Arbitrary<Cmd> = fc.oneof(
      { weight: 24, arbitrary: listPath.map((path) => ({ kind: "list" as const, path })) },
      {
        weight: 12,
        arbitrary: fc.record({
          kind: fc.constant("item" as const),
          resource: fc.constantFrom("users", "orders", "usersWithOrders"),
          pick: fc.nat(),
        }),
      },
      {
        weight: 2,
        arbitrary: fc.record(
          {
            kind: fc.constant("patchUser" as const),
            pick: fc.nat(),
            firstName: fc.constantFrom(...FIRST),
            lastName: fc.constantFrom(...LAST),
            createdAt: fc.constantFrom("2024-03-01T00:00:00Z", "2025-06-01T00:00:00Z"),
          },
          { requiredKeys: ["kind", "pick"] },
        ),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant("postUser" as const),
          firstName: fc.constantFrom(...FIRST),
          lastName: fc.constantFrom(...LAST),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({ kind: fc.constant("deleteUser" as const), pick: fc.nat() }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant("postOrder" as const),
          pick: fc.nat(),
          total: fc.integer({ min: 1, max: 500 }),
        }),
      },
      {
        weight: 2,
        arbitrary: fc.record(
          {
            kind: fc.constant("patchOrder" as const),
            pick: fc.nat(),
            total: fc.integer({ min: 1, max: 500 }),
            userPick: fc.nat(),
            status: fc.constantFrom("paid", "pending", "shipped"),
          },
          { requiredKeys: ["kind", "pick"] },
        ),
      },
      {
        weight: 1,
        arbitrary: fc.record({ kind: fc.constant("deleteOrder" as const), pick: fc.nat() }),
      },
      { weight: 1, arbitrary: fc.constant({ kind: "restart" as const }) },
    );

    it("every read through the cache equals a fresh query; writes keep what they cannot change", async () => {
      const totals = {
        reads: 0,
        hits: 0,
        stale: 0,
        writes: 0,
        bypassed: 0,
        cachedBefore: 0,
        survived: 0,
        restarts: 0,
        firstReads: 0,
        fromFile: 0,
      };
      // Paths read since the last restart: the first read of one finds memory empty, so a
      // hit is an entry stored before the restart, served from the cache file.
      let sinceRestart: Set<string> | undefined;
      let seq = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(cmd, { minLength: 20, maxLength: 120 }), async (cmds) => {
          for (const c of cmds) {
            if (c.kind === "restart") {
              if (!ec.restart) continue;
              await ec.restart();
              totals.restarts++;
              sinceRestart = new Set();
              continue;
            }
            if (c.kind === "list" || c.kind === "item") {
              let path: string;
              if (c.kind === "list") path = c.path;
              else {
                const pool = await ids(c.resource === "orders" ? "orders" : "users");
                // Now and then an id that does not exist: cached 404s must be right too.
                const id = c.pick % 7 === 0 ? `missing-${c.pick % 3}` : pool[c.pick % pool.length];
                path = `/v1/${c.resource}/${encodeURIComponent(id ?? "none")}`;
              }
              const res = await ec.read(path);
              const body = (await res.json()) as { data?: unknown };
              const want = await expected(path);
              const got = c.kind === "list" ? body.data : res.status === 404 ? null : body;
              totals.reads++;
              const hit = res.headers.get("cache-status")?.includes("hit") === true;
              if (hit) totals.hits++;
              if (sinceRestart && !sinceRestart.has(path)) {
                sinceRestart.add(path);
                totals.firstReads++;
                if (hit) totals.fromFile++;
              }
              if (JSON.stringify(got) !== JSON.stringify(want)) {
                totals.stale++;
                expect({ path, got, cacheStatus: res.headers.get("cache-status") }).toEqual({
                  path,
                  got: want,
                  cacheStatus: res.headers.get("cache-status"),
                });
              }
              continue;
            }
            const before = await ec.entries();
            const users = await ids("users");
            const orders = await ids("orders");
            const user = users[(c as { pick: number }).pick % Math.max(1, users.length)];
            const order = orders[(c as { pick: number }).pick % Math.max(1, orders.length)];
            let res: Response | undefined;
            // With change capture, every other write goes around edgecache, straight into
            // the database; reads after it must be right once capture has applied it.
            const around =
              ec.bypass !== undefined && (c as { pick?: number }).pick !== undefined
                ? ((c as { pick: number }).pick + seq) % 2 === 0
                : false;
            const send = async (method: string, path: string, body?: unknown) => {
              if (!around) return ec.write(method, path, body);
              const [, , table, id] = path.split("/");
              const values = (body ?? {}) as Record<string, unknown>;
              const write: DirectWrite =
                method === "POST"
                  ? { op: "insert", table: table!, values }
                  : method === "DELETE"
                    ? { op: "delete", table: table!, id: decodeURIComponent(id!) }
                    : { op: "update", table: table!, id: decodeURIComponent(id!), values };
              await ec.bypass!(write);
              await ec.settled!();
              totals.bypassed++;
              return new Response(null, { status: 204 });
            };
            switch (c.kind) {
              case "patchUser":
                if (user) {
                  const { kind: _k, pick: _p, ...values } = c;
                  res = await send("PATCH", `/v1/users/${user}`, values);
                }
                break;
              case "postUser":
                seq++;
                res = await send("POST", "/v1/users", {
                  id: `${900 + seq}-new`,
                  firstName: c.firstName,
                  lastName: c.lastName,
                  email: `new${seq}.${Date.now()}@example.com`,
                  createdAt: "2025-02-02T00:00:00Z",
                });
                break;
              case "deleteUser":
                if (user && users.length > 20) res = await send("DELETE", `/v1/users/${user}`);
                break;
              case "postOrder":
                seq++;
                if (user) {
                  res = await send("POST", "/v1/orders", {
                    id: `o-new-${seq}-${Date.now()}`,
                    userId: user,
                    total: c.total,
                    status: "pending",
                    createdAt: "2025-02-02T00:00:00Z",
                  });
                }
                break;
              case "patchOrder":
                if (order) {
                  const values: Record<string, unknown> = {};
                  if (c.total !== undefined) values.total = c.total;
                  if (c.status !== undefined) values.status = c.status;
                  if (c.userPick !== undefined) values.userId = users[c.userPick % users.length];
                  res = await send("PATCH", `/v1/orders/${order}`, values);
                }
                break;
              case "deleteOrder":
                if (order) res = await send("DELETE", `/v1/orders/${order}`);
                break;
            }
            if (res) {
              expect(res.status, await res.clone().text()).toBeLessThan(300);
              totals.writes++;
              totals.cachedBefore += before;
              totals.survived += await ec.entries();
            }
          }
        }),
        { numRuns: runs },
      );
      const precision = totals.survived / Math.max(1, totals.cachedBefore);
      const patches = await ec.patches();
      console.log(
        `[property ${name}] reads=${totals.reads} hits=${totals.hits} writes=${totals.writes} ` +
          `around=${totals.bypassed} ` +
          `stale=${totals.stale} entries kept per write=${(precision * 100).toFixed(1)}% ` +
          `patched=${patches} restarts=${totals.restarts} ` +
          `first reads after a restart=${totals.firstReads} served from the file=${totals.fromFile}`,
      );
      expect(totals.stale).toBe(0);
      // Entries stored before a restart are served after it, checked like the rest.
      // Most first reads are of paths never cached before, so this is far from all of them;
      // judged by table (before entries were judged by what concerns them) it was under 1%.
      if (ec.restart) expect(totals.fromFile).toBeGreaterThan(totals.firstReads / 10);
      // Writes around the API were among them: about a third are (every other write that
      // names a row; creates do not), so a quarter failed now and then by chance.
      if (ec.bypass) expect(totals.bypassed).toBeGreaterThan(totals.writes / 8);
      // Patches in place were among the reads checked (they are answered as hits).
      expect(patches).toBeGreaterThanOrEqual(minPatches);
      // A run has 20 to 120 commands, about four in five of them reads.
      expect(totals.reads).toBeGreaterThan(runs * 10);
      expect(totals.hits).toBeGreaterThan(0);
      // Row- and predicate-level invalidation keeps most of the cache across a write.
      expect(precision).toBeGreaterThan(0.5);
    }, 300_000);
  });
}
