/**
 * The workload benchmark: hit rate, database load, stale reads and latency of the data API
 * under each caching strategy (no cache, TTL only, table-level invalidation, edgecache with
 * and without rehydration), at write ratios 0 to 30%, on one request sequence per ratio.
 *
 *   npm run bench:workload              # 10,000 users, 50,000 orders, 20,000 requests each
 *   npm run bench:workload -- --quick   # the same database, 2,000 requests: under 2 minutes
 *   npm run bench:workload -- --source postgres --out bench/results/workload-postgres
 *
 * Writes `<out>.json` (one record per strategy and ratio), `<out>.md` and `<out>.svg`
 * (default bench/results/workload). Exits 1 if edgecache's strategies read anything stale.
 *
 * Flags: --users n, --orders n, --requests n, --connections n, --ratios 0,0.01,...,
 * --strategies a,b, --seed n, --out path, --quick, --source sqlite|postgres (PostgreSQL:
 * EDGECACHE_BENCH_PG, default postgres://postgres@127.0.0.1:5432/postgres; a database per run).
 */
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { commandLine, fail, readFlags } from "./lib/settings.ts";
import { readWorkloadFlags, workloadFlags } from "./workload/flags.ts";
import { chartSvg, markdownTable, type WorkloadRecord } from "./workload/report.ts";
import { STRATEGIES, type Strategy } from "./workload/strategies.ts";
import {
  PROBE_REQUESTS,
  pctLabel,
  runWorkload,
  SOURCES,
  type SourceName,
  type WorkloadOptions,
} from "./workload/workload.ts";

const TARGETS = { hitRateAt5: 0.95, hitRateAt10: 0.9, queriesAt5: 0.1, hitP50Ms: 1 };

const { options, out } = readFlags(() => {
  const { values } = parseArgs({
    options: {
      ...workloadFlags({ ratios: "0,0.01,0.05,0.1,0.3", out: "bench/results/workload" }),
      strategies: { type: "string", default: STRATEGIES.join(",") },
      source: { type: "string", default: "sqlite" },
    },
  });
  const source = values.source as SourceName;
  if (!SOURCES.includes(source)) fail(`--source: expected one of ${SOURCES}, got ${values.source}`);
  const strategies = values.strategies.split(",").map((s) => {
    if (!STRATEGIES.includes(s as Strategy)) {
      fail(`--strategies: expected some of ${STRATEGIES.join(", ")}, got ${s}`);
    }
    return s as Strategy;
  });
  const options: WorkloadOptions = {
    ...readWorkloadFlags(values),
    strategies,
    source,
    log: (line) => console.log(line),
  };
  return { options, out: values.out };
});

const command = commandLine("bench:workload");
const started = Date.now();
const { records, stale } = await runWorkload(options);
const seconds = Math.round((Date.now() - started) / 1000);
const git = gitState();
const path = writeResults(out, records, markdown(records));
writeFileSync(`${path}.svg`, chartSvg(records));
console.log(`\n${markdownTable(records)}\n\nwrote ${path}.json, .md and .svg in ${seconds} s`);
for (const s of stale.slice(0, 6)) {
  console.log(
    `stale under ${s.strategy} at ${pctLabel(s.writeRatio)}:`,
    JSON.stringify(s.samples[0]),
  );
}
const wrong = records.filter((r) => r.strategy.startsWith("edgecache") && r.staleReads > 0);
if (wrong.length > 0) {
  console.error("[bench] edgecache served stale reads; see above");
  process.exitCode = 1;
}

function markdown(records: WorkloadRecord[]): string {
  return `# Workload: hit rate, database load and stale reads by strategy

${new Date().toISOString()}, ${describeCode(git)}. Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}. ${seconds} s in all.

${options.source === "postgres" ? "Over PostgreSQL 15 (a database per run, on loopback). " : "Over SQLite. "}${options.users.toLocaleString("en-US")} users and ${options.orders.toLocaleString("en-US")} orders (the demo schema plus a version column per row); ${options.requests.toLocaleString("en-US")} requests per strategy and write ratio from ${options.connections} concurrent keep-alive clients; the same sequence for every strategy at a ratio. Reads follow Zipf (s = 1.1) over item reads (users, orders, the join view), filtered, prefix and sorted/paginated lists, and join-view lists; writes are updates that move rows between filters and pages, inserts, and deletes (users cascade to their orders), with popular rows written more often. Each caching strategy is warmed first with every read of its sequence once, so these are a running cache's figures rather than a cold start's. One memory tier; the strategies differ only in the cache's invalidation policy.

![hit rate and stale reads against write ratio](${basename(out)}.svg)

${markdownTable(records)}

- **hit rate**: hits / reads, from each response's Cache-Status; writes are not cached.
- **stale reads**: reads the oracle (bench/workload/oracle.ts) found stale: a row older than a write acknowledged before the read began, a deleted row, a 404 for a row that existed, or a list or join missing a row its filter and window include.
- **DB queries / request**: statements the server ran (reads and writes, including rehydration); **/ write**: beyond the same strategy's read-only run, per write.
- **hit p50**: the hits' median within the loaded run (it includes queueing behind ${options.connections} clients on 2 shared cores) and of ${PROBE_REQUESTS} hot reads sent one at a time.

Targets for edgecache: no stale reads; hit rate ≥ ${TARGETS.hitRateAt5 * 100}% at 5% writes and ≥ ${TARGETS.hitRateAt10 * 100}% at 10%; DB queries ≤ ${TARGETS.queriesAt5 * 100}% of no cache at 5% writes; hit p50 < ${TARGETS.hitP50Ms} ms.

${targetLines(records).join("\n")}

Command:

\`\`\`sh
${command}
\`\`\`
`;
}

function targetLines(records: WorkloadRecord[]): string[] {
  const at = (strategy: Strategy, ratio: number) =>
    records.find((r) => r.strategy === strategy && r.writeRatio === ratio);
  const lines: string[] = [];
  for (const s of ["edgecache", "edgecache-rehydrate"] as const) {
    const mine = records.filter((r) => r.strategy === s);
    if (mine.length === 0) continue;
    const stale = mine.reduce((n, r) => n + r.staleReads, 0);
    const parts = [`stale reads ${stale} (${stale === 0 ? "met" : "MISSED"})`];
    const five = at(s, 0.05);
    const ten = at(s, 0.1);
    const none = at("no-cache", 0.05);
    if (five) parts.push(check("hit rate at 5%", five.hitRate, TARGETS.hitRateAt5, true));
    if (ten) parts.push(check("hit rate at 10%", ten.hitRate, TARGETS.hitRateAt10, true));
    if (five && none) {
      const share = five.dbQueriesPerRequest / Math.max(1e-9, none.dbQueriesPerRequest);
      parts.push(check("DB queries vs no cache at 5%", share, TARGETS.queriesAt5, false));
    }
    const probe = mine.map((r) => r.hitP50UnloadedMs).filter((x) => x !== null);
    if (probe.length) {
      const worst = Math.max(...probe);
      parts.push(
        `hit p50 alone ≤ ${worst.toFixed(2)} ms (${worst < TARGETS.hitP50Ms ? "met" : "MISSED"})`,
      );
    }
    lines.push(`- **${s}**: ${parts.join("; ")}.`);
  }
  return lines;
}

function check(name: string, value: number, target: number, atLeast: boolean): string {
  const met = atLeast ? value >= target : value <= target;
  return `${name} ${(value * 100).toFixed(1)}% (${met ? "met" : "MISSED"})`;
}
