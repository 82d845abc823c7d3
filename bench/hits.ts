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
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { get } from "node:http";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { HOP_HEADERS, type RecordedReply } from "./servers/reply.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const TARGET_RATIO = 0.8;
const READY_TIMEOUT_MS = 30_000;
const CLOCK_TICKS =
  Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim()) || 100;

function readOptions() {
  const { values } = parseArgs({
    options: {
      tool: { type: "string", default: "auto" },
      duration: { type: "string", default: "10" },
      connections: { type: "string", default: "50" },
      rounds: { type: "string", default: "3" },
      warmup: { type: "string", default: "5" },
      threads: { type: "string", default: "1" },
      path: { type: "string", default: "/v1/users?firstName=Lane&limit=10" },
      out: { type: "string", default: "bench/results/hits" },
      "cpu-prof": { type: "string" },
      pin: { type: "boolean", default: false },
    },
  });
  if (!values.path.startsWith("/v1/")) {
    fail(`--path: expected a data API path under /v1/, got ${values.path}`);
  }
  return {
    duration: positiveInt("duration", values.duration),
    connections: positiveInt("connections", values.connections),
    rounds: positiveInt("rounds", values.rounds),
    warmup: positiveInt("warmup", values.warmup),
    threads: positiveInt("threads", values.threads),
    tool: pickTool(values.tool),
    path: values.path,
    out: values.out,
    cpuProf: values["cpu-prof"],
    pin: values.pin ? pinning() : undefined,
  };
}

let options: ReturnType<typeof readOptions>;
try {
  options = readOptions();
} catch (error) {
  // A bad flag is a usage error: the message, not a stack trace.
  const message = (error as Error).message;
  console.error(message.startsWith("[bench]") ? message : `[bench] ${message}`);
  process.exit(2);
}
const { duration, connections, rounds, warmup, threads, tool, path } = options;
const command = ["npm run bench:hits", ...(process.argv.length > 2 ? ["--"] : [])]
  .concat(process.argv.slice(2).map(shellQuote))
  .join(" ");

type Target = "edgecache" | "bare";

interface LoadResult {
  rps: number;
  requests: number;
  /** Responses outside 2xx (for wrk: status 400 and up, the only ones it counts). */
  non2xx: number;
  /** Connect, read, write errors and timeouts. */
  errors: number;
  latencyMs: number;
}

const children = new Set<ChildProcess>();
const tmp = mkdtempSync(join(tmpdir(), "edgecache-bench-"));
process.once("exit", () => {
  // Last resort when an error skips the orderly stop below: never leave servers running.
  for (const child of children) child.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => process.exit(130));
}

try {
  await main();
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
} finally {
  await Promise.all([...children].map(stopChild));
}

