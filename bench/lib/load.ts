/**
 * The load tool: wrk, or autocannon where wrk is not installed. Both keep their connections
 * alive (HTTP/1.1) and send one request at a time on each.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { ROOT, run } from "./processes.ts";
import { fail, type Settings } from "./settings.ts";

export interface LoadResult {
  rps: number;
  requests: number;
  /** Responses outside 2xx (for wrk: status 400 and up, the only ones it counts). */
  non2xx: number;
  /** Connect, read, write errors and timeouts. */
  errors: number;
  latencyMs: number;
}

export class LoadTool {
  readonly #settings: Settings;

  constructor(settings: Settings) {
    this.#settings = settings;
  }

  /** The command line of one round against `url`. */
  args(url: string, seconds: number): string[] {
    const { tool, threads, connections } = this.#settings;
    return tool === "wrk"
      ? ["wrk", "-t", String(threads), "-c", String(connections), "-d", `${seconds}s`, url]
      : ["autocannon", "-c", String(connections), "-d", String(seconds), "-j", url];
  }

  async run(url: string, seconds: number): Promise<LoadResult> {
    const [, ...rest] = this.args(url, seconds);
    const wrk = this.#settings.tool === "wrk";
    const out = await run(wrk ? "wrk" : autocannonBin(), rest, this.#settings.pin?.load);
    return wrk ? parseWrk(out) : parseAutocannon(out);
  }

  /** Name and version, for the results. */
  version(): string {
    if (this.#settings.tool === "wrk") {
      const out = spawnSync("wrk", ["-v"], { encoding: "utf8" }).stdout;
      return out.match(/^wrk (\S+)/)?.[0] ?? "wrk";
    }
    const out = spawnSync(autocannonBin(), ["--version"], { encoding: "utf8" }).stdout;
    return `autocannon ${out.match(/autocannon v?(\S+)/)?.[1] ?? ""}`.trim();
  }
}

/** Fails on any error or non-2xx response: a round with them measured something else. */
export function checkLoad(target: string, result: LoadResult, when: string): void {
  if (result.non2xx > 0 || result.errors > 0 || result.requests === 0) {
    fail(
      `${when}, ${target}: ${result.non2xx} non-2xx responses, ${result.errors} errors in ${result.requests} requests`,
    );
  }
}

function autocannonBin(): string {
  return join(ROOT, "node_modules", ".bin", "autocannon");
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
