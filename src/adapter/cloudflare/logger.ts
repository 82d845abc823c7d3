import { DEFAULT_LOG_LEVEL, isLogLevel, type LogLevel } from "../../core/logging-levels.ts";

/**
 * What an edgecache Worker logs, by severity (console lines, which `wrangler tail` and
 * Workers Logs show). A line below the Worker's level costs nothing: its method is a no-op.
 */
export interface WorkerLogger {
  readonly level: LogLevel;
  /** Requests that failed, an isolate that could not start. */
  error(message: string, detail?: unknown): void;
  /** Tier faults, a change log out of reach, background work that failed. */
  warn(message: string, detail?: unknown): void;
  /** Each request, warming runs, the settings an isolate started with. */
  info(message: string): void;
}

/** pino's numbers: a line is written when its level's is at least the logger's. */
const RANK: Record<LogLevel, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
};

const skip = () => {};

/** A Worker's logger at `level` (checked already: see workerSettings). */
export function workerLogger(level: LogLevel = DEFAULT_LOG_LEVEL): WorkerLogger {
  const on = (at: LogLevel) => RANK[at] >= RANK[level];
  return {
    level,
    error: on("error") ? (message, detail) => console.error(message, detail ?? "") : skip,
    warn: on("warn") ? (message, detail) => console.warn(message, detail ?? "") : skip,
    info: on("info") ? (message) => console.log(message) : skip,
  };
}

/**
 * The logger of a Durable Object (the change log, the tier): its env carries the Worker's
 * `EDGECACHE_LOG_LEVEL`, so `silent` quiets the objects' lines too. An object has no request
 * to fail with a bad value (the isolates report it): it then logs at the default.
 */
export function objectLogger(env: { EDGECACHE_LOG_LEVEL?: unknown } | undefined): WorkerLogger {
  const level = env?.EDGECACHE_LOG_LEVEL;
  return workerLogger(typeof level === "string" && isLogLevel(level) ? level : DEFAULT_LOG_LEVEL);
}