async function main(): Promise<void> {
  const startLoad = loadavg();
  const servers = {} as Record<Target, Server>;
  servers.edgecache = await startChild("edgecache", ["--dir", tmp, "--path", path]);
  const edgecache = servers.edgecache.url;

  // Measuring misses would be meaningless: insist on a hit before any load.
  const hit = await request(edgecache + path);
  const cacheStatus = hit.headers["cache-status"] ?? "";
  if (hit.status !== 200 || !cacheStatus.startsWith("edgecache; hit")) {
    fail(
      `${path} on edgecache: expected 200 and cache-status "edgecache; hit...", got ${hit.status} "${cacheStatus}"`,
    );
  }
  const reply: RecordedReply = {
    status: hit.status,
    headers: Object.fromEntries(Object.entries(hit.headers).filter(([k]) => !HOP_HEADERS.has(k))),
    body: hit.body.toString("base64"),
  };
  const replyFile = join(tmp, "reply.json");
  writeFileSync(replyFile, JSON.stringify(reply));
  servers.bare = await startChild("bare", ["--reply", replyFile]);
  const bare = servers.bare.url;
  const copy = await request(bare + path);
  if (!copy.body.equals(hit.body) || headerNames(copy.headers) !== headerNames(hit.headers)) {
    fail("the bare server does not send the bytes edgecache sends; nothing to compare");
  }

  const urls: Record<Target, string> = { edgecache: edgecache + path, bare: bare + path };
  const stats = () => cacheStats(edgecache);
  console.log(
    `${tool}: ${connections} connections, ${duration} s x ${rounds} rounds per target, ${body(hit.body.length)}`,
  );

  // JIT and connection warm-up for both, not recorded.
  for (const target of ["edgecache", "bare"] as const) {
    check(target, await load(urls[target], warmup), "warm-up");
  }

  const rps: Record<Target, number[]> = { edgecache: [], bare: [] };
  const cpuUs: Record<Target, number[]> = { edgecache: [], bare: [] };
  for (let round = 1; round <= rounds; round++) {
    for (const target of ["edgecache", "bare"] as const) {
      const before = target === "edgecache" ? await stats() : undefined;
      const cpuBefore = cpuSeconds(servers[target].pid);
      const result = await load(urls[target], duration);
      const cpuAfter = cpuSeconds(servers[target].pid);
      check(target, result, `round ${round}`);
      if (before) {
        // Every request must have been a fresh memory-tier hit (in-flight ones at the end
        // of the run count as hits but not as wrk/autocannon requests, hence >=).
        const after = await stats();
        if (after.misses !== before.misses || after.staleHits !== before.staleHits) {
          fail(`round ${round}: edgecache served misses or stale hits during the load`);
        }
        if (after.hits - before.hits < result.requests) {
          fail(`round ${round}: ${after.hits - before.hits} hits for ${result.requests} requests`);
        }
      }
      rps[target].push(round2(result.rps));
      const perRequest = ((cpuAfter - cpuBefore) / result.requests) * 1e6;
      if (Number.isFinite(perRequest)) cpuUs[target].push(round2(perRequest));
      console.log(
        `round ${round} ${target.padEnd(9)} ${Math.round(result.rps)} req/s, ${result.latencyMs.toFixed(2)} ms mean latency, ${perRequest.toFixed(1)} µs server CPU per request`,
      );
    }
  }

  const medianRps = { edgecache: median(rps.edgecache), bare: median(rps.bare) };
  const ratio = round3(medianRps.edgecache / medianRps.bare);
  const roundRatios = rps.edgecache.map((e, i) => round3(e / rps.bare[i]!));
  const medianCpuUs = cpuUs.edgecache.length
    ? { edgecache: median(cpuUs.edgecache), bare: median(cpuUs.bare) }
    : undefined;
  const result = {
    date: new Date().toISOString(),
    tool: toolVersion(),
    connections,
    duration,
    rounds,
    warmup,
    threads: tool === "wrk" ? threads : undefined,
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
    command,
    git: gitState(),
    loadCommand: loadArgs("<url>", duration).join(" "),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    loadavgBefore: startLoad.map(round2),
    loadavgAfter: loadavg().map(round2),
  };
  const out = resolve(ROOT, options.out);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(`${out}.json`, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(`${out}.md`, markdown(result));
  console.log(
    `median: edgecache ${medianRps.edgecache} req/s, bare ${medianRps.bare} req/s, ratio ${ratio} (target ${TARGET_RATIO}) -> ${relative(ROOT, out)}.{json,md}`,
  );
}

// --- load tools ---------------------------------------------------------------------

function pickTool(name: string): "wrk" | "autocannon" {
  if (name === "wrk" || name === "autocannon") {
    if (name === "wrk" && !hasWrk()) fail("--tool wrk: wrk is not installed (apt-get install wrk)");
    return name;
  }
  if (name !== "auto") fail(`--tool: expected wrk, autocannon or auto, got ${name}`);
  // wrk is C and cheaper per request, so less of the 2 cores goes to generating load.
  return hasWrk() ? "wrk" : "autocannon";
}

function hasWrk(): boolean {
  return spawnSync("wrk", ["-v"], { stdio: "ignore" }).error === undefined;
}

function toolVersion(): string {
  if (tool === "wrk") {
    const out = spawnSync("wrk", ["-v"], { encoding: "utf8" }).stdout;
    return out.match(/^wrk (\S+)/)?.[0] ?? "wrk";
  }
  const out = spawnSync(autocannonBin(), ["--version"], { encoding: "utf8" }).stdout;
  return `autocannon ${out.match(/autocannon v?(\S+)/)?.[1] ?? ""}`.trim();
}

function autocannonBin(): string {
  return join(ROOT, "node_modules", ".bin", "autocannon");
}

/** Both tools keep connections alive (HTTP/1.1) and send one request at a time on each. */
function loadArgs(url: string, seconds: number): string[] {
  return tool === "wrk"
    ? ["wrk", "-t", String(threads), "-c", String(connections), "-d", `${seconds}s`, url]
    : ["autocannon", "-c", String(connections), "-d", String(seconds), "-j", url];
}

async function load(url: string, seconds: number): Promise<LoadResult> {
  const [, ...rest] = loadArgs(url, seconds);
  const bin = tool === "wrk" ? "wrk" : autocannonBin();
  const out = await run(bin, rest);
  return tool === "wrk" ? parseWrk(out) : parseAutocannon(out);
}

function parseWrk(out: string): LoadResult {
  const num = (re: RegExp) => {
    const m = out.match(re);
    if (!m) fail(`could not read wrk output (${re}):\n${out}`);
    return m.slice(1).map(Number);
  };
  const [latency = 0, unit] = out.match(/Latency\s+([\d.]+)(us|ms|s)/)?.slice(1) ?? [];
  const socket = out.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/)[0]!,
    requests: num(/(\d+) requests in/)[0]!,
    non2xx: Number(out.match(/Non-2xx or 3xx responses: (\d+)/)?.[1] ?? 0),
    errors: socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
    latencyMs: Number(latency) * (unit === "us" ? 0.001 : unit === "s" ? 1000 : 1),
  };
}

