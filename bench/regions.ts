/**
 * The regions benchmark: nodes sharing Redis (and one database), one per region, each
 * node's Redis link (and PostgreSQL link, with --source postgres) through a relay of its
 * own that adds the region's round trip; the workload's sequences and stale-read oracle;
 * the same nodes with every relay at 0 ms in the same run as the baseline; then a
 * partition of one region. See bench/regions/regions.ts and docs/guides/regions.md.
 *
 *   npm run bench:regions              # 1, 40 and 90 ms, 5% writes, 20,000 requests
 *   npm run bench:regions -- --quick   # 3,000 requests, a shorter partition run: ~2 minutes
 *
 * Needs Redis (--redis, else REDIS_URL, else redis://127.0.0.1:6379) and, with --source
 * postgres, PostgreSQL (EDGECACHE_BENCH_PG). Writes `<out>.json` and `<out>.md` (default
 * bench/results/regions). Exits 1 if any run read anything stale.
 *
 * Flags: --rtts 1,40,90, --ratios 0.05, --requests n, --connections n (per region),
 * --source sqlite|postgres, --partition-region n (1-based; 0: no partition run),
 * --partition-s before,cut,after, --users n, --orders n, --strategy, --redis url, --seed n,
 * --out path, --quick, --against dir, --rounds n.
 *
 *   mkdir /tmp/before && git archive <commit> | tar -x -C /tmp/before
 *   echo <commit> > /tmp/before/.commit && ln -s $PWD/node_modules /tmp/before/
 *   npm run bench:regions -- --against /tmp/before --rounds 2   # before/after in turn
 *
 * --against takes another checkout: its nodes run the `regions` setup too, in turn with
 * this checkout's (before, after, ...) `--rounds` times (1), so the load on the machine
 * weighs on both alike; the report compares the medians.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { runBench } from "./lib/processes.ts";
import { BenchRedis } from "./lib/redis.ts";
import { benchHead, describeHead, writeResults } from "./lib/results.ts";
import { commandLine, fail, positiveInt, readFlags } from "./lib/settings.ts";
import { type RegionsOptions, runRegions } from "./regions/regions.ts";
import {
  againstTable,
  nodeTable,
  partitionLines,
  partitionTable,
  ratioTable,
  regionsTable,
  targetLines,
} from "./regions/report.ts";
import { readWorkloadFlags, workloadFlags } from "./workload/flags.ts";
import type { Strategy } from "./workload/strategies.ts";
import { SOURCES, type SourceName } from "./workload/workload.ts";

const CACHING: Strategy[] = ["edgecache-rehydrate", "edgecache"];

const options = readFlags(() => {
  const { values } = parseArgs({
    options: {
      ...workloadFlags({ ratios: "0.05", out: "bench/results/regions" }),
      connections: { type: "string", default: "4" },
      rtts: { type: "string", default: "1,40,90" },
      source: { type: "string", default: "sqlite" },
      "partition-region": { type: "string", default: "2" },
      "partition-s": { type: "string" },
      strategy: { type: "string", default: "edgecache-rehydrate" },
      redis: { type: "string", default: process.env.REDIS_URL ?? "redis://127.0.0.1:6379" },
      against: { type: "string" },
      rounds: { type: "string", default: "1" },
    },
  });
  const against = values.against === undefined ? undefined : resolve(values.against);
  if (against && !existsSync(join(against, "bench", "servers", "workload-server.ts"))) {
    fail(`--against: expected a checkout with bench/servers/workload-server.ts, got ${against}`);
  }
  if (!CACHING.includes(values.strategy as Strategy)) {
    fail(`--strategy: expected one of ${CACHING.join(", ")}, got ${values.strategy}`);
  }
  if (!SOURCES.includes(values.source as SourceName)) {
    fail(`--source: expected one of ${SOURCES.join(", ")}, got ${values.source}`);
  }
  const rtts = values.rtts.split(",").map((x) => {
    const n = Number(x);
    if (x.trim() === "" || !(Number.isFinite(n) && n >= 0)) {
      fail(`--rtts: expected round trips in ms (0 or more), got ${x}`);
    }
    return n;
  });
  if (rtts.length < 2) fail(`--rtts: expected at least 2 regions, got ${values.rtts}`);
  const region = Number(values["partition-region"]);
  if (!(Number.isInteger(region) && region >= 0 && region <= rtts.length)) {
    fail(`--partition-region: expected 0 to ${rtts.length}, got ${values["partition-region"]}`);
  }
  const phases = (values["partition-s"] ?? (values.quick ? "5,5,5" : "10,5,10"))
    .split(",")
    .map((s) => positiveInt("partition-s", s) * 1000);
  if (phases.length !== 3) fail(`--partition-s: expected before,cut,after in s`);
  const workload = readWorkloadFlags({
    ...values,
    requests: values.requests ?? (values.quick ? "3000" : "20000"),
  });
  return {
    ...workload,
    rtts,
    source: values.source as SourceName,
    strategy: values.strategy as Strategy,
    redis: new BenchRedis(values.redis),
    partition:
      region === 0
        ? undefined
        : { region: region - 1, beforeMs: phases[0]!, cutMs: phases[1]!, afterMs: phases[2]! },
    ...(against && { against, rounds: positiveInt("rounds", values.rounds) }),
    out: values.out,
    log: (line: string) => console.log(line),
  } satisfies RegionsOptions & { out: string };
});

/** The commit a checkout made with `git archive` or `git worktree` holds (from .commit, or git). */
function commitOf(dir: string): string {
  const file = join(dir, ".commit");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const head = spawnSync("git", ["-C", dir, "rev-parse", "--short", "HEAD"], { encoding: "utf8" });
  return head.status === 0 ? head.stdout.trim() : "unknown";
}

