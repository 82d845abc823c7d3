/**
 * The log levels every runtime accepts (pino's names), most severe first: one list, so
 * `EDGECACHE_LOG_LEVEL` means the same on a Node server and on a Worker.
 */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Quiet by default: warnings and errors only. `info` logs every request. */
export const DEFAULT_LOG_LEVEL: LogLevel = "warn";

export function isLogLevel(value: unknown): value is LogLevel {
  return (LOG_LEVELS as readonly unknown[]).includes(value);
}
