/**
 * The regions benchmark: the cluster benchmark's nodes (bench/workload/: database, sequences,
 * stale-read oracle, node processes), one per region, each node's links to Redis (and to
 * PostgreSQL) through a relay of its own (bench/lib/relay.ts) that adds the region's round
 * trip. Per write ratio, three setups, each on a fresh database and key prefix:
 *
 * - `baseline`: every relay at 0 ms, the same processes and paths otherwise;
 * - `regions`: each relay at its region's round trip;
 * - `partition`: at distance, for a time; partway through, one region's relays stop
 *   forwarding for a few seconds, then heal.
 *
 * With `against` (another checkout), the `regions` setup runs with that checkout's nodes
 * and this one's in turn, `rounds` times, so the load on the machine weighs on both alike.
 *
 * Each region has clients of its own (lanes.ts). Warming runs with every relay at 0 ms (a
 * long-running cache is measured, not its cold start at a distance); the delays are set
 * after it.
 */

import { benchServer, startServer } from "../lib/processes.ts";
import type { BenchRedis } from "../lib/redis.ts";
import { viaPort } from "../lib/relay.ts";
import { generateSequence, type InitialData, type Op } from "../workload/generate.ts";
import { StaleOracle } from "../workload/oracle.ts";
import { Client, type RunOutcome, type Traced } from "../workload/run.ts";
import type { Strategy } from "../workload/strategies.ts";
import {
  onFreshDatabase,
  prepareDatabase,
  quantile,
  round,
  type ServerStats,
  type Setup,
  type SourceName,
  sequences,
  startNodes,
  sumStats,
} from "../workload/workload.ts";
import { probeLanes, runLanes, warmLanes } from "./lanes.ts";

export interface RegionsOptions {
  users: number;
  orders: number;
  /** Requests per setup and ratio, over all regions (after warming). */
  requests: number;
  writeRatios: number[];
  /** Concurrent clients per region. */
  connections: number;
  /** Each region's round trip to Redis (and PostgreSQL), ms: one node per region. */
  rtts: number[];
  source: SourceName;
  strategy: Strategy;
  redis: BenchRedis;
  partition?: PartitionPlan;
  /**
   * Another checkout (--against): its nodes run the `regions` setup too, in turn with this
   * checkout's, `rounds` times (before, after, before, after, ...), under the same load.
   */
  against?: string;
  rounds?: number;
  seed: number;
  log?: (line: string) => void;
}

/** Which region is cut off, and for how long, in a run of `before + cut + after` ms. */
export interface PartitionPlan {
  /** Index into `rtts`. */
  region: number;
  beforeMs: number;
  cutMs: number;
  afterMs: number;
}

/** The partition run's probe reads: one per region this often. */
const PROBE_EVERY_MS = 100;
/** A request without an answer in this time counts as an error (none should wait so long). */
const REQUEST_TIMEOUT_MS = 30_000;

export type SetupName = "baseline" | "regions";

export interface RegionRecord {
  setup: SetupName;
  writeRatio: number;
  /** 1-based, in the order of `--rtts`. */
  region: number;
  /** The relay's round trip in this setup (0 in the baseline). */
  rttMs: number;
  /** With --against: whose nodes ran it ("before": the other checkout's), and in which round. */
  code?: "before" | "after";
  round?: number;
  requests: number;
  reads: number;
  writes: number;
  hitRate: number;
  staleReads: number;
  errors: number;
  /**
   * Of the errors: writes answered 4xx. Regions keep their own pace, so a write may reach
   * the database after a later write of the sequence deleted its row (or its user).
   */
  refusedWrites: number;
  readP50Ms: number;
  readP99Ms: number;
  writeP50Ms: number | null;
  writeP99Ms: number | null;
  /** Requests per second of this region's clients, from the start to its last answer. */
  rps: number;
  seconds: number;
  /** The node's own counters over the run: see ServerStats. */
  node: NodeCounters;
}

export interface NodeCounters {
  /** Reads answered from the node's memory, and from the shared Redis tier. */
  memoryHits: number;
  redisHits: number;
  /** Reads that went around the cache (the node's lease had lapsed). */
  bypasses: number;
  /** Entries read from Redis and refused, patched up, or awaited (another node's reload). */
  refused: number;
  replayed: number;
  awaited: number;
  /** Times the node dropped its memory tier to start the log over. */
  resets: number;
  /**
   * The node's writes (requests) and the Redis round trips and commands they waited for and
   * sent (its `stats().redis` under `write`: turns, appends, barrier questions, catch-ups).
   */
  writes?: { requests: number; trips: number; commands: number };
}

