/**
 * The cluster benchmark: the workload benchmark's database, sequences, oracle and runner,
 * run per write ratio against these setups of one strategy, each on a fresh copy of the
 * database (and, on Redis, under a fresh key prefix):
 *
 * - one node with the in-process change log (edgecache's default),
 * - the floor: n nodes alone, each with its own in-process log (see `SetupName`),
 * - one node on Redis (change log and shared tier),
 * - n nodes on Redis, the sequence dealt round robin over them (see `Client`), by default
 *   and with `reloadLists`;
 *
 * then the invalidation probe (probe.ts) against each setup.
 */
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import type { BenchRedis } from "../lib/redis.ts";
import type { WorkloadRecord } from "../workload/report.ts";
import { Client, type RunOutcome } from "../workload/run.ts";
import type { Strategy } from "../workload/strategies.ts";
import {
  onFreshCopy,
  pctLabel,
  prepareDatabase,
  quantile,
  round,
  runSetup,
  type ServerStats,
  type Setup,
  type SetupRun,
  sequences,
  startNodes,
  summaryLine,
  sumStats,
  toRecord,
} from "../workload/workload.ts";
import { type ProbeOutcome, probeInvalidation } from "./probe.ts";

export interface ClusterOptions {
  users: number;
  orders: number;
  /** Requests per setup and ratio (after warming). */
  requests: number;
  writeRatios: number[];
  /** Concurrent clients, spread over the nodes of a setup. */
  connections: number;
  /**
   * Requests per second in an open loop (a fixed, light offered load every setup can serve,
   * for CPU per request without queueing); undefined: `connections` closed-loop clients.
   */
  rate?: number;
  /** `rate` is each node's: a setup of n nodes is sent n times it (equal load per node). */
  perNode?: boolean;
  /** The setups to run (all of `SETUPS` by default). */
  setups?: readonly SetupName[];
  /** Nodes of the cluster setup (3). */
  nodes: number;
  strategy: Strategy;
  redis: BenchRedis;
  /** Writes of the invalidation probe, per setup. */
  probeWrites: number;
  seed: number;
  /** A folder for each node's CPU profile of each sequence (`<setup>-<ratio>-node<i>`). */
  cpuProf?: string | undefined;
  /**
   * Runs of each setup per ratio, in turn (every setup once, then every setup again): a
   * ratio between setups is taken within a run, and its median over the runs reported.
   */
  repeat?: number;
  log?: (line: string) => void;
}

/**
 * `n-alone` is the floor, not a cache: n nodes each with its own in-process log, dealt the
 * same requests, blind to each other's writes (their stale reads are not counted). What it
 * costs over one node is what n processes cost on this machine, whatever they coordinate.
 */
export type SetupName = "1-local" | "n-alone" | "1-redis" | "n-redis" | "n-redis-lists";
export const SETUPS: readonly SetupName[] = [
  "1-local",
  "n-alone",
  "1-redis",
  "n-redis",
  "n-redis-lists",
];

export interface ClusterRecord extends WorkloadRecord {
  setup: SetupName;
  /** Which run of its setup and ratio this is (1, 2, ...), with `repeat` over 1. */
  run?: number;
  nodes: number;
  changeLog: "local" | "redis";
  writeP50Ms: number | null;
  writeP99Ms: number | null;
  /** Reads each node served, by its own counters (hits, stale hits and misses). */
  readsByNode: number[];
  /** Hits per tier, over all nodes: `memory`, and `redis` for the shared tier. */
  tierHits: Record<string, number>;
  /**
   * Over all nodes, during the sequence: entries read from the shared tier and refused (a
   * change since their load may concern them) or patched up to date instead, or refused
   * and then served from the reload another node claimed (awaited), reads that bypassed
   * the cache (lease lapsed), and times a node dropped its memory tier to start the log over.
   */
  refused: number;
  replayed: number;
  awaited: number;
  bypasses: number;
  resets: number;
  /** CPU seconds during the sequence (see `SetupRun`), and the cores they kept busy. */
  cpu: SetupRun["cpu"] & { coresBusy: number };
  /**
   * What the nodes sent to Redis during the sequence, all nodes together, by kind of work
   * (`stats().redis`, counted by each node: commands, round trips, requests served).
   */
  redis?: RedisCosts;
}

/** `CacheStats["redis"]`, summed over nodes and taken as the difference over a sequence. */
export type RedisCosts = NonNullable<ServerStats["cache"]["redis"]>;

