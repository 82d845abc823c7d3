/** How often one kind of failure is reported at most. */
export const REPORT_EVERY_MS = 10_000;

export interface Warner {
  warn(message: string, error?: unknown): void;
}

/**
 * Reports failures by kind: the first at once, then at most one line per interval with how
 * many were held back meanwhile. An outage under load does not flood the log, and a second
 * outage is as visible as the first.
 *
 * @example
 * const report = rateLimited(console, Date.now);
 * report("redis:get", "[edgecache] [redis] get failed", err);
 */
export function rateLimited(
  logger: Warner,
  now: () => number,
  everyMs = REPORT_EVERY_MS,
): (kind: string, message: string, error?: unknown) => void {
  const kinds = new Map<string, { last: number; held: number }>();
  return (kind, message, error) => {
    const t = now();
    const state = kinds.get(kind) ?? { last: Number.NEGATIVE_INFINITY, held: 0 };
    kinds.set(kind, state);
    if (t - state.last < everyMs) {
      state.held++;
      return;
    }
    const more = state.held > 0 ? ` (and ${state.held} more since the last report)` : "";
    if (error === undefined) logger.warn(`${message}${more}`);
    else logger.warn(`${message}${more}`, error);
    state.last = t;
    state.held = 0;
  };
}
