/**
 * The workload benchmark against the edgecache Worker under `wrangler dev` (workerd, local
 * D1, KV, Cache API and the Durable Object log): the same database, request sequences and
 * stale-read oracle as bench:workload, once per change-log mode (strict, lease) and write
 * ratio, each on a fresh local state. Reports hit rate per tier, stale reads, latency of
 * reads and writes, and D1 loads per request; lease against strict as ratios.
 *
 *   npm run bench:workers              # 2,000 users, 10,000 orders, 4,000 requests each
 *   npm run bench:workers -- --quick   # 1,000 requests each
 *
 * Writes `<out>.json` and `<out>.md` (default bench/results/workers). Exits 1 on a stale
 * read. wrangler dev runs one isolate: this measures the tiers and the log's cost, not many
 * isolates at once (test/core/consistency/workers.property.test.ts checks those for staleness).
 *
 * Flags: --users n, --orders n, --requests n, --connections n, --ratios 0,0.05,...,
 * --modes strict,lease,follower, --seed n, --out path, --quick.
 *
 * At a distance (bench/workers-rtt.ts, in miniflare instead of wrangler dev):
 *
 *   npm run bench:workers -- --rtt 5,80,200    # and 0 ms, the baseline; out bench/results/workers-rtt
 *
 * --rtt ms,...: each location's round trip to the Durable Object and D1's primary (in follower
 * mode also between the object and the location's follower, which is --replica-rtt away);
 * --replica-rtt ms: to KV and a D1 replica (default 5); --replicas: D1 read replication on.
 *
 * The read tiers below isolate memory (bench/workers-tiers.ts): hit latency of the Durable
 * Object tier against KV and the Cache API, the object --rtt away (default 20,80) and KV
 * --replica-rtt away:
 *
 *   npm run bench:workers -- --tiers    # out bench/results/workers-tiers
 *
 * Isolates recycled (bench/workers-recycle.ts): a new isolate every n requests, against one
 * long-lived isolate and against new isolates without the log's history, in miniflare:
 *
 *   npm run bench:workers -- --recycle 200 --ratios 0.05   # out bench/results/workers-recycle
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  startWranglerDev,
  WRANGLER,
  WRANGLER_ENV,
  WRANGLER_ROOT,
} from "../test/helpers/wrangler-dev.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { commandLine, fail, readFlags } from "./lib/settings.ts";
import { machineLine, runFigures, sqlDump, type WorkersRun, warmed } from "./lib/worker-runs.ts";
import { runRecycled } from "./workers-recycle.ts";
import { runAtDistance } from "./workers-rtt.ts";
import { runTiers } from "./workers-tiers.ts";
import { readSmallWorkloadFlags, workloadFlags } from "./workload/flags.ts";
import { Client, runSequence } from "./workload/run.ts";
import { pctLabel, prepareDatabase, quantile, round, sequences } from "./workload/workload.ts";

const MODES = ["strict", "lease", "follower"] as const;
type Mode = (typeof MODES)[number];

const options = readFlags(() => {
  const { values } = parseArgs({
    options: {
      ...workloadFlags({ ratios: "0,0.05", out: "bench/results/workers" }),
      modes: { type: "string", default: MODES.join(",") },
      rtt: { type: "string" },
      "replica-rtt": { type: "string", default: "5" },
      replicas: { type: "boolean", default: false },
      tiers: { type: "boolean", default: false },
      recycle: { type: "string" },
    },
  });
  const modes = values.modes.split(",").map((m) => {
    if (!MODES.includes(m as Mode)) fail(`--modes: expected some of ${MODES.join(",")}, got ${m}`);
    return m as Mode;
  });
  // Smaller than bench:workload's defaults: local D1 loads through workerd are slower.
  const flags = readSmallWorkloadFlags(values, { quick: "1000", full: "4000" });
  const ms = (name: string, v: string) => {
    const n = Number(v);
    if (v.trim() === "" || !(n >= 0)) fail(`--${name}: expected ms >= 0, got ${v}`);
    return n;
  };
  const rtts = values.rtt?.split(",").map((v) => ms("rtt", v));
  const recycle = values.recycle === undefined ? undefined : Number(values.recycle);
  if (recycle !== undefined && !(Number.isInteger(recycle) && recycle >= 1)) {
    fail(`--recycle: expected requests >= 1, got ${values.recycle}`);
  }
  const defaultOut = values.tiers
    ? "bench/results/workers-tiers"
    : recycle
      ? "bench/results/workers-recycle"
      : "bench/results/workers-rtt";
  const out =
    (rtts || values.tiers || recycle) && values.out === "bench/results/workers"
      ? defaultOut
      : values.out;
  return {
    ...flags,
    modes,
    out,
    rtts,
    replicaRtt: ms("replica-rtt", values["replica-rtt"]),
    replicas: values.replicas,
    tiers: values.tiers,
    recycle,
    quick: values.quick,
  };
});

interface Stats {
  hits: number;
  staleHits: number;
  misses: number;
  loads: number;
  refused: number;
  tiers: { name: string; hits: number; misses: number; errors: number }[];
}

interface WorkersRecord extends WorkersRun {
  /** Reads answered by each tier, over all reads. */
  tierHitRate: Record<string, number>;
  /**
   * Whether the Worker's counters started over during the run (wrangler dev replaced the
   * isolate): the per-tier figures and D1 loads then count only since the new isolate, a
   * lower bound, instead of going negative.
   */
  countersRestarted: boolean;
  d1LoadsPerRequest: number;
  p50Ms: number;
  p99Ms: number;
  hitP50Ms: number;
  writeP50Ms: number;
  writeP99Ms: number;
  requestsPerSecond: number;
}

