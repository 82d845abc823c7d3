/**
 * Child processes of a benchmark driver: the servers under test and the load tool, each
 * apart from the driver (with 2 cores, a server sharing a process with its load generator
 * would measure the generator). None outlives the driver: on any exit, even one that skips
 * the orderly stop, the ones still running are killed and the temporary folder removed.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { constants, type PerformanceEntry, PerformanceObserver } from "node:perf_hooks";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const READY_TIMEOUT_MS = 30_000;
let clockTicks: number | undefined;

/** Running children, each with the signal that ends it at once if the driver dies. */
const children = new Map<ChildProcess, NodeJS.Signals>();
const tmpDirs: string[] = [];
let guarded = false;

function guard(): void {
  if (guarded) return;
  guarded = true;
  process.once("exit", () => {
    for (const [child, signal] of children) child.kill(signal);
    for (const dir of tmpDirs) rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => process.exit(130));
  }
}

function track(child: ChildProcess, lastResort: NodeJS.Signals): void {
  guard();
  children.set(child, lastResort);
  child.once("exit", () => children.delete(child));
}

/** A temporary folder, removed when the driver exits. */
export function makeTmpDir(): string {
  guard();
  const dir = mkdtempSync(join(tmpdir(), "edgecache-bench-"));
  tmpDirs.push(dir);
  return dir;
}

export interface Server {
  url: string;
  pid: number;
  /** The line it printed when ready. */
  line: string;
}

export interface ServerSpec {
  /** Names the server in messages and its --cpu-prof folder. */
  name: string;
  /** Node's arguments after its own flags: a script and the script's arguments. */
  argv: string[];
  /** A folder (relative to the repository) for a V8 CPU profile, written when it stops. */
  cpuProf?: string | undefined;
  /** taskset CPU list. */
  cpu?: string | undefined;
  /** Working folder; the repository by default. */
  cwd?: string;
  /** Environment variables added to the driver's own. */
  env?: Record<string, string>;
  /**
   * The server's URL from a line it printed, or undefined to wait for a later line.
   * Default: the first line is `{"url": ...}` (the servers in bench/servers/).
   */
  readyUrl?: (line: string) => string | undefined;
  /**
   * Sent to the server if the driver exits without stopping it. SIGKILL by default; a
   * server with children of its own (nginx under its wrapper) wants a signal it can pass on.
   */
  lastResort?: NodeJS.Signals;
}

/**
 * A node process running bench/servers/<file> (through tsx), with its arguments; of the
 * checkout at `root` (this one by default).
 */
export function benchServer(file: string, argv: string[], root = ROOT): string[] {
  return ["--import", "tsx", join(root, "bench", "servers", file), ...argv];
}

/**
 * Flags for every bench server's node, from `BENCH_NODE_FLAGS` (space-separated): V8's own
 * flags that NODE_OPTIONS refuses, for experiments (`BENCH_NODE_FLAGS=--single-threaded-gc`).
 */
function nodeFlags(): string[] {
  return process.env.BENCH_NODE_FLAGS?.split(" ").filter(Boolean) ?? [];
}

/** Starts a node server and resolves with the URL it prints once ready. */
export function startServer(spec: ServerSpec): Promise<Server> {
  const prof = spec.cpuProf
    ? ["--cpu-prof", "--cpu-prof-dir", resolve(ROOT, spec.cpuProf, spec.name)]
    : [];
  const child = spawn(
    ...pinned(spec.cpu, process.execPath, [...nodeFlags(), ...prof, ...spec.argv]),
    // stdin stays open as a lifeline: the servers in bench/servers/ exit when it closes
    // (see servers/lifecycle.ts).
    {
      cwd: spec.cwd ?? ROOT,
      env: { ...process.env, ...spec.env },
      stdio: ["pipe", "pipe", "inherit"],
    },
  );
  track(child, spec.lastResort ?? "SIGKILL");
  const readyUrl = spec.readyUrl ?? jsonUrl;
  return new Promise<Server>((resolveServer, reject) => {
    let out = "";
    let ready = false;
    const timer = setTimeout(
      () => reject(new Error(`[bench] ${spec.name} not ready in ${READY_TIMEOUT_MS} ms`)),
      READY_TIMEOUT_MS,
    );
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      if (ready) return;
      out += chunk;
      const lines = out.split("\n");
      out = lines.pop()!;
      for (const line of lines) {
        let url: string | undefined;
        try {
          url = readyUrl(line);
          if (url === undefined) continue;
          resolveServer({ url, pid: child.pid!, line });
        } catch (error) {
          reject(new Error(`[bench] ${spec.name}: ${(error as Error).message}`));
        }
        ready = true;
        clearTimeout(timer);
        return;
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`[bench] ${spec.name} exited with ${code} before it was ready`));
    });
  });
}

function jsonUrl(line: string): string {
  try {
    return (JSON.parse(line) as { url: string }).url;
  } catch {
    throw new Error(`expected {"url": ...}, got ${line}`);
  }
}

/**
 * Runs a driver's work: an error ends it with its message and exit code 1, and every
 * child is stopped in any case.
 */
