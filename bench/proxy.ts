/**
 * Cache hits through edgecache's proxy, against nginx with `proxy_cache` (Debian's nginx,
 * one worker) in front of the same origin and against a bare node:http server sending the
 * bytes of edgecache's hit, measured in one run with one load tool; the results are the
 * ratios of their requests per second.
 *
 *   npm run bench:proxy -- --tool wrk --duration 10 --connections 50 --rounds 5
 *
 * Needs nginx (apt-get install nginx-light) and, for the default tool, wrk. The origin
 * (servers/proxy-origin.ts) answers `--path` with about 1.2 KB of JSON that shared caches
 * may keep for an hour, and counts its requests: none may reach it while the load runs.
 * Each server runs in a child process of its own; the rounds alternate the targets
 * (edgecache, nginx, bare, ...) and each target's median is taken, beside its CPU time per
 * request (from /proc; for nginx, master and worker). Before any load, both caches must
 * answer a hit with the origin's body, and the bare server edgecache's exact reply.
 * Writes `<out>.json` and `<out>.md` (default bench/results/proxy).
 *
 * Flags: --tool wrk|autocannon (default wrk when installed), --duration s, --connections n,
 * --rounds n, --warmup s, --threads n (wrk), --path /api/items/<id>, --out path,
 * --cpu-prof dir (edgecache and bare), --pin (servers and load tool on separate CPUs).
 */
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { startBare } from "./lib/bare.ts";
import { onlyFreshHits, type Reply, request, responseBytes } from "./lib/http.ts";
import { LoadTool } from "./lib/load.ts";
import {
  benchServer,
  freePort,
  makeTmpDir,
  ROOT,
  runBench,
  type Server,
  type ServerSpec,
  startServer,
} from "./lib/processes.ts";
import {
  describeCommand,
  describeMachine,
  describeRun,
  formatRps,
  runHead,
  runTail,
  writeResults,
} from "./lib/results.ts";
import { alternateRounds, median, round3, type Watch, watchAll } from "./lib/rounds.ts";
import { commandLine, fail, readBenchFlags } from "./lib/settings.ts";

/** The issue's targets: edgecache's hits per second over each baseline's. */
const TARGETS = { bare: 0.8, nginx: 0.7 } as const;

const options = readBenchFlags({ path: "/api/items/42", out: "bench/results/proxy" }, (path) => {
  if (!/^\/api\/items\/\d+$/.test(path)) {
    fail(`--path: expected /api/items/<id> (what the origin answers), got ${path}`);
  }
});
const { duration, connections, rounds, path } = options;
const tool = new LoadTool(options);
const command = commandLine("bench:proxy");

type Target = "edgecache" | "nginx" | "bare";
type Baseline = Exclude<Target, "edgecache">;
const TARGET_NAMES: readonly Target[] = ["edgecache", "nginx", "bare"];
const BASELINES: readonly Baseline[] = ["nginx", "bare"];

const tmp = makeTmpDir();

await runBench(main);