const log = (line: string) => console.log(line);
const command = commandLine("bench:workers");
const started = Date.now();
if (options.tiers) {
  await runTiers(
    {
      rtts: options.rtts ?? [20, 80],
      kvRtt: options.replicaRtt,
      reads: options.quick ? 100 : 400,
      keys: 50,
      bytes: 2048,
      out: options.out,
    },
    command,
  );
  process.exit();
}
const { template, data } = prepareDatabase(options, log);
if (options.recycle) {
  await runRecycled({ ...options, recycle: options.recycle }, data, template, command);
} else if (options.rtts) {
  await runAtDistance({ ...options, rtts: options.rtts }, data, template, command);
} else {
  await inWranglerDev();
}

async function inWranglerDev(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-bench-workers-"));
  const seedFile = join(dir, "seed.sql");
  writeFileSync(seedFile, sqlDump(template));

  const records: WorkersRecord[] = [];
  const staleSamples: unknown[] = [];
  try {
    for (const [writeRatio, ops] of sequences(data, options)) {
      for (const mode of options.modes) {
        const state = join(dir, `${mode}-${writeRatio}`);
        // The rows (with the workload's version columns) in local D1 before the Worker starts:
        // its seed step then finds users and leaves them.
        execFileSync(
          process.execPath,
          [
            WRANGLER,
            "d1",
            "execute",
            "edgecache-demo",
            "--local",
            "--persist-to",
            state,
            "--file",
            seedFile,
          ],
          { cwd: WRANGLER_ROOT, env: WRANGLER_ENV, stdio: "ignore" },
        );
        const dev = await startWranglerDev({
          persistTo: state,
          vars: { EDGECACHE_LOG_MODE: mode },
        });
        const client = new Client(dev.url, options.connections);
        try {
          const oracle = await warmed(client, ops, data, options.connections);
          const before = await client.json<Stats>("/_edgecache/stats");
          const o = await runSequence(client, ops, oracle, options.connections);
          const after = await client.json<Stats>("/_edgecache/stats");
          const tierHitRate: Record<string, number> = {};
          // A counter that went down belongs to a new isolate: it counts from its start.
          let countersRestarted = after.loads < before.loads;
          const since = (now: number, then = 0) => {
            if (now < then) countersRestarted = true;
            return now >= then ? now - then : now;
          };
          after.tiers.forEach((tier, i) => {
            const hits = since(tier.hits, before.tiers[i]?.hits);
            tierHitRate[tier.name] = round(hits / Math.max(1, o.reads), 4);
          });
          const record: WorkersRecord = {
            ...runFigures(mode, writeRatio, o),
            tierHitRate,
            d1LoadsPerRequest: round(since(after.loads, before.loads) / Math.max(1, o.requests), 4),
            countersRestarted,
            p50Ms: round(quantile(o.latencies, 0.5), 2),
            p99Ms: round(quantile(o.latencies, 0.99), 2),
            hitP50Ms: round(quantile(o.hitLatencies, 0.5), 2),
            writeP50Ms: round(quantile(o.writeLatencies, 0.5), 2),
            writeP99Ms: round(quantile(o.writeLatencies, 0.99), 2),
            requestsPerSecond: round(o.requests / (o.elapsedMs / 1000), 1),
          };
          records.push(record);
          staleSamples.push(...o.staleSamples);
          log(
            `${pctLabel(writeRatio)} writes, ${mode}: hit rate ${record.hitRate} ` +
              `(${Object.entries(tierHitRate)
                .map(([t, r]) => `${t} ${r}`)
                .join(", ")}), stale ${record.staleReads}, p50 ${record.p50Ms} ms, ` +
              `write p50 ${record.writeP50Ms} ms, ${record.requestsPerSecond} req/s` +
              (record.errors ? `, ${record.errors} errors` : ""),
          );
        } finally {
          client.close();
          await dev.stop();
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const seconds = Math.round((Date.now() - started) / 1000);
  const git = gitState();
  const machine = machineLine();
  const path = writeResults(
    options.out,
    { command, date: new Date().toISOString(), git, machine, options, records, staleSamples },
    markdown(records, describeCode(git), machine),
  );
  console.log(`\n${table(records)}\n\nwrote ${path}.json and .md in ${seconds} s`);
  if (records.some((r) => r.staleReads > 0)) {
    console.error("[bench] the Worker served stale reads; see the samples in the JSON");
    process.exitCode = 1;
  }
}

function table(records: WorkersRecord[]): string {
  const rows = records.map((r) => {
    const strict = records.find((s) => s.mode === "strict" && s.writeRatio === r.writeRatio);
    const ratio = (x: number, y: number | undefined) => (y ? `${(x / y).toFixed(2)}x` : "");
    const tiers = Object.entries(r.tierHitRate)
      .map(([t, rate]) => `${t} ${r.countersRestarted ? "≥ " : ""}${(rate * 100).toFixed(1)}%`)
      .join(", ");
    return `| ${pctLabel(r.writeRatio)} | ${r.mode} | ${(r.hitRate * 100).toFixed(1)}% | ${tiers} | ${r.staleReads} | ${r.d1LoadsPerRequest} | ${r.p50Ms} | ${r.p99Ms} | ${r.writeP50Ms} | ${r.writeP99Ms} | ${r.requestsPerSecond} | ${r.mode === "strict" ? "1.00x" : ratio(r.p50Ms, strict?.p50Ms)} | ${r.mode === "strict" ? "1.00x" : ratio(r.writeP50Ms, strict?.writeP50Ms)} |`;
  });
  return [
    "| writes | mode | hit rate | hits per tier (of reads) | stale reads | D1 loads per request | p50 ms | p99 ms | write p50 ms | write p99 ms | req/s | p50 vs strict | write p50 vs strict |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

function markdown(records: WorkersRecord[], code: string, machine: string): string {
  return `# edgecache on Workers (wrangler dev): strict against lease

Command: \`${command}\` (${code}), ${new Date().toISOString()}.
Machine: ${machine}. ${options.users} users, ${options.orders} orders, ${options.requests} requests per run,
${options.connections} connections, seed ${options.seed}; each run on a fresh local state (D1 seeded, KV, Cache
API and Durable Object empty), every read the sequence makes read once before it (warming).

${table(records)}

wrangler dev runs one isolate, so every read after warming can be a memory hit; the
lease/strict ratios are of the same run's strict figures. Strict asks the Durable Object
before each request; lease only when half of its lease (2 s) is gone, and a write then waits
for no other isolate here (there is none). Latency is of workerd on this machine through
wrangler's local proxy, not of Cloudflare's network.
`;
}