export interface ProbeRecord {
  setup: SetupName;
  nodes: number;
  changeLog: "local" | "redis";
  writes: number;
  writeP50Ms: number;
  writeP99Ms: number;
  ackToAllNewP50Ms: number;
  ackToAllNewP99Ms: number;
  ackToAllNewMaxMs: number;
  staleReads: number;
  primedHitRate: number;
  firstPollHitRate: number;
  errors: number;
}

export interface ClusterResult {
  records: ClusterRecord[];
  probes: ProbeRecord[];
  /** Stale reads found, for the report: the workload runs' and the probes'. */
  stale: { setup: SetupName; writeRatio: number | null; samples: unknown[] }[];
}

export async function runCluster(options: ClusterOptions): Promise<ClusterResult> {
  const log = options.log ?? (() => {});
  const { template, data } = prepareDatabase(options, log);
  const result: ClusterResult = { records: [], probes: [], stale: [] };
  const setups = options.setups ?? SETUPS;

  const repeat = options.repeat ?? 1;
  for (const [writeRatio, ops] of sequences(data, options)) {
    for (let run = 1; run <= repeat; run++) {
      for (const name of setups) {
        const nth = repeat > 1 ? `-run${run}` : "";
        const record = await withSetup(
          options,
          template,
          name,
          `${name}-${writeRatio}${nth}`,
          async (db, setup) => {
            if (options.cpuProf) {
              mkdirSync(options.cpuProf, { recursive: true });
              setup.profile = resolve(options.cpuProf, `${name}-${writeRatio}${nth}`);
            }
            const rate =
              options.rate !== undefined && options.perNode
                ? options.rate * setup.nodes
                : options.rate;
            const done = await runSetup(db, setup, ops, data, options.connections, rate);
            return {
              value: {
                ...toClusterRecord(name, setup, writeRatio, done),
                ...(repeat > 1 && { run }),
              },
              samples: done.outcome.staleSamples,
            };
          },
        );
        result.records.push(record.value);
        if (record.samples.length > 0 && name !== "n-alone") {
          result.stale.push({ setup: name, writeRatio, samples: record.samples });
        }
        log(
          summaryLine(
            `${pctLabel(writeRatio)} writes, ${label(name, options.nodes, record.value.run)}`,
            record.value,
          ),
        );
      }
    }
  }

  // Any 50 users: each probe runs on a fresh copy of the database, which only it writes.
  const ids = data.users.slice(0, 50).map((u) => u.id);
  for (const name of setups.filter((s) => s !== "n-alone")) {
    const probe = await withSetup(options, template, name, `${name}-probe`, async (db, setup) => {
      const servers = await startNodes(db, setup);
      const client = new Client(
        servers.map((s) => s.url),
        1,
      );
      try {
        const outcome = await probeInvalidation(client, ids, options.probeWrites);
        return { value: toProbeRecord(name, setup, outcome), samples: outcome.staleSamples };
      } finally {
        client.close();
      }
    });
    result.probes.push(probe.value);
    if (probe.samples.length > 0) {
      result.stale.push({ setup: name, writeRatio: null, samples: probe.samples });
    }
    const p = probe.value;
    log(
      `probe, ${label(name, options.nodes)}: write p50 ${p.writeP50Ms} ms, p99 ${p.writeP99Ms} ms; ack to all new p50 ${p.ackToAllNewP50Ms} ms, p99 ${p.ackToAllNewP99Ms} ms; stale ${p.staleReads}${p.errors ? `, ${p.errors} errors` : ""}`,
    );
  }
  return result;
}

export function label(name: SetupName, nodes: number, run?: number): string {
  return run === undefined ? setupName(name, nodes) : `${setupName(name, nodes)}, run ${run}`;
}

function setupName(name: SetupName, nodes: number): string {
  if (name === "1-local") return "1 node, in-process log";
  if (name === "1-redis") return "1 node on Redis";
  if (name === "n-redis-lists") return `${nodes} nodes on Redis, reloadLists`;
  if (name === "n-alone") return `${nodes} nodes alone (the floor; not a cache)`;
  return `${nodes} nodes on Redis`;
}

/**
 * Runs `run` against a setup on a fresh copy of the database; a setup on Redis gets a
 * prefix of its own, whose keys are dropped after its nodes stopped.
 */
