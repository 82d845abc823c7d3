/**
 * Child process of bench/workload.ts and bench/cluster.ts: the data API over `--db` with
 * one invalidation strategy, counting the queries that reach the database. Prints
 * `{"url": ...}` once ready. `GET /_bench/stats` answers the query counts and the cache's
 * stats; `GET /_bench/cpu` the process's CPU time (`?drain`: once background work is
 * done; `?threads`: its main thread's too, where Linux tells it, and its garbage
 * collections since the first such ask), and
 * `POST /_bench/profile[?stop=file]` starts and writes a V8 CPU profile (bench:writes).
 * With `--redis`, it is one node of a deployment: the change log and a shared tier in Redis
 * under `--prefix` (as `edgecache serve --redis` wires them), behind its own memory tier;
 * it is ready once it holds its lease. With `--cache-file`, a cache file (the SQLite tier,
 * locked as `edgecache serve` opens it) sits between the memory tier and Redis, as
 * `edgecache serve` puts one beside its database by default.
 *
 * `--db` takes a SQLite path or a postgres:// URL; with `--capture`, change capture's
 * follower runs (installed by the driver), as `edgecache serve` runs it.
 *
 *   node --import tsx bench/servers/workload-server.ts --db /tmp/x/bench.db --strategy edgecache
 *   ... --strategy edgecache --redis redis://127.0.0.1:6379 --prefix bench-1a2b:
 *   ... --strategy edgecache-rehydrate --cache-file /tmp/x/bench.cache.db
 *   ... --db postgres://postgres@127.0.0.1:5432/bench --strategy edgecache --capture
 *   ... --strategy no-cache --max-age 60   # an origin for a shared cache (bench:learn)
 */
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import { parseArgs } from "node:util";
import { Hono } from "hono";
import { joinCluster } from "../../src/adapter/node/cluster.ts";
import { startServer } from "../../src/adapter/node/server/server.ts";
import { createDataApi } from "../../src/app/data-api.ts";
import { Cache, type CacheOptions } from "../../src/core/cache/index.ts";
import {
  type CaptureFollower,
  type CapturingSource,
  followCapture,
} from "../../src/core/capture-feed.ts";
import { localChangeLog } from "../../src/core/change-log/in-process.ts";
import { withOutsideWrites } from "../../src/core/change-log/outside-writes.ts";
import type { Store } from "../../src/core/store.ts";
import { demoViews } from "../../src/demo/seed.ts";
import { isPostgresUrl, postgresSource } from "../../src/sources/postgres.ts";
import type { Source } from "../../src/sources/source.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { sqliteStore } from "../../src/stores/sqlite.ts";
import { gcSoFar, threadCpuUs } from "../lib/processes.ts";
import { STRATEGIES, type Strategy } from "../workload/strategies.ts";
import { onParentGone } from "./lifecycle.ts";

