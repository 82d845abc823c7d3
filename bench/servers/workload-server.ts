/**
 * Child process of bench/workload.ts: the data API over `--db` with one invalidation
 * strategy, counting the queries that reach the database. Prints `{"url": ...}` once ready.
 * `GET /_bench/stats` answers the query counts and the cache's stats.
 *
 *   node --import tsx bench/servers/workload-server.ts --db /tmp/x/bench.db --strategy edgecache
 */
import { parseArgs } from "node:util";
import { Hono } from "hono";
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

const { values } = parseArgs({ options: { db: { type: "string" }, strategy: { type: "string" } } });
const strategy = values.strategy as Strategy;
if (!values.db || !STRATEGIES.includes(strategy)) {
  throw new Error(`[bench] [workload-server] expected --db and --strategy ${STRATEGIES.join("|")}`);
}

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
const cache = new Cache({ tiers: [store ? memoryStore() : nothing], ...options });

const counts = { reads: 0, writes: 0 };
const source = counting(sqliteSource({ path: values.db, views: demoViews }), counts);
const api = await createDataApi({ source, cache });

const app = new Hono();
app.get("/_bench/stats", (c) => c.json({ queries: { ...counts }, cache: cache.stats() }));
app.route("/", api.app);
const running = await startServer({ app, cache, port: 0 });

onParentGone(async () => {
  await running.close();
  await cache.drain();
  await source.close();
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