function parseAutocannon(out: string): LoadResult {
  const r = JSON.parse(out) as {
    duration: number;
    requests: { total: number };
    latency: { average: number };
    non2xx: number;
    errors: number;
    timeouts: number;
  };
  return {
    rps: r.requests.total / r.duration,
    requests: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    latencyMs: r.latency.average,
  };
}

function check(target: Target, result: LoadResult, when: string): void {
  if (result.non2xx > 0 || result.errors > 0 || result.requests === 0) {
    fail(
      `${when}, ${target}: ${result.non2xx} non-2xx responses, ${result.errors} errors in ${result.requests} requests`,
    );
  }
}

// --- child processes ----------------------------------------------------------------

interface Server {
  url: string;
  pid: number;
}

/**
 * Starts bench/servers/<target>-server.ts and resolves with the URL it prints when ready.
 * With --cpu-prof, each server writes its profiles to <dir>/<target>/ when it stops.
 */
function startChild(target: Target, argv: string[]) {
  const file = `${target}-server.ts`;
  const prof = options.cpuProf
    ? ["--cpu-prof", "--cpu-prof-dir", resolve(ROOT, options.cpuProf, target)]
    : [];
  const child = spawn(
    ...pinned(options.pin?.server, process.execPath, [
      ...prof,
      "--import",
      "tsx",
      join(ROOT, "bench", "servers", file),
      ...argv,
    ]),
    // stdin stays open as a lifeline: the server exits when it closes (see lifecycle.ts).
    { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] },
  );
  children.add(child);
  child.once("exit", () => children.delete(child));
  return new Promise<Server>((resolveServer, reject) => {
    let out = "";
    const timer = setTimeout(
      () => reject(new Error(`[bench] ${file} not ready in ${READY_TIMEOUT_MS} ms`)),
      READY_TIMEOUT_MS,
    );
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      out += chunk;
      const line = out.split("\n", 2);
      if (line.length < 2) return;
      clearTimeout(timer);
      try {
        const { url } = JSON.parse(line[0]!) as { url: string };
        resolveServer({ url, pid: child.pid! });
      } catch {
        reject(new Error(`[bench] ${file}: expected {"url": ...}, got ${line[0]}`));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`[bench] ${file} exited with ${code} before it was ready`));
    });
  });
}

/** SIGTERM, then SIGKILL if the server has not exited within 5 s. */
function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.once("exit", () => {
      clearTimeout(timer);
      done();
    });
    child.kill("SIGTERM");
  });
}

function run(bin: string, argv: string[]): Promise<string> {
  return new Promise((resolveOut, reject) => {
    const child = spawn(...pinned(options.pin?.load, bin, argv), {
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
    child.once("error", reject);
    child.once("exit", (code) => {
      children.delete(child);
      if (code === 0) resolveOut(out);
      else reject(new Error(`[bench] ${bin} exited with ${code}: ${err || out}`));
    });
  });
}

/**
 * --pin: the servers on the last CPU, the load tool on the others, so the scheduler never
 * puts both on one core mid-round. taskset execs the command, so signals still reach it.
 */
function pinning(): { server: string; load: string } {
  const n = cpus().length;
  if (n < 2) fail(`--pin: needs 2 CPUs, got ${n}`);
  if (spawnSync("taskset", ["-V"], { stdio: "ignore" }).error) fail("--pin: taskset not found");
  return { server: String(n - 1), load: n === 2 ? "0" : `0-${n - 2}` };
}

function pinned(cpuList: string | undefined, bin: string, argv: string[]): [string, string[]] {
  return cpuList === undefined ? [bin, argv] : ["taskset", ["-c", cpuList, bin, ...argv]];
}

/**
 * CPU seconds (user + system) a process has used, from /proc (Linux); NaN elsewhere, and
 * then no CPU figures are reported. Clock ticks are 10 ms: fine against 10 s rounds.
 */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which may contain spaces: state is field 3.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

// --- HTTP helpers -------------------------------------------------------------------

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** One GET over node:http, to see the exact headers and bytes (fetch would rewrite some). */
function request(url: string): Promise<Reply> {
  return new Promise((resolveReply, reject) => {
    get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const headers: Record<string, string> = {};
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          headers[res.rawHeaders[i]!.toLowerCase()] = res.rawHeaders[i + 1]!;
        }
        resolveReply({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks) });
      });
      res.on("error", reject);
    }).on("error", reject);
  });
}