async function withSetup<T>(
  options: ClusterOptions,
  template: string,
  name: SetupName,
  copy: string,
  run: (db: string, setup: Setup) => Promise<{ value: T; samples: unknown[] }>,
): Promise<{ value: T; samples: unknown[] }> {
  const redis = name === "1-local" || name === "n-alone" ? undefined : options.redis;
  const prefix = redis?.freshPrefix() ?? "";
  const setup: Setup = {
    strategy: options.strategy,
    nodes: name.startsWith("n-") ? options.nodes : 1,
    redis: redis && { server: redis, prefix, reloadLists: name === "n-redis-lists" },
  };
  try {
    return await onFreshCopy(template, copy, (db) => run(db, setup));
  } finally {
    if (redis) await redis.drop(prefix);
  }
}

function toClusterRecord(
  name: SetupName,
  setup: Setup,
  writeRatio: number,
  run: SetupRun,
): ClusterRecord {
  const { outcome } = run;
  const served = (s: ServerStats) => s.cache.hits + s.cache.staleHits + s.cache.misses;
  const tierHits: Record<string, number> = {};
  run.after.forEach((after, node) => {
    after.cache.tiers.forEach((tier, i) => {
      const before = run.before[node]!.cache.tiers[i]?.hits ?? 0;
      tierHits[tier.name] = (tierHits[tier.name] ?? 0) + tier.hits - before;
    });
  });
  const before = sumStats(run.before);
  const after = sumStats(run.after);
  const redis = setup.redis ? redisCosts(run) : undefined;
  const seconds = outcome.elapsedMs / 1000;
  const busy = run.cpu.nodes + run.cpu.driver + (run.cpu.redis ?? 0);
  return {
    ...toRecord(setup.strategy, writeRatio, run),
    setup: name,
    nodes: setup.nodes,
    changeLog: setup.redis ? "redis" : "local",
    ...writeQuantiles(outcome),
    readsByNode: run.after.map((after, i) => served(after) - served(run.before[i]!)),
    tierHits,
    refused: after.cache.refused - before.cache.refused,
    replayed: after.cache.replayed - before.cache.replayed,
    awaited: after.cache.awaited - before.cache.awaited,
    bypasses: after.cache.bypasses - before.cache.bypasses,
    resets: after.cache.resets - before.cache.resets,
    cpu: {
      nodes: round(run.cpu.nodes, 2),
      driver: round(run.cpu.driver, 2),
      redis: run.cpu.redis === undefined ? undefined : round(run.cpu.redis, 2),
      coresBusy: round(busy / seconds, 2),
    },
    ...(redis && { redis }),
  };
}

/** Each node's Redis costs over the sequence (after minus before), summed over nodes. */
function redisCosts(run: SetupRun): RedisCosts | undefined {
  const out: RedisCosts = { commands: {}, trips: {}, requests: {} } as RedisCosts;
  for (const [node, after] of run.after.entries()) {
    const now = after.cache.redis;
    const then = run.before[node]?.cache.redis;
    if (!now || !then) return undefined;
    for (const part of ["commands", "trips", "requests"] as const) {
      const into = out[part] as Record<string, number>;
      for (const [kind, n] of Object.entries(now[part])) {
        into[kind] = (into[kind] ?? 0) + n - ((then[part] as Record<string, number>)[kind] ?? 0);
      }
    }
  }
  return out;
}

function writeQuantiles(o: RunOutcome): { writeP50Ms: number | null; writeP99Ms: number | null } {
  if (o.writeLatencies.length === 0) return { writeP50Ms: null, writeP99Ms: null };
  return {
    writeP50Ms: round(quantile(o.writeLatencies, 0.5), 3),
    writeP99Ms: round(quantile(o.writeLatencies, 0.99), 3),
  };
}

function toProbeRecord(name: SetupName, setup: Setup, o: ProbeOutcome): ProbeRecord {
  const ms = (xs: number[], q: number) => round(quantile(xs, q), 3);
  return {
    setup: name,
    nodes: setup.nodes,
    changeLog: setup.redis ? "redis" : "local",
    writes: o.writes,
    writeP50Ms: ms(o.writeLatencies, 0.5),
    writeP99Ms: ms(o.writeLatencies, 0.99),
    ackToAllNewP50Ms: ms(o.ackToAllNew, 0.5),
    ackToAllNewP99Ms: ms(o.ackToAllNew, 0.99),
    ackToAllNewMaxMs: ms(o.ackToAllNew, 1),
    staleReads: o.staleReads,
    primedHitRate: round(o.primedHits / Math.max(1, o.primes), 4),
    firstPollHitRate: round(o.firstPollHits / Math.max(1, o.firstPolls), 4),
    errors: o.errors,
  };
}
