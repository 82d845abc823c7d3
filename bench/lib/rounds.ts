/**
 * Measured rounds that alternate the targets (ABAB..., ABCABC...), so that noise from
 * other work on a shared machine lands on all of them; each target's median is taken.
 * Each server's CPU time per request (from /proc) is recorded beside its throughput: on 2
 * shared cores, throughput also moves with how the load tool and the server happen to be
 * scheduled.
 */
import { checkLoad, type LoadResult, type LoadTool } from "./load.ts";
import { cpuSeconds } from "./processes.ts";
import type { Settings } from "./settings.ts";

export interface Contestant<T extends string> {
  name: T;
  /** The URL loaded. */
  url: string;
  /** The server's process: its CPU time (and that of its children) is measured. */
  pid: number;
  /**
   * Runs before each measured round; the check it returns runs after it, with the load
   * result, and throws if the round did not measure what it should (a cache miss, say).
   */
  watch?: () => Promise<(result: LoadResult, round: number) => Promise<void>>;
}

export type Watch = NonNullable<Contestant<string>["watch"]>;

/** One watch made of several: all run before the round, all their checks after it. */
export function watchAll(...watches: Watch[]): Watch {
  return async () => {
    const checks: Awaited<ReturnType<Watch>>[] = [];
    for (const watch of watches) checks.push(await watch());
    return async (result, round) => {
      for (const check of checks) await check(result, round);
    };
  };
}

export interface Rounds<T extends string> {
  /** Requests per second, one a round, per target. */
  rps: Record<T, number[]>;
  /** Server CPU µs per request, one a round, per target; empty without /proc. */
  cpuUs: Record<T, number[]>;
}

export async function alternateRounds<T extends string>(
  tool: LoadTool,
  settings: Pick<Settings, "rounds" | "duration" | "warmup">,
  contestants: readonly Contestant<T>[],
): Promise<Rounds<T>> {
  // JIT and connection warm-up for each, not recorded.
  for (const c of contestants) {
    checkLoad(c.name, await tool.run(c.url, settings.warmup), "warm-up");
  }

  const rps = {} as Record<T, number[]>;
  const cpuUs = {} as Record<T, number[]>;
  for (const c of contestants) {
    rps[c.name] = [];
    cpuUs[c.name] = [];
  }
  for (let round = 1; round <= settings.rounds; round++) {
    for (const c of contestants) {
      const after = await c.watch?.();
      const cpuBefore = cpuSeconds(c.pid);
      const result = await tool.run(c.url, settings.duration);
      const cpuAfter = cpuSeconds(c.pid);
      checkLoad(c.name, result, `round ${round}`);
      await after?.(result, round);
      rps[c.name].push(round2(result.rps));
      const perRequest = ((cpuAfter - cpuBefore) / result.requests) * 1e6;
      if (Number.isFinite(perRequest)) cpuUs[c.name].push(round2(perRequest));
      console.log(
        `round ${round} ${c.name.padEnd(9)} ${Math.round(result.rps)} req/s, ${result.latencyMs.toFixed(2)} ms mean latency, ${perRequest.toFixed(1)} µs server CPU per request`,
      );
    }
  }
  return { rps, cpuUs };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return round2(s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2);
}

export function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

export function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

/** Ops per second of `op` in a closed loop of `concurrency` callers for `seconds`. */
export async function closedLoop(
  op: () => Promise<unknown>,
  seconds: number,
  concurrency: number,
): Promise<number> {
  const until = performance.now() + seconds * 1000;
  let ops = 0;
  const worker = async () => {
    while (performance.now() < until) {
      await op();
      ops++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return round2(ops / ((performance.now() - start) / 1000));
}

/** A rate as a whole number with thousands separators. */
export function thousands(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}
