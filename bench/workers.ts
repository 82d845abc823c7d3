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
 * isolates at once (test/consistency/workers.property.test.ts checks those for staleness).
 *
 * Flags: --users n, --orders n, --requests n, --connections n, --ratios 0,0.05,...,
 * --modes strict,lease, --seed n, --out path, --quick.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { literal as sqlText } from "../src/sources/sql.ts";
import {
  startWranglerDev,
  WRANGLER,
  WRANGLER_ENV,
  WRANGLER_ROOT,
} from "../test/helpers/wrangler-dev.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { commandLine, fail, readFlags } from "./lib/settings.ts";
import { readSmallWorkloadFlags, workloadFlags } from "./workload/flags.ts";
import { StaleOracle } from "./workload/oracle.ts";
import { Client, readAll, runSequence } from "./workload/run.ts";
import { pctLabel, prepareDatabase, quantile, round, sequences } from "./workload/workload.ts";

const MODES = ["strict", "lease"] as const;
type Mode = (typeof MODES)[number];

const options = readFlags(() => {
  const { values } = parseArgs({
    options: {
      ...workloadFlags({ ratios: "0,0.05", out: "bench/results/workers" }),
      modes: { type: "string", default: MODES.join(",") },
    },
  });
  const modes = values.modes.split(",").map((m) => {
    if (!MODES.includes(m as Mode)) fail(`--modes: expected some of ${MODES.join(",")}, got ${m}`);
    return m as Mode;
  });
  // Smaller than bench:workload's defaults: local D1 loads through workerd are slower.
  const flags = readSmallWorkloadFlags(values, { quick: "1000", full: "4000" });
  return { ...flags, modes, out: values.out };
});

interface Stats {
  hits: number;
  staleHits: number;
  misses: number;
  loads: number;
  refused: number;
  tiers: { name: string; hits: number; misses: number; errors: number }[];
}

interface WorkersRecord {
  mode: Mode;
  writeRatio: number;
  requests: number;
  reads: number;
  writes: number;
  errors: number;
  staleReads: number;
  hitRate: number;
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
const { template, data } = prepareDatabase(options, log);
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
        const reads = [...new Set(ops.filter((o) => o.kind === "read").map((o) => o.path))];
        await readAll(client, reads, options.connections);
        const oracle = new StaleOracle({
          users: data.users.map((u) => u.id),
          orders: data.orders.map((o) => o.id),
        });
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
          mode,
          writeRatio,
          requests: o.requests,
          reads: o.reads,
          writes: o.writes,
          errors: o.errors,
          staleReads: o.staleReads,
          hitRate: round(o.hits / Math.max(1, o.reads), 4),
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
const machine = `${cpus().length} CPUs (${cpus()[0]?.model ?? "?"}), load ${loadavg()
  .map((l) => l.toFixed(2))
  .join(" ")} at the end, Node ${process.version}`;
const path = writeResults(
  options.out,
  { command, date: new Date().toISOString(), git, machine, options, records, staleSamples },
  markdown(),
);
console.log(`\n${table()}\n\nwrote ${path}.json and .md in ${seconds} s`);
if (records.some((r) => r.staleReads > 0)) {
  console.error("[bench] the Worker served stale reads; see the samples in the JSON");
  process.exitCode = 1;
}

function table(): string {
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

function markdown(): string {
  return `# edgecache on Workers (wrangler dev): strict against lease

Command: \`${command}\` (${describeCode(git)}), ${new Date().toISOString()}.
Machine: ${machine}. ${options.users} users, ${options.orders} orders, ${options.requests} requests per run,
${options.connections} connections, seed ${options.seed}; each run on a fresh local state (D1 seeded, KV, Cache
API and Durable Object empty), every read the sequence makes read once before it (warming).

${table()}

wrangler dev runs one isolate, so every read after warming can be a memory hit; the
lease/strict ratios are of the same run's strict figures. Strict asks the Durable Object
before each request; lease only when half of its lease (2 s) is gone, and a write then waits
for no other isolate here (there is none). Latency is of workerd on this machine through
wrangler's local proxy, not of Cloudflare's network.
`;
}

/** The template database as SQL statements D1 runs (`wrangler d1 execute --file`). */
function sqlDump(path: string): string {
  const db = new Database(path, { readonly: true });
  try {
    const lines = ["PRAGMA defer_foreign_keys = true;"];
    const schema = db
      .prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'")
      .all() as { sql: string }[];
    // Tables before indexes, as sqlite_schema lists them.
    for (const { sql } of schema) lines.push(`${sql};`);
    for (const table of ["users", "orders"]) {
      const rows = db.prepare(`SELECT * FROM ${table}`).all() as Record<string, unknown>[];
      for (const row of rows) {
        const names = Object.keys(row);
        const values = Object.values(row).map(literal);
        lines.push(`INSERT INTO ${table} (${names.join(", ")}) VALUES (${values.join(", ")});`);
      }
    }
    return `${lines.join("\n")}\n`;
  } finally {
    db.close();
  }
}

function literal(value: unknown): string {
  if (value === null) return "NULL";
  return typeof value === "number" ? String(value) : sqlText(String(value));
}