function headerNames(headers: Record<string, string>): string {
  return Object.keys(headers).sort().join(",");
}

async function cacheStats(base: string) {
  const res = await request(`${base}/_edgecache/stats`);
  if (res.status !== 200) fail(`edgecache stats: ${res.status}`);
  return JSON.parse(res.body.toString("utf8")) as {
    hits: number;
    misses: number;
    staleHits: number;
  };
}

// --- output -------------------------------------------------------------------------

function markdown(r: {
  date: string;
  tool: string;
  connections: number;
  duration: number;
  rounds: number;
  path: string;
  bodyBytes: number;
  rps: Record<Target, number[]>;
  medianRps: Record<Target, number>;
  ratio: number;
  roundRatios: number[];
  medianCpuUsPerRequest: Record<Target, number> | undefined;
  cpuRatio: number | undefined;
  command: string;
  git: { commit: string; changed: string[] } | undefined;
  loadCommand: string;
  node: string;
  cpus: number;
  cpuModel: string | undefined;
  loadavgBefore: number[];
}): string {
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  const cpu = (t: Target) => r.medianCpuUsPerRequest?.[t].toFixed(1) ?? "n/a";
  const code = r.git
    ? `commit ${r.git.commit}${r.git.changed.length ? ` plus uncommitted ${r.git.changed.map((l) => l.slice(3)).join(", ")}` : ""}`
    : "commit unknown";
  return `# Cache hits: edgecache vs bare node:http

${r.date}, ${code}. ${r.tool}, ${r.connections} keep-alive connections, ${r.duration} s per round, ${r.rounds} rounds alternating (edgecache, bare, ...), ${body(r.bodyBytes)} of \`${r.path}\`.
Node ${r.node}, ${r.cpus} × ${r.cpuModel ?? "cpu"}, load average before ${r.loadavgBefore.join(" ")}.

| target | req/s per round | median req/s | server CPU µs per request (median) |
| --- | --- | --- | --- |
| edgecache (memory-tier hit) | ${r.rps.edgecache.map(fmt).join(", ")} | ${fmt(r.medianRps.edgecache)} | ${cpu("edgecache")} |
| bare node:http, same bytes | ${r.rps.bare.map(fmt).join(", ")} | ${fmt(r.medianRps.bare)} | ${cpu("bare")} |

**Ratio edgecache / bare: ${r.ratio}** (target ≥ ${TARGET_RATIO}: ${r.ratio >= TARGET_RATIO ? "met" : "not met"}); per round: ${r.roundRatios.join(", ")}.
CPU cost ratio bare / edgecache: ${r.cpuRatio ?? "n/a"}.

Command:

\`\`\`sh
${r.command}
\`\`\`

Load per round: \`${r.loadCommand}\`
`;
}

function body(bytes: number): string {
  return `${bytes} B body`;
}

/** The commit measured, and uncommitted changes under src/ that the figures include. */
function gitState(): { commit: string; changed: string[] } | undefined {
  const git = (...argv: string[]) => spawnSync("git", argv, { cwd: ROOT, encoding: "utf8" });
  const head = git("rev-parse", "--short", "HEAD");
  if (head.status !== 0) return undefined;
  const changed = git("status", "--porcelain", "--", "src").stdout.split("\n").filter(Boolean);
  return { commit: head.stdout.trim(), changed };
}

// --- small helpers ------------------------------------------------------------------

function positiveInt(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) fail(`--${name}: expected a positive integer, got ${value}`);
  return n;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return round2(s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2);
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function shellQuote(arg: string): string {
  return /^[\w./:=@-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

function fail(message: string): never {
  throw new Error(`[bench] ${message}`);
}
