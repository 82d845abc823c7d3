/**
 * Child process of bench/workload.ts and bench/cluster.ts: the data API over `--db` with
 * one invalidation strategy, counting the queries that reach the database. Prints
 * `{"url": ...}` once ready. `GET /_bench/stats` answers the query counts and the cache's
 * stats. With `--redis`, it is one node of a deployment: the change log and a shared tier
 * in Redis under `--prefix` (as `edgecache serve --redis` wires them), behind its own
 * memory tier; it is ready once it holds its lease.
 *
 *   node --import tsx bench/servers/workload-server.ts --db /tmp/x/bench.db --strategy edgecache
 *   ... --strategy edgecache --redis redis://127.0.0.1:6379 --prefix bench-1a2b:
 */
import { parseArgs } from "node:util";
import { Hono } from "hono";
import { joinCluster } from "../../src/adapter/node/cluster.ts";
import { startServer } from "../../src/adapter/node/server.ts";
import { createDataApi } from "../../src/app/data-api.ts";
import { Cache, type CacheOptions } from "../../src/core/cache.ts";
import type { Store } from "../../src/core/store.ts";
import { demoViews } from "../../src/demo/seed.ts";
import type { Source } from "../../src/sources/source.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { STRATEGIES, type Strategy } from "../workload/strategies.ts";
import { onParentGone } from "./lifecycle.ts";

const { values } = parseArgs({
  options: {
    db: { type: "string" },
    strategy: { type: "string" },
    redis: { type: "string" },
    prefix: { type: "string" },
  },
});
const strategy = values.strategy as Strategy;
if (!values.db || !STRATEGIES.includes(strategy)) {
  throw new Error(`[bench] [workload-server] expected --db and --strategy ${STRATEGIES.join("|")}`);
}
/** How long a node on Redis may take to get its first lease before the run gives up. */
const LEASE_WAIT_MS = 10_000;

/** A tier that keeps nothing: the no-cache baseline runs the same code with no hits. */
const nothing: Store = {
  name: "none",
  get: async () => undefined,
  set: async () => {},
  delete: async () => 0,
};

const MINUTE = 60_000;
const settings: Record<Strategy, Omit<CacheOptions, "tiers"> & { store: boolean }> = {
  "no-cache": { store: false, policy: "none", rehydrate: false },
  // What a CDN or Hyperdrive gives: entries live out their TTL, writes change nothing.
  "ttl-60s": { store: true, policy: "none", ttl: MINUTE, rehydrate: false },
  // What Drizzle's cache and hand-written KV layers do: a write drops its tables' entries.
  table: { store: true, policy: "table", rehydrate: false },
  edgecache: { store: true, policy: "exact", rehydrate: false },
  "edgecache-rehydrate": { store: true, policy: "exact" },
};
const { store, ...options } = settings[strategy];
if (values.redis !== undefined && !store) {
  throw new Error(
    `[bench] [workload-server] --redis: expected a caching strategy, got ${strategy}`,
  );
}
const cluster =
  values.redis === undefined
    ? undefined
    : await joinCluster({ url: values.redis, prefix: values.prefix }, `sqlite:${values.db}`);
const tiers = [store ? memoryStore() : nothing, ...(cluster?.shared ?? [])];
const cache = new Cache({ tiers, log: cluster?.log, ...options });

const counts = { reads: 0, writes: 0 };
const source = counting(sqliteSource({ path: values.db, views: demoViews }), counts);
const api = await createDataApi({ source, cache });

const app = new Hono();
app.get("/_bench/stats", (c) => c.json({ queries: { ...counts }, cache: cache.stats() }));
app.route("/", api.app);
const running = await startServer({ app, cache, port: 0 });
// Before its lease a node serves from the source and stores nothing: not what is measured.
const leaseBy = performance.now() + LEASE_WAIT_MS;
while (!cache.trusted) {
  if (performance.now() > leaseBy) throw new Error("[bench] [workload-server] no lease from Redis");
  await new Promise((r) => setTimeout(r, 10));
}

onParentGone(async () => {
  await running.close();
  await cache.drain();
  await source.close();
  // Leaves the log at once, so the other nodes' writes stop waiting for this one.
  await cluster?.close();
  process.exit(0);
});
process.stdout.write(`${JSON.stringify({ url: running.url })}\n`);

/** The source, counting each call that runs a statement: reads and writes. */
function counting(inner: Source, n: typeof counts): Source {
  return {
    name: inner.name,
    schema: () => inner.schema(),
    list: (resource, query) => {
      n.reads++;
      return inner.list(resource, query);
    },
    get: (resource, id) => {
      n.reads++;
      return inner.get(resource, id);
    },
    insert: (table, row) => {
      n.writes++;
      return inner.insert(table, row);
    },
    update: (table, id, row) => {
      n.writes++;
      return inner.update(table, id, row);
    },
    replace: (table, id, row) => {
      n.writes++;
      return inner.replace(table, id, row);
    },
    delete: (table, id) => {
      n.writes++;
      return inner.delete(table, id);
    },
    effects: (table, op) => inner.effects(table, op),
    close: () => inner.close(),
  };
}