export type Phase = "before" | "cut" | "after";

/** One region's requests in one phase of the partition run. */
export interface PhaseFigures {
  region: number;
  rttMs: number;
  phase: Phase;
  seconds: number;
  /** Requests sent in the phase, reads among them, and reads answered from cache. */
  requests: number;
  reads: number;
  hits: number;
  /** Reads answered 200 or 404 (from the cache or the database). */
  readsAnswered: number;
  /** Requests answered 503, other 5xx, or not at all (timeout, reset). */
  status503: number;
  status5xx: number;
  noAnswer: number;
  staleReads: number;
  writes: number;
  writesAcked: number;
  readP50Ms: number | null;
  readP99Ms: number | null;
  writeP50Ms: number | null;
  writeP99Ms: number | null;
  /** Answers that came back within the phase, per second of it. */
  answersPerSecond: number;
}

export interface PartitionRecord {
  writeRatio: number;
  /** 1-based. */
  region: number;
  rtts: number[];
  beforeMs: number;
  cutMs: number;
  afterMs: number;
  /** The regions' clients (closed loop: a held request holds its client). */
  phases: PhaseFigures[];
  /** Reads sent to each region every `probeEveryMs` whatever came before (open loop). */
  probeEveryMs: number;
  probes: PhaseFigures[];
  /** The cut region's last hit that began during the cut, ms after the cut (none: null). */
  lastHitInCutMs: number | null;
  /** The cut region's first hit after the heal, ms after it (none: null). */
  firstHitAfterHealMs: number | null;
  staleReads: number;
  node: NodeCounters[];
}

export interface RegionsResult {
  records: RegionRecord[];
  partitions: PartitionRecord[];
  stale: { setup: SetupName | "partition"; writeRatio: number; samples: unknown[] }[];
}

export async function runRegions(options: RegionsOptions): Promise<RegionsResult> {
  const log = options.log ?? (() => {});
  const { template, data } = prepareDatabase(options, log);
  const result: RegionsResult = { records: [], partitions: [], stale: [] };
  const zero = options.rtts.map(() => 0);

  type Plan = {
    name: SetupName;
    rtts: readonly number[];
    root?: string;
    code?: "before" | "after";
    round?: number;
  };
  const plans: Plan[] = [{ name: "baseline", rtts: zero }];
  if (options.against === undefined) plans.push({ name: "regions", rtts: options.rtts });
  for (let round = 1; options.against !== undefined && round <= (options.rounds ?? 1); round++) {
    plans.push(
      { name: "regions", rtts: options.rtts, root: options.against, code: "before", round },
      { name: "regions", rtts: options.rtts, code: "after", round },
    );
  }
  for (const [writeRatio, ops] of sequences(data, options)) {
    for (const { name, rtts, root, code, round } of plans) {
      const label = `${name}-${writeRatio}${code ? `-${code}-${round}` : ""}`;
      const run = await atDistance(options, template, label, root, async (nodes) => {
        await warmLanes(nodes.client, ops, options.connections);
        await nodes.setRtts(rtts);
        const oracle = newOracle(data);
        const before = await nodes.stats();
        const outcomes = await runLanes(nodes.client, ops, oracle, options);
        return { outcomes, before, after: await nodes.stats() };
      });
      run.outcomes.forEach((o, i) => {
        const record = {
          ...toRegionRecord(name, writeRatio, i, rtts[i]!, o, run.before, run.after),
          ...(code && { code, round }),
        };
        result.records.push(record);
        log(
          `${(writeRatio * 100).toFixed(1)}% writes, ${name}${code ? ` (${code}, round ${round})` : ""}, region ${i + 1} (${rtts[i]} ms): read p50 ${record.readP50Ms} ms p99 ${record.readP99Ms} ms, write p50 ${record.writeP50Ms} ms p99 ${record.writeP99Ms} ms, hit rate ${(record.hitRate * 100).toFixed(1)}%, stale ${record.staleReads}, ${Math.round(record.rps)} req/s${record.errors ? `, ${record.errors} errors` : ""}`,
        );
      });
      const samples = run.outcomes.flatMap((o) => o.staleSamples);
      if (samples.length > 0) result.stale.push({ setup: name, writeRatio, samples });
    }
    if (options.partition) {
      const record = await partitionRun(
        options,
        template,
        data,
        writeRatio,
        ops,
        options.partition,
      );
      result.partitions.push(record.value);
      if (record.samples.length > 0) {
        result.stale.push({ setup: "partition", writeRatio, samples: record.samples });
      }
    }
  }
  return result;
}

