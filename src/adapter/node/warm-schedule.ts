import { Cron } from "croner";
import type { Cache } from "../../core/cache/index.ts";
import { badOption, checkOptionNames, type OptionNames } from "../../core/errors.ts";
import type { WarmOptions, WarmResult } from "../../core/library/warm.ts";

/** Every option of scheduleWarm: checkOptionNames refuses any other. */
const OPTIONS: OptionNames<WarmOptions & { onRun?: unknown }> = {
  concurrency: true,
  onProgress: true,
  onRun: true,
  refresh: true,
  staleWhileRevalidate: true,
  tags: true,
  tiers: true,
  ttl: true,
};

export interface WarmSchedule {
  /** Stops the schedule; a run in progress finishes. */
  stop(): void;
  /** When the next run starts, if any. */
  next(): Date | null;
}

/**
 * Warms `keys` on a cron schedule (croner syntax: five fields, or six with seconds first).
 * A run that is still going when the next is due is not overlapped. On Workers, use the
 * Cron Trigger and call `cache.warm` from `scheduled` instead.
 *
 * @example
 * const schedule = scheduleWarm(cache, "*\/10 * * * *", () => hotPages(), (k) => cms.page(k), {
 *   refresh: true,
 * });
 * // at shutdown: schedule.stop(); await cache.close();
 */
export function scheduleWarm<T>(
  cache: Cache,
  cron: string,
  keys: () => Iterable<string> | Promise<Iterable<string>>,
  load: (key: string) => T | Promise<T>,
  options: WarmOptions & { onRun?: (result: WarmResult) => void } = {},
): WarmSchedule {
  checkOptionNames("warm", options, OPTIONS);
  if (typeof keys !== "function") badOption("warm", "keys", "a function returning keys", keys);
  const { onRun, ...warmOptions } = options;
  let job: Cron;
  try {
    job = new Cron(cron, { protect: true, unref: true }, async () => {
      const result = await cache.warm(await keys(), load, warmOptions);
      onRun?.(result);
    });
  } catch (err) {
    badOption("warm", "cron", `a cron expression (${(err as Error).message})`, cron);
  }
  return { stop: () => job.stop(), next: () => job.nextRun() };
}
