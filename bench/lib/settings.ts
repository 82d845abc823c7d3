/**
 * The flags every throughput benchmark here shares (load tool, duration, connections,
 * rounds, warm-up, wrk threads, profiling, pinning) and the command line that ran it.
 */
import { spawnSync } from "node:child_process";
import { cpus } from "node:os";
import { type ParseArgsConfig, parseArgs } from "node:util";

export const LOAD_FLAGS = {
  tool: { type: "string", default: "auto" },
  duration: { type: "string", default: "10" },
  connections: { type: "string", default: "50" },
  rounds: { type: "string", default: "3" },
  warmup: { type: "string", default: "5" },
  threads: { type: "string", default: "1" },
  "cpu-prof": { type: "string" },
  pin: { type: "boolean", default: false },
} as const satisfies ParseArgsConfig["options"];

export type Tool = "wrk" | "autocannon";

export interface Settings {
  tool: Tool;
  duration: number;
  connections: number;
  rounds: number;
  warmup: number;
  threads: number;
  /** --cpu-prof: a folder, relative to the repository, for the servers' profiles. */
  cpuProf: string | undefined;
  /** --pin: CPU lists for taskset. */
  pin: Pinning | undefined;
}

export interface Pinning {
  server: string;
  load: string;
}

/** The parsed values of LOAD_FLAGS, turned into numbers and checked. */
export function loadSettings(values: {
  tool: string;
  duration: string;
  connections: string;
  rounds: string;
  warmup: string;
  threads: string;
  "cpu-prof"?: string | undefined;
  pin: boolean;
}): Settings {
  return {
    duration: positiveInt("duration", values.duration),
    connections: positiveInt("connections", values.connections),
    rounds: positiveInt("rounds", values.rounds),
    warmup: positiveInt("warmup", values.warmup),
    threads: positiveInt("threads", values.threads),
    tool: pickTool(values.tool),
    cpuProf: values["cpu-prof"],
    pin: values.pin ? pinning() : undefined,
  };
}

/**
 * A driver's flags: LOAD_FLAGS, --path (what the load requests; `checkPath` throws on a
 * wrong one) and --out (the results files, without extension). A bad flag is a usage
 * error: the message, exit 2.
 */
export function readBenchFlags(
  defaults: { path: string; out: string },
  checkPath: (path: string) => void,
): Settings & { path: string; out: string } {
  return readFlags(() => {
    const { values } = parseArgs({
      options: {
        ...LOAD_FLAGS,
        path: { type: "string", default: defaults.path },
        out: { type: "string", default: defaults.out },
      },
    });
    checkPath(values.path);
    return { ...loadSettings(values), path: values.path, out: values.out };
  });
}

/** Runs `read` (flag parsing); a bad flag is a usage error: the message, exit 2, no stack. */
export function readFlags<T>(read: () => T): T {
  try {
    return read();
  } catch (error) {
    const message = (error as Error).message;
    console.error(message.startsWith("[bench]") ? message : `[bench] ${message}`);
    process.exit(2);
  }
}

/** How this run was started, as one would type it again: `npm run <script> -- <flags>`. */
export function commandLine(npmScript: string): string {
  return [`npm run ${npmScript}`, ...(process.argv.length > 2 ? ["--"] : [])]
    .concat(process.argv.slice(2).map(shellQuote))
    .join(" ");
}

function pickTool(name: string): Tool {
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

/**
 * --pin: the servers on the last CPU, the load tool on the others, so the scheduler never
 * puts both on one core mid-round. taskset execs the command, so signals still reach it.
 */
function pinning(): Pinning {
  const n = cpus().length;
  if (n < 2) fail(`--pin: needs 2 CPUs, got ${n}`);
  if (spawnSync("taskset", ["-V"], { stdio: "ignore" }).error) fail("--pin: taskset not found");
  return { server: String(n - 1), load: n === 2 ? "0" : `0-${n - 2}` };
}

export function positiveInt(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) fail(`--${name}: expected a positive integer, got ${value}`);
  return n;
}

function shellQuote(arg: string): string {
  return /^[\w./:=@-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

export function fail(message: string): never {
  throw new Error(`[bench] ${message}`);
}