/**
 * The partition run: a sequence long enough for every region to keep sending for the whole
 * run, stopped by time; the cut region's relays hold everything from `beforeMs` for `cutMs`.
 */
async function partitionRun(
  options: RegionsOptions,
  template: string,
  data: InitialData,
  writeRatio: number,
  warmOps: Op[],
  plan: PartitionPlan,
): Promise<{ value: PartitionRecord; samples: unknown[] }> {
  const log = options.log ?? (() => {});
  const n = options.rtts.length;
  // Generous: a region at 0.1 ms per request would still not run out.
  const ops = generateSequence(data, {
    requests: Math.max(options.requests, n * 60_000),
    writeRatio,
    seed: options.seed,
  });
  const total = plan.beforeMs + plan.cutMs + plan.afterMs;
  const run = await atDistance(
    options,
    template,
    `partition-${writeRatio}`,
    undefined,
    async (nodes) => {
      await warmLanes(nodes.client, warmOps, options.connections);
      await nodes.setRtts(options.rtts);
      const oracle = newOracle(data);
      const before = await nodes.stats();
      const start = performance.now();
      const cutAt = start + plan.beforeMs;
      const healAt = cutAt + plan.cutMs;
      const timers = [
        setTimeout(() => void nodes.partition(plan.region), plan.beforeMs),
        setTimeout(() => void nodes.heal(plan.region), plan.beforeMs + plan.cutMs),
      ];
      const prober = new Client(nodes.client.bases, 1000, REQUEST_TIMEOUT_MS);
      try {
        const [outcomes, probes] = await Promise.all([
          runLanes(nodes.client, ops, oracle, {
            connections: options.connections,
            until: start + total,
          }),
          probeLanes(prober, ops, oracle, { everyMs: PROBE_EVERY_MS, until: start + total }),
        ]);
        return { outcomes, probes, before, after: await nodes.stats(), start, cutAt, healAt };
      } finally {
        for (const t of timers) clearTimeout(t);
        prober.close();
        await nodes.heal(plan.region);
      }
    },
  );
  const windows: [Phase, number, number][] = [
    ["before", run.start, run.cutAt],
    ["cut", run.cutAt, run.healAt],
    ["after", run.healAt, run.start + total],
  ];
  const byPhase = (outcomes: RunOutcome[]) =>
    outcomes.flatMap((o, region) =>
      windows.map(([phase, from, to]) =>
        phaseFigures(region, options.rtts[region]!, phase, o.trace ?? [], from, to),
      ),
    );
  const phases = byPhase(run.outcomes);
  const probes = byPhase(run.probes);
  const all = [...run.outcomes, ...run.probes];
  // Hits of the cut region, from its clients and the probe reads.
  const cut = all
    .filter((_, i) => i % options.rtts.length === plan.region)
    .flatMap((o) => o.trace ?? [])
    .sort((a, b) => a.startedAt - b.startedAt);
  const hitsInCut = cut.filter(
    (t) => t.hit && t.startedAt >= run.cutAt && t.startedAt < run.healAt,
  );
  const firstAfter = cut.find((t) => t.hit && t.startedAt >= run.healAt);
  const record: PartitionRecord = {
    writeRatio,
    region: plan.region + 1,
    rtts: options.rtts,
    beforeMs: plan.beforeMs,
    cutMs: plan.cutMs,
    afterMs: plan.afterMs,
    phases,
    probeEveryMs: PROBE_EVERY_MS,
    probes,
    lastHitInCutMs:
      hitsInCut.length > 0
        ? round(Math.max(...hitsInCut.map((t) => t.startedAt)) - run.cutAt, 1)
        : null,
    firstHitAfterHealMs: firstAfter ? round(firstAfter.startedAt - run.healAt, 1) : null,
    staleReads: all.reduce((s, o) => s + o.staleReads, 0),
    node: run.after.map((a, i) => counters(run.before[i]!, a)),
  };
  for (const [what, list] of [
    ["clients", phases],
    ["probes", probes],
  ] as const) {
    for (const p of list.filter((p) => p.region === plan.region + 1 || p.phase === "cut")) {
      log(
        `partition of region ${plan.region + 1}, ${what}, region ${p.region} ${p.phase}: ${p.requests} requests, ${p.hits}/${p.reads} hits, ${p.status503} 503, ${p.status5xx} other 5xx, ${p.noAnswer} unanswered, stale ${p.staleReads}, write p50 ${p.writeP50Ms ?? "–"} ms, ${p.answersPerSecond} answers/s`,
      );
    }
  }
  return { value: record, samples: all.flatMap((o) => o.staleSamples) };
}