await runBench(async () => {
  const command = commandLine("bench:regions");
  const started = Date.now();
  const loadavgBefore = loadavg();
  await options.redis.check();
  try {
    const { records, partitions, stale } = await runRegions(options);
    const { redis, log: _log, out, ...settings } = options;
    const json = {
      ...benchHead(command, started, loadavgBefore),
      settings: {
        ...settings,
        redis: redis.url,
        ...(options.against && { againstCommit: commitOf(options.against) }),
      },
      records,
      partitions,
      stale,
    };
    const n = options.rtts.length;
    const links =
      options.source === "postgres"
        ? "its Redis link and its PostgreSQL link each through a relay of its own"
        : "its Redis link through a relay of its own (the database is one SQLite file on this machine: that link has no distance)";
    const partitionText = partitions
      .map(
        (
          p,
        ) => `## Partition of region ${p.region} (${p.rtts[p.region - 1]} ms), ${(p.writeRatio * 100).toFixed(1)}% writes

The same ${n} regions at distance on a fresh database, run for ${(p.beforeMs + p.cutMs + p.afterMs) / 1000} s by the clock (each region's clients send until then): after ${p.beforeMs / 1000} s region ${p.region}'s relays stop forwarding (bytes are held, connections stay open, as on a link gone dark) for ${p.cutMs / 1000} s, then deliver what they held and forward again. Requests count in the phase in which they were sent; **answers / s** counts the answers that came back within the phase.

The regions' clients (closed loop: a client whose request is held sends nothing else until it is answered):

${partitionTable(p, "clients")}

Probe reads, one per region every ${p.probeEveryMs} ms whatever came before (open loop), judged by the same oracle: what a newcomer to the region is answered.

${partitionTable(p, "probes")}

${partitionLines(p).join("\n")}
`,
      )
      .join("\n");
    const markdown = `# Regions: ${n} nodes at ${options.rtts.join(", ")} ms from Redis

${describeHead(json)}

The workload benchmark's database (${options.users.toLocaleString("en-US")} users, ${options.orders.toLocaleString("en-US")} orders, ${options.source === "postgres" ? "PostgreSQL" : "SQLite"}), request sequences and stale-read oracle ([workload.md](workload.md)), strategy \`${options.strategy}\`. ${n} nodes sharing Redis (change log and shared tier, under a fresh key prefix per setup) and one database, one node per region, each node with ${links}. A relay holds each chunk for half the round trip in each direction, in order (this kernel has no \`netem\`). Each region has ${options.connections} keep-alive clients of its own and sends request i of the sequence when i mod ${n} is its number (${options.requests.toLocaleString("en-US")} requests per setup in all, a third each): a slow region slows its own clients, not the others'. Writes to one row stay serialized across regions, and one oracle judges every region's reads. Each setup starts on a fresh copy of the database and warms each region with its reads (each once) with every relay at 0 ms; the delays are set after. **baseline**: the same nodes with every relay at 0 ms, same run.

${regionsTable(records)}

- **write p50 / p99 in RTTs**: the write's latency over the region's round trip to Redis.
- **req/s**: the region's requests over the time from the start to its last answer.
- **errors**: responses a correct server would not send (5xx, a write refused, no answer); **writes refused**: those answered 4xx, which here may also be the driver's doing (regions keep their own pace, so a write can come after a later write of the sequence deleted its row).

Against the baseline (same region, every relay at 0 ms):

${ratioTable(records)}

By the nodes' own counters:

${nodeTable(records)}
${
  options.against
    ? `
Before (the nodes of ${options.against}, commit ${json.settings.againstCommit}) and after (this checkout), the \`regions\` setup in turn, ${options.rounds} round(s) of each, same database, sequence and clients; the median of the rounds:

${againstTable(records)}
`
    : ""
}
${partitionText}
Targets:

${targetLines(records, partitions).join("\n")}

Command:

\`\`\`sh
${command}
\`\`\`
`;
    const path = writeResults(out, json, markdown);
    console.log(
      `\n${regionsTable(records)}\n\n${ratioTable(records)}\n\n${options.against ? `${againstTable(records)}\n\n` : ""}${partitions.map((p) => `${partitionTable(p, "clients")}\n\n${partitionTable(p, "probes")}\n${partitionLines(p).join("\n")}`).join("\n\n")}\n\n${targetLines(records, partitions).join("\n")}\n\nwrote ${path}.json and .md in ${json.seconds} s`,
    );
    for (const s of stale.slice(0, 6)) {
      console.log(`stale under ${s.setup} (${s.writeRatio}):`, JSON.stringify(s.samples[0]));
    }
    if (stale.length > 0) {
      console.error("[bench] stale reads; see above");
      process.exitCode = 1;
    }
  } finally {
    options.redis.close();
  }
});