const { values } = parseArgs({
  options: {
    db: { type: "string" },
    strategy: { type: "string" },
    redis: { type: "string" },
    prefix: { type: "string" },
    capture: { type: "boolean" },
    "cache-file": { type: "string" },
    "reload-lists": { type: "boolean" },
    "max-age": { type: "string" },
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
    : await joinCluster({ url: values.redis, prefix: values.prefix }, `db:${values.db}`);
const cacheFile = values["cache-file"];
if (cacheFile !== undefined && !store) {
  throw new Error(
    `[bench] [workload-server] --cache-file: expected a caching strategy, got ${strategy}`,
  );
}
// As src/adapter/node/modes/cache-file.ts opens it: repaired if damaged, locked for this node.
const file =
  cacheFile === undefined ? [] : [sqliteStore({ path: cacheFile, repair: true, exclusive: true })];
const tiers = [store ? memoryStore() : nothing, ...file, ...(cluster?.shared ?? [])];
const counts = { reads: 0, writes: 0 };
const opened = isPostgresUrl(values.db)
  ? await postgresSource({ url: values.db, views: demoViews })
  : sqliteSource({ path: values.db, views: demoViews });
const source = counting(opened, counts);
const feed = values.capture ? opened.captureFeed() : undefined;
let follower: CaptureFollower | undefined;
const outside = feed && {
  active: () => follower?.installed ?? true,
  pending: () => feed.pending(),
};
const log = cluster
  ? outside
    ? withOutsideWrites(cluster.log, outside)
    : cluster.log
  : localChangeLog({ outside });
const cache = new Cache({
  tiers,
  log,
  // As edgecache serve passes it (src/adapter/node/modes/assembly.ts).
  sha256: (data) => createHash("sha256").update(data).digest("hex"),
  ...options,
  // As `redis.reloadLists` sets it for `edgecache serve`.
  ...(values["reload-lists"] && options.rehydrate !== false && { rehydrate: { lists: true } }),
});
const api = await createDataApi({ source, cache });
if (feed) {
  follower = followCapture(cache, feed);
  await follower.caughtUp;
}

const app = new Hono();
// As an origin behind a shared cache (bench:learn): answers that caches may keep this long,
// a row's absence (404) as well as rows.
const maxAge = values["max-age"];
if (maxAge !== undefined) {
  app.use(async (c, next) => {
    await next();
    if (c.req.method === "GET" && (c.res.status === 200 || c.res.status === 404)) {
      c.res.headers.set("cache-control", `public, max-age=${Number(maxAge)}`);
    }
  });
}
app.get("/_bench/stats", (c) =>
  c.json({ queries: { ...counts }, cache: cache.stats(), capture: follower?.stats() }),
);
// bench:writes: this process's CPU (user + system, us) once background work (rehydration)
// is done, so a write's CPU can be told from the reads around it.
app.get("/_bench/cpu", async (c) => {
  if (c.req.query("drain") !== undefined) await cache.drain();
  if (profiler && writeFrom !== undefined) {
    writeWindows.push([writeFrom[0], monotonicUs(), writeFrom[1]]);
    writeFrom = undefined;
  }
  const { user, system } = process.cpuUsage();
  const us = user + system;
  // The main thread's alone: the rest of the process's is V8's threads (the optimizing
  // compiler, the garbage collector's helpers) and libuv's.
  return c.json(
    c.req.query("threads") === undefined
      ? { us }
      : { us, mainUs: threadCpuUs(), gc: await gcSoFar() },
  );
});
// bench:writes --cpu-prof: V8's CPU profile of the measured part alone (not the warm-up),
// and beside it (`.writes.json`) each write's window on the profile's clock, from its
// arrival to the next CPU ask (after its background work), with its method and path: the
// driver sums up the writes alone from it.
let profiler: Session | undefined;
let writeWindows: [number, number, string][] = [];
let writeFrom: [number, string] | undefined;
app.use(async (c, next) => {
  if (profiler && c.req.method !== "GET" && !c.req.path.startsWith("/_bench/")) {
    writeFrom = [monotonicUs(), `${c.req.method} ${c.req.path}`];
  }
  await next();
});
app.post("/_bench/profile", async (c) => {
  const to = c.req.query("stop");
  if (to === undefined) {
    profiler = new Session();
    profiler.connect();
    await post(profiler, "Profiler.enable");
    await post(profiler, "Profiler.setSamplingInterval", { interval: 100 });
    await post(profiler, "Profiler.start");
    writeWindows = [];
  } else if (profiler) {
    const { profile } = (await post(profiler, "Profiler.stop")) as { profile: unknown };
    writeFileSync(to, JSON.stringify(profile));
    writeFileSync(to.replace(/\.cpuprofile$/, ".writes.json"), JSON.stringify(writeWindows));
    profiler.disconnect();
    profiler = undefined;
  }
  return c.body(null, 204);
});
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
  await follower?.close();
  await source.close();
  // Leaves the log at once, so the other nodes' writes stop waiting for this one.
  await cluster?.close();
  for (const tier of file) await tier.close();
  process.exit(0);
});
process.stdout.write(`${JSON.stringify({ url: running.url })}\n`);

/**
 * The source, counting each call that runs a statement: reads and writes. Change capture's
 * methods pass through, so the data API marks its writes as it does without the count.
 */
function counting(inner: Source & CapturingSource, n: typeof counts): Source & CapturingSource {
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
    insert: (table, row, o) => {
      n.writes++;
      return inner.insert(table, row, o);
    },
    update: (table, id, row, o) => {
      n.writes++;
      return inner.update(table, id, row, o);
    },
    replace: (table, id, row, o) => {
      n.writes++;
      return inner.replace(table, id, row, o);
    },
    delete: (table, id, o) => {
      n.writes++;
      return inner.delete(table, id, o);
    },
    effects: (table, op) => inner.effects(table, op),
    captureStatus: () => inner.captureStatus(),
    installCapture: () => inner.installCapture(),
    uninstallCapture: () => inner.uninstallCapture(),
    recorded: (mark) => inner.recorded(mark),
    captureFeed: () => inner.captureFeed(),
    close: () => inner.close(),
  };
}

/** V8's profile clock (CLOCK_MONOTONIC, us), as `process.hrtime` reads it. */
function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function post(session: Session, method: string, params?: object): Promise<unknown> {
  return new Promise((resolve, reject) =>
    session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))),
  );
}