export async function runBench(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  } finally {
    await stopAll();
  }
}

/** Stops every child: SIGTERM, then SIGKILL for one that has not exited within 5 s. */
export function stopAll(): Promise<void> {
  return Promise.all([...children.keys()].map(stopChild)).then(() => undefined);
}

/** SIGTERM, then SIGKILL if the process has not exited within 5 s. */
export function stopChild(child: ChildProcess): Promise<void> {
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

/** A port nothing listens on now: the kernel's pick for a listener that is closed again. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolvePort(port));
    });
  });
}

/** Runs a command to its end (the load tool) and resolves with its standard output. */
export function run(bin: string, argv: string[], cpu?: string): Promise<string> {
  return new Promise((resolveOut, reject) => {
    const child = spawn(...pinned(cpu, bin, argv), { stdio: ["ignore", "pipe", "pipe"] });
    track(child, "SIGKILL");
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code === 0) resolveOut(out);
      else reject(new Error(`[bench] ${bin} exited with ${code}: ${err || out}`));
    });
  });
}

function pinned(cpuList: string | undefined, bin: string, argv: string[]): [string, string[]] {
  return cpuList === undefined ? [bin, argv] : ["taskset", ["-c", cpuList, bin, ...argv]];
}

/**
 * CPU seconds (user + system) used by a process and the processes below it (nginx's
 * master and worker under their wrapper), from /proc (Linux); NaN elsewhere, and then no
 * CPU figures are reported. Clock ticks are 10 ms: fine against 10 s rounds.
 */
export function cpuSeconds(pid: number): number {
  const own = procStat(pid);
  if (!own) return Number.NaN;
  let ticks = own.ticks;
  const below = new Set([pid]);
  const all = processes();
  // Parents come before their children in pid order, but pids wrap: repeat until stable.
  for (let grew = true; grew; ) {
    grew = false;
    for (const stat of all) {
      if (!below.has(stat.pid) && below.has(stat.ppid)) {
        below.add(stat.pid);
        ticks += stat.ticks;
        grew = true;
      }
    }
  }
  return ticks / ticksPerSecond();
}

/**
 * One thread's CPU (user + system), us, where Linux tells it (/proc); the main thread's
 * by default. In clock ticks (10 ms), so only a sum over many requests says anything.
 */
export function threadCpuUs(pid = process.pid, tid = pid): number | undefined {
  const ticks = statOf(`/proc/${pid}/task/${tid}/stat`)?.ticks;
  return ticks !== undefined && Number.isFinite(ticks)
    ? (ticks * 1e6) / ticksPerSecond()
    : undefined;
}

/** Garbage collections on the main thread: how many, and the time they held it. */
export interface GcTally {
  /** Young-generation collections (scavenges). */
  minor: { n: number; ms: number };
  /** The rest: full collections (mark-compact), their incremental steps, weak callbacks. */
  major: { n: number; ms: number };
}

let gcWatch:
  | { tally: GcTally; observer: PerformanceObserver; count(entries: PerformanceEntry[]): void }
  | undefined;

/**
 * The process's garbage collections since the first call, as perf_hooks reports them (the
 * main thread's pauses; the collector's helper threads are in the process's CPU, not here).
 * Node reports a collection a turn or two of the event loop after it: those are waited for.
 */
export async function gcSoFar(): Promise<GcTally> {
  if (!gcWatch) {
    const tally: GcTally = { minor: { n: 0, ms: 0 }, major: { n: 0, ms: 0 } };
    const count = (entries: PerformanceEntry[]) => {
      for (const entry of entries) {
        const kind = (entry as unknown as { detail?: { kind?: number } }).detail?.kind;
        const into = kind === constants.NODE_PERFORMANCE_GC_MINOR ? tally.minor : tally.major;
        into.n++;
        into.ms += entry.duration;
      }
    };
    const observer = new PerformanceObserver((list) => count(list.getEntries()));
    observer.observe({ entryTypes: ["gc"] });
    gcWatch = { tally, observer, count };
  }
  for (let turn = 0; turn < 2; turn++) await new Promise((done) => setImmediate(done));
  gcWatch.count(gcWatch.observer.takeRecords());
  return structuredClone(gcWatch.tally);
}

/** The kernel's clock ticks per second, in which /proc gives CPU times. */
function ticksPerSecond(): number {
  clockTicks ??=
    Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim()) || 100;
  return clockTicks;
}

interface ProcStat {
  pid: number;
  ppid: number;
  ticks: number;
}

function processes(): ProcStat[] {
  const stats: ProcStat[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = procStat(Number(name));
    if (stat) stats.push(stat);
  }
  return stats;
}

function procStat(pid: number): ProcStat | undefined {
  const stat = statOf(`/proc/${pid}/stat`);
  return stat && { pid, ...stat };
}

/** A process's or thread's parent and CPU ticks (utime + stime) from its stat file. */
function statOf(path: string): { ppid: number; ticks: number } | undefined {
  try {
    const stat = readFileSync(path, "utf8");
    // Fields after the command name, which may contain spaces: state is field 3.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined;
  }
}