async function main(): Promise<void> {
  const startLoad = loadavg();
  const server = (spec: ServerSpec) => startServer({ cpu: options.pin?.server, ...spec });
  const origin = await server({ name: "origin", argv: benchServer("proxy-origin.ts", []) });
  const originReply = await request(origin.url + path);
  if (originReply.status !== 200) fail(`${path} on the origin: ${originReply.status}`);

  const servers = {} as Record<Target, Server>;
  servers.edgecache = await startEdgecache(origin.url);
  servers.nginx = await server({
    name: "nginx",
    argv: benchServer("proxy-nginx.ts", ["--origin", origin.url, "--dir", join(tmp, "nginx")]),
    // The wrapper passes SIGTERM on to nginx's master, which stops its worker.
    lastResort: "SIGTERM",
  });

  // Measuring misses would be meaningless: each cache stores the reply on a first request
  // and must answer the next one as a hit, with the origin's body.
  const hits = {} as Record<Target, Reply>;
  hits.edgecache = await secondReply(servers.edgecache.url, "cache-status", /^edgecache; hit/);
  hits.nginx = await secondReply(servers.nginx.url, "x-cache-status", /^HIT$/);

  const bare = await startBare(hits.edgecache, path, tmp, {
    cpu: options.pin?.server,
    cpuProf: options.cpuProf,
  });
  servers.bare = bare.server;
  hits.bare = bare.copy;
  for (const target of TARGET_NAMES) {
    if (!hits[target].body.equals(originReply.body)) {
      fail(`${target} does not send the origin's body for ${path}; nothing to compare`);
    }
  }
  const bytes = {} as Record<Target, number>;
  for (const target of TARGET_NAMES)
    bytes[target] = await responseBytes(servers[target].url + path);

  const originBefore = await originRequests(origin.url);
  console.log(
    `${options.tool}: ${connections} connections, ${duration} s x ${rounds} rounds per target, ${originReply.body.length} B body, ${TARGET_NAMES.map((t) => `${t} ${bytes[t]} B`).join(", ")} per response`,
  );
  const untouched = originUntouched(origin.url);
  const { rps, cpuUs } = await alternateRounds<Target>(tool, options, [
    {
      name: "edgecache",
      url: servers.edgecache.url + path,
      pid: servers.edgecache.pid,
      watch: watchAll(onlyFreshHits(servers.edgecache.url), untouched),
    },
    { name: "nginx", url: servers.nginx.url + path, pid: servers.nginx.pid, watch: untouched },
    { name: "bare", url: servers.bare.url + path, pid: servers.bare.pid },
  ]);
  const originAfter = await originRequests(origin.url);

  const medianRps = byTarget((t) => median(rps[t]));
  const ratio = byBaseline((b) => round3(medianRps.edgecache / medianRps[b]));
  const roundRatios = byBaseline((b) => rps.edgecache.map((e, i) => round3(e / rps[b][i]!)));
  const medianCpuUs = cpuUs.edgecache.length ? byTarget((t) => median(cpuUs[t])) : undefined;
  const result = {
    ...runHead(tool, options),
    nginx: (JSON.parse(servers.nginx.line) as { nginx?: string }).nginx,
    path,
    pin: options.pin,
    bodyBytes: originReply.body.length,
    /** Whole responses (status line, headers, body) as the load tool reads them. */
    responseBytes: bytes,
    headers: {
      origin: ownHeaders(originReply.headers),
      ...byTarget((t) => ownHeaders(hits[t].headers)),
    },
    rps,
    medianRps,
    ratio,
    roundRatios,
    cpuUsPerRequest: medianCpuUs && cpuUs,
    medianCpuUsPerRequest: medianCpuUs,
    // Each baseline's CPU cost per request over edgecache's: the comparison of `ratio`
    // from CPU time, less sensitive to how the 2 cores were shared.
    cpuRatio: medianCpuUs && byBaseline((b) => round3(medianCpuUs[b] / medianCpuUs.edgecache)),
    // The bare server over nginx: what node:http itself reaches against nginx. edgecache's
    // hits skip node:http's request parsing (raw-hits.ts), so this no longer bounds them.
    bareOverNginx: {
      ratio: round3(medianRps.bare / medianRps.nginx),
      roundRatios: rps.bare.map((b, i) => round3(b / rps.nginx[i]!)),
    },
    targets: TARGETS,
    meetsTargets: byBaseline((b) => ratio[b] >= TARGETS[b]),
    // Requests that reached the origin: warming only, none during the load.
    originRequests: { beforeLoad: originBefore, afterLoad: originAfter },
    nginxConfig: readFileSync(join(tmp, "nginx", "nginx.conf"), "utf8").replaceAll(tmp, "<tmp>"),
    ...runTail(tool, options, command, startLoad),
  };
  const out = writeResults(options.out, result, markdown(result));
  console.log(
    `median: ${TARGET_NAMES.map((t) => `${t} ${medianRps[t]} req/s`).join(", ")}; edgecache/bare ${ratio.bare} (target ${TARGETS.bare}), edgecache/nginx ${ratio.nginx} (target ${TARGETS.nginx}) -> ${out}.{json,md}`,
  );
}

/**
 * `edgecache proxy` as a user runs it (bin/edgecache.js), memory tier only, on a port
 * picked here; ready when it prints a line with its address.
 */
async function startEdgecache(originUrl: string): Promise<Server> {
  const port = await freePort();
  return startServer({
    name: "edgecache",
    argv: [
      ...[join(ROOT, "bin", "edgecache.js"), "proxy", "--origin", originUrl],
      ...["--host", "127.0.0.1", "--port", String(port), "--no-cache-file"],
    ],
    // Its own folder, so that no config file or cache file of the checkout is picked up.
    cwd: tmp,
    cpuProf: options.cpuProf,
    cpu: options.pin?.server,
    readyUrl: (line) =>
      new RegExp(`//127\\.0\\.0\\.1:${port}\\b`).test(line)
        ? `http://127.0.0.1:${port}`
        : undefined,
  });
}

/** The reply to a second GET of `path`, which must carry `header` matching `hit`. */
async function secondReply(base: string, header: string, hit: RegExp): Promise<Reply> {
  const first = await request(base + path);
  if (first.status !== 200) fail(`${path} on ${base}: ${first.status}`);
  const second = await request(base + path);
  const status = second.headers[header] ?? "";
  if (second.status !== 200 || !hit.test(status)) {
    fail(
      `${path} on ${base}, second request: expected 200 and ${header} ${hit}, got ${second.status} "${status}"`,
    );
  }
  return second;
}

async function originRequests(originUrl: string): Promise<number> {
  const res = await request(`${originUrl}/_origin/requests`);
  return (JSON.parse(res.body.toString("utf8")) as { requests: number }).requests;
}

