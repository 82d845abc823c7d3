/**
 * One workload benchmark: a generated database, then per write ratio one request sequence,
 * run against the data API once per strategy, each on a fresh copy of the database and a
 * fresh server process. Caching strategies are warmed first (each read of the sequence
 * once), so the figures are a long-running cache's, not a cold start's.
 */
import { copyFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { seedDemo } from "../../src/demo/seed.ts";
import { benchServer, makeTmpDir, startServer, stopAll } from "../lib/processes.ts";
import { generateSequence, type InitialData, type Op } from "./generate.ts";
import { StaleOracle } from "./oracle.ts";
import type { WorkloadRecord } from "./report.ts";
import { Client, type RunOutcome, readAll, runSequence } from "./run.ts";
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
  log?: (line: string) => void;
}

/** Hits sent one at a time after each run: a hit's latency without queueing behind others. */
export const PROBE_REQUESTS = 400;

interface ServerStats {
  queries: { reads: number; writes: number };
  cache: { invalidations: number; rehydrations: number; patches: number };
}

export async function runWorkload(options: WorkloadOptions): Promise<{
  records: WorkloadRecord[];
  stale: { strategy: Strategy; writeRatio: number; samples: RunOutcome["staleSamples"] }[];
}> {
  const log = options.log ?? (() => {});
  const dir = makeTmpDir();
  const template = join(dir, "template.db");
  const data = createDatabase(template, options);
  log(`database: ${data.users.length} users, ${data.orders.length} orders`);

  const records: WorkloadRecord[] = [];
  const stale: { strategy: Strategy; writeRatio: number; samples: RunOutcome["staleSamples"] }[] =
    [];
  for (const writeRatio of options.writeRatios) {
    const ops = generateSequence(data, {
      requests: options.requests,
      writeRatio,
      seed: options.seed,
    });
    for (const strategy of options.strategies) {
      const db = join(dir, `${strategy}.db`);
      copyFileSync(template, db);
      try {
        const { outcome, before, after, probe } = await runOne(db, strategy, ops, data, options);
        const record = toRecord(strategy, writeRatio, outcome, before, after, probe);
        records.push(record);
        if (outcome.staleSamples.length > 0) {
          stale.push({ strategy, writeRatio, samples: outcome.staleSamples });
        }
        log(
          `${pctLabel(writeRatio)} writes, ${strategy}: hit rate ${(record.hitRate * 100).toFixed(1)}%, stale ${record.staleReads}, ${record.dbQueriesPerRequest.toFixed(3)} queries/request, p50 ${record.p50Ms.toFixed(2)} ms, ${Math.round(record.rps)} req/s${outcome.errors ? `, ${outcome.errors} errors` : ""}`,
        );
      } finally {
        await stopAll();
        for (const suffix of ["", "-wal", "-shm"]) rmSync(db + suffix, { force: true });
      }
    }
  }
  addQueriesPerWrite(records);
  return { records, stale };
}

async function runOne(
  db: string,
  strategy: Strategy,
  ops: Op[],
  data: InitialData,
  options: WorkloadOptions,
) {
  const server = await startServer({
    name: `workload-${strategy}`,
    argv: benchServer("workload-server.ts", ["--db", db, "--strategy", strategy]),
  });
  const client = new Client(server.url, options.connections);
  try {
    const reads = [...new Set(ops.filter((o) => o.kind === "read").map((o) => o.path))];
    if (strategy !== "no-cache") await readAll(client, reads, options.connections);
    const oracle = new StaleOracle({
      users: data.users.map((u) => u.id),
      orders: data.orders.map((o) => o.id),
    });
    const before = await client.json<ServerStats>("/_bench/stats");
    const outcome = await runSequence(client, ops, oracle, options.connections);
    const after = await client.json<ServerStats>("/_bench/stats");
    const probe = await probeHits(client, ops);
    return { outcome, before, after, probe };
  } finally {
    client.close();
  }
}

/** The most requested reads of the sequence, sent one at a time; the hits' latencies. */
async function probeHits(client: Client, ops: Op[]): Promise<number[]> {
  const counts = new Map<string, number>();
  for (const op of ops) if (op.kind === "read") counts.set(op.path, (counts.get(op.path) ?? 0) + 1);
  const hot = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 50);
  const latencies: number[] = [];
  for (let i = 0; i < PROBE_REQUESTS && hot.length > 0; i++) {
    const started = performance.now();
    const reply = await client.send("GET", hot[i % hot.length]![0]);
    if (reply.cacheStatus.startsWith("edgecache; hit")) latencies.push(performance.now() - started);
  }
  return latencies;
}

function toRecord(
  strategy: Strategy,
  writeRatio: number,
  o: RunOutcome,
  before: ServerStats,
  after: ServerStats,
  probe: number[],
): WorkloadRecord {
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
function createDatabase(path: string, options: WorkloadOptions): InitialData {
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
function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  const sorted = Float64Array.from(xs).sort();
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function pctLabel(ratio: number): string {
  return `${Number((ratio * 100).toFixed(1))}%`;
}
