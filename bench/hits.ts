/**
 * Cache hits through edgecache against a bare node:http server sending the same bytes,
 * measured in one run; the result is the ratio of their requests per second.
 *
 *   npm run bench:hits -- --tool wrk --duration 10 --connections 50 --rounds 3
 *
 * Each server runs in a child process of its own, apart from this driver and the load
 * tool: with 2 cores, a server sharing a process with its load generator would measure
 * the generator. The rounds alternate the targets (ABAB...) so that noise from other
 * work on a shared machine lands on both, and each target's median is taken. Each
 * server's CPU time per request (from /proc) is reported beside it: on 2 shared cores,
 * throughput also moves with how wrk and the server happen to be scheduled.
 * Writes `<out>.json` and `<out>.md` (default bench/results/hits).
 *
 * Flags: --tool wrk|autocannon (default wrk when installed), --duration s, --connections n,
 * --rounds n, --warmup s, --threads n (wrk), --path /v1/..., --out path, --cpu-prof dir,
 * --pin (servers and load tool on separate CPUs, with taskset).
 */
import { loadavg } from "node:os";
import { startBare } from "./lib/bare.ts";
import { onlyFreshHits, request } from "./lib/http.ts";
import { LoadTool } from "./lib/load.ts";
import { benchServer, makeTmpDir, runBench, type Server, startServer } from "./lib/processes.ts";
import {
  describeCommand,
  describeMachine,
  describeRun,
  formatRps,
  runHead,
  runTail,
  writeResults,
} from "./lib/results.ts";
import { alternateRounds, median, round3 } from "./lib/rounds.ts";
import { commandLine, fail, readBenchFlags } from "./lib/settings.ts";

const TARGET_RATIO = 0.8;

const options = readBenchFlags(
  { path: "/v1/users?firstName=Lane&limit=10", out: "bench/results/hits" },
  (path) => {
    if (!path.startsWith("/v1/")) fail(`--path: expected a data API path under /v1/, got ${path}`);
  },
);
const { duration, connections, rounds, path } = options;
const tool = new LoadTool(options);
const command = commandLine("bench:hits");

type Target = "edgecache" | "bare";

const tmp = makeTmpDir();

await runBench(main);

async function main(): Promise<void> {
  const startLoad = loadavg();
  const spec = { cpu: options.pin?.server, cpuProf: options.cpuProf };
  const servers = {} as Record<Target, Server>;
  servers.edgecache = await startServer({
    ...spec,
    name: "edgecache",
    argv: benchServer("edgecache-server.ts", ["--dir", tmp, "--path", path]),
  });
  const edgecache = servers.edgecache.url;

  // Measuring misses would be meaningless: insist on a hit before any load.
  const hit = await request(edgecache + path);
  const cacheStatus = hit.headers["cache-status"] ?? "";
  if (hit.status !== 200 || !cacheStatus.startsWith("edgecache; hit")) {
    fail(
      `${path} on edgecache: expected 200 and cache-status "edgecache; hit...", got ${hit.status} "${cacheStatus}"`,
    );
  }
  servers.bare = (await startBare(hit, path, tmp, spec)).server;

  console.log(
    `${options.tool}: ${connections} connections, ${duration} s x ${rounds} rounds per target, ${body(hit.body.length)}`,
  );
  const { rps, cpuUs } = await alternateRounds<Target>(tool, options, [
    {
      name: "edgecache",
      url: edgecache + path,
      pid: servers.edgecache.pid,
      watch: onlyFreshHits(edgecache),
    },
    { name: "bare", url: servers.bare.url + path, pid: servers.bare.pid },
  ]);

  const medianRps = { edgecache: median(rps.edgecache), bare: median(rps.bare) };
  const ratio = round3(medianRps.edgecache / medianRps.bare);
  const roundRatios = rps.edgecache.map((e, i) => round3(e / rps.bare[i]!));
  const medianCpuUs = cpuUs.edgecache.length
    ? { edgecache: median(cpuUs.edgecache), bare: median(cpuUs.bare) }
    : undefined;
  const result = {
    ...runHead(tool, options),
    path,
    pin: options.pin,
    bodyBytes: hit.body.length,
    rps,
    medianRps,
    ratio,
    roundRatios,
    cpuUsPerRequest: medianCpuUs && cpuUs,
    medianCpuUsPerRequest: medianCpuUs,
    // Bare CPU cost over edgecache's: the same comparison as `ratio`, from CPU time
    // instead of throughput, so less sensitive to how the 2 cores were shared.
    cpuRatio: medianCpuUs && round3(medianCpuUs.bare / medianCpuUs.edgecache),
    target: TARGET_RATIO,
    meetsTarget: ratio >= TARGET_RATIO,
    ...runTail(tool, options, command, startLoad),
  };
  const out = writeResults(options.out, result, markdown(result));
  console.log(
    `median: edgecache ${medianRps.edgecache} req/s, bare ${medianRps.bare} req/s, ratio ${ratio} (target ${TARGET_RATIO}) -> ${out}.{json,md}`,
  );
}

// --- output -------------------------------------------------------------------------

type Result = Parameters<typeof describeRun>[0] & {
  path: string;
  bodyBytes: number;
  rps: Record<Target, number[]>;
  medianRps: Record<Target, number>;
  ratio: number;
  roundRatios: number[];
  medianCpuUsPerRequest: Record<Target, number> | undefined;
  cpuRatio: number | undefined;
};

function markdown(r: Result): string {
  const cpu = (t: Target) => r.medianCpuUsPerRequest?.[t].toFixed(1) ?? "n/a";
  return `# Cache hits: edgecache vs bare node:http

${describeRun(r, ["edgecache", "bare"])}, ${body(r.bodyBytes)} of \`${r.path}\`.
${describeMachine(r)}

| target | req/s per round | median req/s | server CPU µs per request (median) |
| --- | --- | --- | --- |
| edgecache (memory-tier hit) | ${r.rps.edgecache.map(formatRps).join(", ")} | ${formatRps(r.medianRps.edgecache)} | ${cpu("edgecache")} |
| bare node:http, same bytes | ${r.rps.bare.map(formatRps).join(", ")} | ${formatRps(r.medianRps.bare)} | ${cpu("bare")} |

**Ratio edgecache / bare: ${r.ratio}** (target ≥ ${TARGET_RATIO}: ${r.ratio >= TARGET_RATIO ? "met" : "not met"}); per round: ${r.roundRatios.join(", ")}.
CPU cost ratio bare / edgecache: ${r.cpuRatio ?? "n/a"}.
edgecache answers these hits on its raw-socket path (src/adapter/node/server/raw-hits.ts), before node:http parses the request, so it can exceed a node:http server sending the same bytes.

${describeCommand(r)}`;
}

function body(bytes: number): string {
  return `${bytes} B body`;
}