/** A round watch: no request may reach the origin while a cache is under load. */
function originUntouched(originUrl: string): Watch {
  return async () => {
    const before = await originRequests(originUrl);
    return async (_result, round) => {
      const reached = (await originRequests(originUrl)) - before;
      if (reached !== 0) fail(`round ${round}: ${reached} requests reached the origin`);
    };
  };
}

/** Headers without date, connection and keep-alive: each server sends them its own way. */
function ownHeaders(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(headers).filter(
      ([k]) => k !== "date" && k !== "connection" && k !== "keep-alive",
    ),
  );
}

function byTarget<V>(f: (t: Target) => V): Record<Target, V> {
  return Object.fromEntries(TARGET_NAMES.map((t) => [t, f(t)])) as Record<Target, V>;
}

function byBaseline<V>(f: (b: Baseline) => V): Record<Baseline, V> {
  return Object.fromEntries(BASELINES.map((b) => [b, f(b)])) as Record<Baseline, V>;
}

// --- output -------------------------------------------------------------------------

type Result = Parameters<typeof describeRun>[0] & {
  nginx: string | undefined;
  path: string;
  bodyBytes: number;
  responseBytes: Record<Target, number>;
  headers: Record<Target | "origin", Record<string, string>>;
  rps: Record<Target, number[]>;
  medianRps: Record<Target, number>;
  ratio: Record<Baseline, number>;
  roundRatios: Record<Baseline, number[]>;
  medianCpuUsPerRequest: Record<Target, number> | undefined;
  cpuRatio: Record<Baseline, number> | undefined;
  bareOverNginx: { ratio: number; roundRatios: number[] };
  originRequests: { beforeLoad: number; afterLoad: number };
  nginxConfig: string;
};

function markdown(r: Result): string {
  const label: Record<Target, string> = {
    edgecache: "edgecache proxy (memory-tier hit)",
    nginx: `${r.nginx ?? "nginx"} proxy_cache HIT, 1 worker`,
    bare: "bare node:http, edgecache's bytes",
  };
  const row = (t: Target) =>
    `| ${label[t]} | ${r.rps[t].map(formatRps).join(", ")} | ${formatRps(r.medianRps[t])} | ${r.medianCpuUsPerRequest?.[t].toFixed(1) ?? "n/a"} | ${r.responseBytes[t]} |`;
  const verdict = (b: Baseline) =>
    `**edgecache / ${b}: ${r.ratio[b]}** (target ≥ ${TARGETS[b]}: ${r.ratio[b] >= TARGETS[b] ? "met" : "not met"}); per round: ${r.roundRatios[b].join(", ")}.`;
  const diff = (t: Target) => {
    const mine = Object.keys(r.headers[t]);
    const origin = Object.keys(r.headers.origin);
    const list = (xs: string[]) => xs.sort().join(", ") || "none";
    return `${t} adds ${list(mine.filter((n) => !origin.includes(n)))}, drops ${list(origin.filter((n) => !mine.includes(n)))}`;
  };
  return `# Proxy cache hits: edgecache vs nginx proxy_cache vs bare node:http

${describeRun(r, TARGET_NAMES)}, ${r.bodyBytes} B JSON body of \`${r.path}\` from a node:http origin (\`cache-control: public, max-age=3600\`).
${describeMachine(r)}

| target | req/s per round | median req/s | server CPU µs per request (median) | bytes per response |
| --- | --- | --- | --- | --- |
${TARGET_NAMES.map(row).join("\n")}

${verdict("bare")}
${verdict("nginx")}
CPU cost per request over edgecache's: bare ${r.cpuRatio?.bare ?? "n/a"}, nginx ${r.cpuRatio?.nginx ?? "n/a"}.
Bare node:http / nginx: ${r.bareOverNginx.ratio} (per round: ${r.bareOverNginx.roundRatios.join(", ")}), what a node:http server sending the same bytes reaches. edgecache answers these hits on its raw-socket path (src/adapter/node/server/raw-hits.ts), before node:http parses the request, so it is not bounded by it.

Every round was all hits: edgecache's stats counted no miss and no stale hit and at least
one hit per request, and no request reached the origin during any round (origin requests:
${r.originRequests.beforeLoad} before the load, for warming and checks; ${r.originRequests.afterLoad} after).
All three sent the origin's body; the bare server replays edgecache's hit (status, headers, body).

Headers against the origin's (${Object.keys(r.headers.origin).join(", ")}; each also sends date and connection):
${diff("edgecache")}; ${diff("nginx")}. Names as received, lower-cased; all values are in the JSON.
Bytes per response are whole responses (status line, headers, body) as the load tool reads them.

${describeCommand(r)}
nginx configuration (written by \`bench/servers/proxy-nginx.ts\`):

\`\`\`nginx
${r.nginxConfig.trim()}
\`\`\`
`;
}