/** One region's traced requests that began in [from, to). */
function phaseFigures(
  region: number,
  rttMs: number,
  phase: Phase,
  trace: Traced[],
  from: number,
  to: number,
): PhaseFigures {
  const sent = trace.filter((t) => t.startedAt >= from && t.startedAt < to);
  const reads = sent.filter((t) => t.kind === "read");
  const writes = sent.filter((t) => t.kind === "write");
  const answered = trace.filter((t) => t.status !== 0 && t.endedAt >= from && t.endedAt < to);
  const q = (xs: Traced[], p: number) =>
    xs.length === 0
      ? null
      : round(
          quantile(
            xs.map((t) => t.endedAt - t.startedAt),
            p,
          ),
          2,
        );
  return {
    region: region + 1,
    rttMs,
    phase,
    seconds: round((to - from) / 1000, 2),
    requests: sent.length,
    reads: reads.length,
    hits: reads.filter((t) => t.hit).length,
    readsAnswered: reads.filter((t) => t.status === 200 || t.status === 404).length,
    status503: sent.filter((t) => t.status === 503).length,
    status5xx: sent.filter((t) => t.status >= 500 && t.status !== 503).length,
    noAnswer: sent.filter((t) => t.status === 0).length,
    staleReads: reads.filter((t) => t.stale).length,
    writes: writes.length,
    writesAcked: writes.filter((t) => t.status >= 200 && t.status < 300).length,
    readP50Ms: q(reads, 0.5),
    readP99Ms: q(reads, 0.99),
    writeP50Ms: q(writes, 0.5),
    writeP99Ms: q(writes, 0.99),
    answersPerSecond: round(answered.length / Math.max(0.001, (to - from) / 1000), 1),
  };
}

function newOracle(data: InitialData): StaleOracle {
  return new StaleOracle({
    users: data.users.map((u) => u.id),
    orders: data.orders.map((o) => o.id),
  });
}

/** The nodes of a run at a distance, and the handles on their links. */
interface Nodes {
  client: Client;
  stats(): Promise<ServerStats[]>;
  /** Sets each region's relays to its round trip. */
  setRtts(rtts: readonly number[]): Promise<void>;
  partition(region: number): Promise<void>;
  heal(region: number): Promise<void>;
}

/**
 * Starts one node per region on a fresh database and key prefix, each node's Redis link
 * (and PostgreSQL link) through relays of its own, at 0 ms until `setRtts`; runs `run`, then
 * stops the nodes, closes the relays and drops the keys.
 */
async function atDistance<T>(
  options: RegionsOptions,
  template: string,
  name: string,
  /** The checkout whose nodes run (undefined: this one). */
  root: string | undefined,
  run: (nodes: Nodes) => Promise<T>,
): Promise<T> {
  const n = options.rtts.length;
  const prefix = options.redis.freshPrefix();
  const pg = options.source === "postgres";
  try {
    return await onFreshDatabase(options.source, template, name, options, async (db) => {
      // Per region: its Redis relay, then (PostgreSQL) its database relay. SQLite is a file
      // beside the node: that link has no distance.
      const links = [options.redis.url, ...(pg ? [db] : [])];
      const relays = await startRelays(
        Array.from({ length: n }, () => links.map((url) => hostPort(url))).flat(),
      );
      const of = (region: number) => links.map((_, k) => region * links.length + k);
      const setup: Setup = {
        strategy: options.strategy,
        nodes: n,
        ...(root && { root }),
        redis: { server: options.redis, prefix },
        links: Array.from({ length: n }, (_, i) => {
          const [redis, database] = of(i).map((r, k) => viaPort(links[k]!, relays.ports[r]!));
          return { redis, db: database };
        }),
      };
      const servers = await startNodes(db, setup);
      const client = new Client(
        servers.map((s) => s.url),
        options.connections,
        REQUEST_TIMEOUT_MS,
      );
      try {
        return await run({
          client,
          stats: () =>
            Promise.all(servers.map((_, i) => client.json<ServerStats>("/_bench/stats", i))),
          setRtts: (rtts) =>
            Promise.all(
              rtts.flatMap((ms, region) => of(region).map((r) => relays.send("rtt", r, ms))),
            ).then(() => undefined),
          partition: (region) =>
            Promise.all(of(region).map((r) => relays.send("partition", r))).then(() => undefined),
          heal: (region) =>
            Promise.all(of(region).map((r) => relays.send("heal", r))).then(() => undefined),
        });
      } finally {
        client.close();
      }
    });
  } finally {
    await options.redis.drop(prefix);
  }
}

