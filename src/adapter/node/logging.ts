import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { type Logger, pino } from "pino";
import { badOption } from "../../core/errors.ts";
import { DEFAULT_LOG_LEVEL, isLogLevel, LOG_LEVELS } from "../../core/logging-levels.ts";
import type { NodeServerOptions } from "./server/server.ts";

export type { Logger } from "pino";

export { DEFAULT_LOG_LEVEL, LOG_LEVELS, type LogLevel } from "../../core/logging-levels.ts";

/** A request id a client or a proxy in front may send and have echoed (and logged). */
const REQUEST_ID = /^[\w.:-]{1,128}$/;

/**
 * JSON lines on stdout (pino): `{"level":40,"time":...,"msg":...}`, one per event.
 *
 * @example
 * const log = nodeLogger("info");
 */
export function nodeLogger(level: string = DEFAULT_LOG_LEVEL): Logger {
  if (!isLogLevel(level)) {
    badOption("log", "logLevel", LOG_LEVELS.join(", "), level);
  }
  return pino({ level, base: { pid: process.pid } });
}

/** Fields an app adds to its request's log line (`annotate`), kept on the response. */
const LOG_FIELDS = Symbol("edgecache.logFields");

/** Adds `fields` to the log line of the request `res` answers (the tenant, say). */
export function annotate(res: ServerResponse | undefined, fields: Record<string, unknown>): void {
  if (!res) return;
  const r = res as ServerResponse & { [LOG_FIELDS]?: Record<string, unknown> };
  r[LOG_FIELDS] = { ...r[LOG_FIELDS], ...fields };
}

/**
 * The request hook of startServer: each request gets an id (the client's `X-Request-Id`
 * when it sent a sane one, else a new UUID). At `info` every request is logged when its
 * response is out, and the id is sent back in `X-Request-Id`; at any level a 5xx is logged
 * as an error, with the id, so a failure can be found from what the client saw.
 */
export function requestLog(log: Logger): (req: IncomingMessage, res: ServerResponse) => void {
  const everyRequest = log.isLevelEnabled("info");
  return (req, res) => {
    const sent = req.headers["x-request-id"];
    const id = typeof sent === "string" && REQUEST_ID.test(sent) ? sent : randomUUID();
    if (everyRequest) res.setHeader("x-request-id", id);
    const started = performance.now();
    res.once("finish", () => {
      const status = res.statusCode;
      if (!everyRequest && status < 500) return;
      const fields = {
        ...(res as { [LOG_FIELDS]?: Record<string, unknown> })[LOG_FIELDS],
        reqId: id,
        method: req.method,
        url: req.url,
        status,
        ms: Math.round((performance.now() - started) * 1000) / 1000,
        cache: res.getHeader("cache-status"),
      };
      if (status >= 500) log.error(fields, "request failed");
      else log.info(fields, "request");
    });
  };
}

/**
 * startServer's options for a logged server: the request hook, and at `info` and below no
 * raw path, whose hits would otherwise go unlogged.
 */
export function serverLogging(log: Logger): Pick<NodeServerOptions, "onRequest" | "rawHits"> {
  return { onRequest: requestLog(log), rawHits: !log.isLevelEnabled("info") };
}

/** The cache's `logger` option (tier faults, once per fault kind) as pino warnings. */
export function cacheLogger(log: Logger): { warn(message: string, error?: unknown): void } {
  return { warn: (message, error) => log.warn({ err: error }, message) };
}
