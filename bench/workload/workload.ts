/**
 * One workload benchmark: a generated database, then per write ratio one request sequence,
 * run against the data API once per strategy, each on a fresh copy of the database and a
 * fresh server process. Caching strategies are warmed first (each read of the sequence
 * once on each node that serves it), so the figures are a long-running cache's, not a cold
 * start's. The pieces of a run
 * (`runSetup`) also run several nodes sharing Redis, for bench/cluster/.
 */
import { copyFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import Database from "better-sqlite3";
import postgres from "postgres";
import type { CacheStats } from "../../src/core/stats.ts";
import { seedDemo } from "../../src/demo/seed.ts";
import { seedPostgresDemo } from "../../src/demo/seed-postgres.ts";
import { DEFAULT_LEASE_MS } from "../../src/log/redis/index.ts";
import {
  benchServer,
  cpuSeconds,
  makeTmpDir,
  type Server,
  startServer,
  stopAll,
} from "../lib/processes.ts";
import type { BenchRedis } from "../lib/redis.ts";
import { generateSequence, type InitialData, type Op } from "./generate.ts";
import { StaleOracle } from "./oracle.ts";
import type { WorkloadRecord } from "./report.ts";
import {
  type AroundWrites,
  Client,
  type RunOutcome,
  runSequence,
  runSequenceAt,
  warm,
} from "./run.ts";
import type { Strategy } from "./strategies.ts";

export interface WorkloadOptions {
  users: number;
  orders: number;
  /** Requests per strategy and ratio (the measured part, after warming). */
  requests: number;
  writeRatios: number[];
  strategies: readonly Strategy[];
  /** Concurrent clients, each with its keep-alive connection. */
  connections: number;
  seed: number;
  /** The database behind the data API (sqlite by default). */
  source?: SourceName;
  log?: (line: string) => void;
}

export const SOURCES = ["sqlite", "postgres"] as const;
export type SourceName = (typeof SOURCES)[number];
/** The PostgreSQL server the benchmarks make their databases on. */
export const BENCH_PG =
  process.env.EDGECACHE_BENCH_PG ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** Hits sent one at a time after each run: a hit's latency without queueing behind others. */
export const PROBE_REQUESTS = 400;

export interface ServerStats {
  queries: { reads: number; writes: number };
  cache: {
    hits: number;
    misses: number;
    staleHits: number;
    bypasses: number;
    refused: number;
    replayed: number;
    awaited: number;
    resets: number;
    invalidations: number;
    rehydrations: number;
    patches: number;
    tiers: { name: string; hits: number }[];
    /** What the node sent to Redis, by kind of work (absent from older servers' stats). */
    redis?: CacheStats["redis"];
  };
  /** Change capture's follower, with `--capture`: from the database's record to applied. */
  capture?: { applied: number; lagP50?: number; lagP99?: number };
}

/**
 * What one run starts: `nodes` servers of one strategy over one database file; with
 * `redis`, nodes of one deployment sharing the change log and a tier in that Redis.
 */
export interface Setup {
  strategy: Strategy;
  nodes: number;
  redis?: { server: BenchRedis; prefix: string; reloadLists?: boolean };
  /** The nodes follow change capture (installed in the database by the driver). */
  capture?: boolean;
  /** Some writes go around the data API (see AroundWrites). */
  around?: AroundWrites;
  /**
   * Per node, the URLs its links take instead of the setup's own: Redis and the database
   * through a relay of its own (bench/lib/relay.ts), for nodes at a distance.
   */
  links?: { redis?: string; db?: string }[];
  /**
   * The checkout whose workload server the nodes run (bench:regions --against); this one
   * by default.
   */
  root?: string;
  /**
   * A path prefix: each node's V8 CPU profile of the sequence alone is written to
   * `<profile>-node<i>.cpuprofile` (bench:cluster --cpu-prof).
   */
  profile?: string;
}

export interface SetupRun {
  outcome: RunOutcome;
  /** Each node's stats before and after the sequence. */
  before: ServerStats[];
  after: ServerStats[];
  /** Hits sent one at a time after the sequence (ms). */
  probe: number[];
  /**
   * CPU seconds spent during the sequence by the nodes, by this driver (the clients and
   * the oracle) and by the Redis server (undefined without Redis); NaN without /proc.
   */
  cpu: { nodes: number; driver: number; redis: number | undefined };
}

export async function runWorkload(options: WorkloadOptions): Promise<{
  records: WorkloadRecord[];
  stale: { strategy: Strategy; writeRatio: number; samples: RunOutcome["staleSamples"] }[];
}> {
  const log = options.log ?? (() => {});
  const { template, data } = prepareDatabase(options, log);

  const records: WorkloadRecord[] = [];
  const stale: { strategy: Strategy; writeRatio: number; samples: RunOutcome["staleSamples"] }[] =
    [];
  for (const [writeRatio, ops] of sequences(data, options)) {
    for (const strategy of options.strategies) {
      await onFreshDatabase(options.source ?? "sqlite", template, strategy, options, async (db) => {
        const setup = { strategy, nodes: 1 };
        const run = await runSetup(db, setup, ops, data, options.connections);
        const record = toRecord(strategy, writeRatio, run);
        records.push(record);
        if (run.outcome.staleSamples.length > 0) {
          stale.push({ strategy, writeRatio, samples: run.outcome.staleSamples });
        }
        log(summaryLine(`${pctLabel(writeRatio)} writes, ${strategy}`, record));
      });
    }
  }
  addQueriesPerWrite(records);
  return { records, stale };
}

/** Each write ratio's request sequence over the same data (the same seed). */
export function* sequences(
  data: InitialData,
  options: Pick<WorkloadOptions, "writeRatios" | "requests" | "seed">,
): Generator<[number, Op[]]> {
  for (const writeRatio of options.writeRatios) {
    yield [
      writeRatio,
      generateSequence(data, { requests: options.requests, writeRatio, seed: options.seed }),
    ];
  }
}

/** A temporary folder with the generated database, the template each run copies. */
export function prepareDatabase(
  options: Pick<WorkloadOptions, "users" | "orders" | "seed">,
  log: (line: string) => void,
): { template: string; data: InitialData } {
  const template = join(makeTmpDir(), "template.db");
  const data = createDatabase(template, options);
  log(`database: ${data.users.length} users, ${data.orders.length} orders`);
  return { template, data };
}

/**
 * Runs `run` on a fresh copy of the template database, named `name`; every server is
 * stopped and the copy removed after it.
 */
export async function onFreshCopy<T>(
  template: string,
  name: string,
  run: (db: string) => Promise<T>,
): Promise<T> {
  const db = join(dirname(template), `${name}.db`);
  copyFileSync(template, db);
  try {
    return await run(db);
  } finally {
    await stopAll();
    for (const suffix of ["", "-wal", "-shm"]) rmSync(db + suffix, { force: true });
  }
}

/**
 * Runs `run` on a fresh database holding the template's rows: a copy of the SQLite
 * template, or a PostgreSQL database of its own seeded with the same rows (the demo's
 * generator with the same seed) plus the version columns; dropped after it.
 */
export async function onFreshDatabase<T>(
  source: SourceName,
  template: string,
  name: string,
  options: Pick<WorkloadOptions, "users" | "orders" | "seed">,
  run: (db: string) => Promise<T>,
): Promise<T> {
  if (source === "sqlite") return onFreshCopy(template, name, run);
  const admin = postgres(BENCH_PG, { max: 1, onnotice: () => {} });
  const dbName = `ec_bench_${process.pid}_${name.replaceAll(/[^a-z0-9]/gi, "_")}`;
  const url = new URL(BENCH_PG);
  url.pathname = `/${dbName}`;
  try {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.unsafe(`CREATE DATABASE ${dbName}`);
    const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
    try {
      const { users, orders, seed } = options;
      await seedPostgresDemo(sql, { users, orders, seed });
      await sql.unsafe(
        "ALTER TABLE users ADD COLUMN version integer NOT NULL DEFAULT 1;" +
          "ALTER TABLE orders ADD COLUMN version integer NOT NULL DEFAULT 1;",
      );
    } finally {
      await sql.end();
    }
    return await run(url.toString());
  } finally {
    await stopAll();
    await admin.unsafe(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  }
}

/**
 * The setup's servers over `db`, started together (node i is the i-th); on Redis, once
 * their new change log lets writes through without waiting (see `logOlderThan`).
 */
export async function startNodes(db: string, setup: Setup): Promise<Server[]> {
  const redis = (node: number) =>
    setup.redis
      ? [
          ...["--redis", setup.links?.[node]?.redis ?? setup.redis.server.url],
          ...["--prefix", setup.redis.prefix],
          ...(setup.redis.reloadLists ? ["--reload-lists"] : []),
        ]
      : [];
  const servers = await Promise.all(
    Array.from({ length: setup.nodes }, (_, i) =>
      startServer({
        name: `workload-${setup.strategy}${setup.nodes > 1 ? `-${i + 1}` : ""}`,
        ...(setup.root && { cwd: setup.root }),
        argv: benchServer(
          "workload-server.ts",
          [
            "--db",
            setup.links?.[i]?.db ?? db,
            "--strategy",
            setup.strategy,
            ...redis(i),
            ...(setup.capture ? ["--capture"] : []),
          ],
          setup.root,
        ),
      }),
    ),
  );
  await setup.redis?.server.logOlderThan(setup.redis.prefix, DEFAULT_LEASE_MS);
  return servers;
}

/**
 * One run: starts the setup, warms it (each read of the sequence once on each node that
 * serves it, see `warm`), runs the sequence judged by a fresh oracle, then probes hits.
 */
export async function runSetup(
  db: string,
  setup: Setup,
  ops: Op[],
  data: InitialData,
  connections: number,
  /** Requests per second sent in an open loop; undefined: `connections` closed-loop clients. */
  rate?: number,
): Promise<SetupRun> {
  const servers = await startNodes(db, setup);
  const client = new Client(
    servers.map((s) => s.url),
    connections,
  );
  const stats = () =>
    Promise.all(servers.map((_, i) => client.json<ServerStats>("/_bench/stats", i)));
  const cpu = async () => {
    const own = process.cpuUsage();
    return {
      nodes: servers.reduce((sum, s) => sum + cpuSeconds(s.pid), 0),
      driver: (own.user + own.system) / 1e6,
      redis: await setup.redis?.server.cpuSeconds(),
    };
  };
  try {
    if (setup.strategy !== "no-cache") await warm(client, ops, connections);
    const oracle = new StaleOracle({
      users: data.users.map((u) => u.id),
      orders: data.orders.map((o) => o.id),
    });
    const profile = (query: (node: number) => string) =>
      Promise.all(servers.map((_, i) => client.send("POST", `/_bench/profile${query(i)}`, {}, i)));
    if (setup.profile) await profile(() => "");
    const before = await stats();
    const cpuBefore = await cpu();
    const outcome =
      rate === undefined
        ? await runSequence(client, ops, oracle, connections, setup.around)
        : await runSequenceAt(client, ops, oracle, rate, setup.around);
    const cpuAfter = await cpu();
    const after = await stats();
    const to = setup.profile;
    if (to) await profile((i) => `?stop=${encodeURIComponent(`${to}-node${i + 1}.cpuprofile`)}`);
    const probe = await probeHits(client, ops);
    const redis =
      cpuAfter.redis === undefined ? undefined : cpuAfter.redis - (cpuBefore.redis ?? 0);
    return {
      outcome,
      before,
      after,
      probe,
      cpu: {
        nodes: cpuAfter.nodes - cpuBefore.nodes,
        driver: cpuAfter.driver - cpuBefore.driver,
        redis,
      },
    };
  } finally {
    client.close();
  }
}

/**
 * The most requested reads of the sequence, sent one at a time (dealt over the nodes);
 * the hits' latencies.
 */
async function probeHits(client: Client, ops: Op[]): Promise<number[]> {
  const counts = new Map<string, number>();
  for (const op of ops) if (op.kind === "read") counts.set(op.path, (counts.get(op.path) ?? 0) + 1);
  const hot = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 50);
  const latencies: number[] = [];
  for (let i = 0; i < PROBE_REQUESTS && hot.length > 0; i++) {
    const started = performance.now();
    const reply = await client.send("GET", hot[i % hot.length]![0], undefined, i);
    if (reply.cacheStatus.startsWith("edgecache; hit")) latencies.push(performance.now() - started);
  }
  return latencies;
}

/** The figures of one run; `dbQueriesPerWrite` is filled in by `addQueriesPerWrite`. */
export function toRecord(strategy: Strategy, writeRatio: number, run: SetupRun): WorkloadRecord {
  const { outcome: o, probe } = run;
  const before = sumStats(run.before);
  const after = sumStats(run.after);
  const queries =
    after.queries.reads - before.queries.reads + (after.queries.writes - before.queries.writes);
  return {
    strategy,
    writeRatio,
    requests: o.requests,
    reads: o.reads,
    writes: o.writes,
    hitRate: round(o.hits / Math.max(1, o.reads), 4),
    staleReads: o.staleReads,
    dbQueriesPerRequest: round(queries / Math.max(1, o.requests), 4),
    dbQueriesPerWrite: null,
    p50Ms: round(quantile(o.latencies, 0.5), 3),
    p95Ms: round(quantile(o.latencies, 0.95), 3),
    p99Ms: round(quantile(o.latencies, 0.99), 3),
    hitP50Ms: o.hitLatencies.length ? round(quantile(o.hitLatencies, 0.5), 3) : null,
    hitP50UnloadedMs: probe.length ? round(quantile(probe, 0.5), 3) : null,
    rps: round(o.requests / (o.elapsedMs / 1000), 1),
    errors: o.errors,
    invalidations: after.cache.invalidations - before.cache.invalidations,
    rehydrations: after.cache.rehydrations - before.cache.rehydrations,
    patches: after.cache.patches - before.cache.patches,
  };
}

/** The nodes' counters added up; tiers are left out (see each node's). */
export function sumStats(nodes: ServerStats[]): ServerStats {
  const sum = (pick: (s: ServerStats) => number) => nodes.reduce((n, s) => n + pick(s), 0);
  return {
    queries: { reads: sum((s) => s.queries.reads), writes: sum((s) => s.queries.writes) },
    cache: {
      hits: sum((s) => s.cache.hits),
      misses: sum((s) => s.cache.misses),
      staleHits: sum((s) => s.cache.staleHits),
      bypasses: sum((s) => s.cache.bypasses),
      refused: sum((s) => s.cache.refused),
      replayed: sum((s) => s.cache.replayed ?? 0),
      awaited: sum((s) => s.cache.awaited ?? 0),
      resets: sum((s) => s.cache.resets),
      invalidations: sum((s) => s.cache.invalidations),
      rehydrations: sum((s) => s.cache.rehydrations),
      patches: sum((s) => s.cache.patches),
      tiers: [],
    },
  };
}

/** The progress line of one run. */
export function summaryLine(what: string, r: WorkloadRecord): string {
  return `${what}: hit rate ${(r.hitRate * 100).toFixed(1)}%, stale ${r.staleReads}, ${r.dbQueriesPerRequest.toFixed(3)} queries/request, p50 ${r.p50Ms.toFixed(2)} ms, ${Math.round(r.rps)} req/s${r.errors ? `, ${r.errors} errors` : ""}`;
}

/**
 * Queries per write: all queries of the run, less what the same number of reads cost in
 * the same strategy's read-only run, per write.
 */
function addQueriesPerWrite(records: WorkloadRecord[]): void {
  for (const r of records) {
    if (r.writes === 0) continue;
    const base = records.find((b) => b.strategy === r.strategy && b.writeRatio === 0);
    if (!base) continue;
    const perRead = (base.dbQueriesPerRequest * base.requests) / Math.max(1, base.reads);
    const extra = r.dbQueriesPerRequest * r.requests - perRead * r.reads;
    r.dbQueriesPerWrite = round(extra / r.writes, 2);
  }
}

/** The demo schema and data, plus a version column the oracle reads (1 for every row). */
function createDatabase(
  path: string,
  options: Pick<WorkloadOptions, "users" | "orders" | "seed">,
): InitialData {
  const db = new Database(path);
  try {
    seedDemo(db, { users: options.users, orders: options.orders, seed: options.seed });
    db.exec(
      "ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 1;" +
        "ALTER TABLE orders ADD COLUMN version INTEGER NOT NULL DEFAULT 1;",
    );
    return {
      users: db.prepare("SELECT id, firstName, lastName FROM users").all() as InitialData["users"],
      orders: db.prepare("SELECT id, userId, status FROM orders").all() as InitialData["orders"],
    };
  } finally {
    db.close();
  }
}

/** Nearest-rank quantile. */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  const sorted = Float64Array.from(xs).sort();
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0;
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function pctLabel(ratio: number): string {
  return `${Number((ratio * 100).toFixed(1))}%`;
}