/** The relays, in a process of their own (bench/servers/relay-server.ts). */
async function startRelays(targets: string[]) {
  const server = await startServer({
    name: "relays",
    argv: benchServer(
      "relay-server.ts",
      targets.flatMap((t) => ["--target", t]),
    ),
  });
  const { ports } = JSON.parse(server.line) as { ports: number[] };
  return {
    ports,
    async send(command: "rtt" | "partition" | "heal", relay: number, ms?: number) {
      const query = `relay=${relay}${ms === undefined ? "" : `&ms=${ms}`}`;
      const res = await fetch(`${server.url}/${command}?${query}`, { method: "POST" });
      if (res.status !== 204) throw new Error(`[bench] relays: ${command} answered ${res.status}`);
    },
  };
}

/** `host:port` of a redis:// or postgres:// URL, with the scheme's default port. */
function hostPort(url: string): string {
  const u = new URL(url);
  const port = u.port || (u.protocol.startsWith("redis") ? "6379" : "5432");
  return `${u.hostname || "127.0.0.1"}:${port}`;
}

function toRegionRecord(
  setup: SetupName,
  writeRatio: number,
  region: number,
  rttMs: number,
  o: RunOutcome,
  before: ServerStats[],
  after: ServerStats[],
): RegionRecord {
  const trace = o.trace ?? [];
  const reads = trace.filter((t) => t.kind === "read").map((t) => t.endedAt - t.startedAt);
  const ms = (xs: number[], q: number) => (xs.length === 0 ? null : round(quantile(xs, q), 2));
  return {
    setup,
    writeRatio,
    region: region + 1,
    rttMs,
    requests: o.requests,
    reads: o.reads,
    writes: o.writes,
    hitRate: round(o.hits / Math.max(1, o.reads), 4),
    staleReads: o.staleReads,
    errors: o.errors,
    refusedWrites: trace.filter((t) => t.kind === "write" && t.status >= 400 && t.status < 500)
      .length,
    readP50Ms: ms(reads, 0.5) ?? 0,
    readP99Ms: ms(reads, 0.99) ?? 0,
    writeP50Ms: ms(o.writeLatencies, 0.5),
    writeP99Ms: ms(o.writeLatencies, 0.99),
    rps: round(o.requests / (o.elapsedMs / 1000), 1),
    seconds: round(o.elapsedMs / 1000, 1),
    node: counters(before[region]!, after[region]!),
  };
}

function counters(before: ServerStats, after: ServerStats): NodeCounters {
  const tier = (s: ServerStats, name: string) =>
    s.cache.tiers.find((t) => t.name === name)?.hits ?? 0;
  const d = sumStats([after]).cache;
  const b = sumStats([before]).cache;
  return {
    memoryHits: tier(after, "memory") - tier(before, "memory"),
    redisHits: tier(after, "redis") - tier(before, "redis"),
    bypasses: d.bypasses - b.bypasses,
    refused: d.refused - b.refused,
    replayed: d.replayed - b.replayed,
    awaited: d.awaited - b.awaited,
    resets: d.resets - b.resets,
    ...(after.cache.redis &&
      before.cache.redis && {
        writes: {
          requests: after.cache.redis.requests.write - before.cache.redis.requests.write,
          trips: after.cache.redis.trips.write - before.cache.redis.trips.write,
          commands: after.cache.redis.commands.write - before.cache.redis.commands.write,
        },
      }),
  };
}
