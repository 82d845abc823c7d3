import type { Context } from "hono";
import type { Cache } from "../core/cache/index.ts";
import type { Schema } from "../core/data/query.ts";
import { EdgecacheError } from "../core/errors.ts";
import type { Source } from "../sources/source.ts";
import { hasWriteFaults } from "../sources/storage.ts";

/**
 * One check of `GET /_edgecache/health`. It says whether the node can serve and, when not,
 * which part failed and an error code at most: a load balancer reads it without a token,
 * so it holds no key, tenant, row or database message.
 */
export interface HealthCheck {
  ok: boolean;
  /** The change log's kind (`local`, `redis`, `durable-log`). */
  name?: string;
  /** The tiers that did not answer. */
  failed?: string[];
  /** A stable error code (E_SOURCE_UNAVAILABLE, E_TIMEOUT), or the system's (EROFS). */
  code?: string;
  /** A part the node serves without, or with a fault: `off`, `degraded`. */
  state?: string;
  /** The tiers whose writes fail while reads answer (a full disk): the node serves on. */
  degraded?: string[];
}

/** Checks by name; each runs on every health request. */
export type HealthChecks = Record<string, () => HealthCheck | Promise<HealthCheck>>;

export interface Health {
  /**
   * `fail` when a check fails (503); `degraded` when every check passes but one says a part
   * serves without, or with a fault (`state` `degraded` or `off`: the node serves, 200).
   */
  status: "ok" | "degraded" | "fail";
  checks: Record<string, HealthCheck>;
}

/** A check that has not answered by then has failed: a probe must not hang on a lost server. */
export const HEALTH_TIMEOUT_MS = 2000;

/**
 * The cache's own checks: every tier answers a read (a failing one is named), and the
 * node's lease on its change log holds (without it the node serves nothing from cache and
 * refuses writes).
 */
export function cacheChecks(cache: Cache): HealthChecks {
  return {
    tiers: async () => {
      const failed = (await cache.probe()).filter((t) => !t.ok).map((t) => t.tier);
      if (failed.length > 0) return { ok: false, failed };
      const failing = cache.stats().tiers.filter((t) => t.failing !== undefined);
      if (failing.length === 0) return { ok: true };
      // The first failing write's code (SQLITE_FULL, ENOSPC): what an operator acts on.
      const code = Object.values(failing[0]!.failing!)[0];
      const degraded = failing.map((t) => t.name);
      return { ok: true, state: "degraded", degraded, ...(code !== undefined && { code }) };
    },
    log: () => ({
      ok: cache.trusted,
      name: cache.log.name,
      ...(cache.log.node !== undefined && { node: cache.log.node }),
    }),
  };
}

/**
 * A Node node's cache file: a file it could not use (a read-only or full filesystem) leaves
 * it serving from memory, which the check says without failing: the node serves.
 */
export function cacheFileCheck(file: { state: string; code?: string }): HealthCheck {
  return file.state === "off"
    ? { ok: true, state: "off", code: file.code }
    : { ok: true, state: file.state };
}

/**
 * The data API's database answers a query: one row of its first table, through the Source
 * interface like any read (the schema alone is remembered from the start, so it proves
 * nothing), and its last write did not fail for its storage (degraded until one passes).
 * Only the error's code is kept.
 */
export function sourceCheck(source: Source, schema: Schema): () => Promise<HealthCheck> {
  const first = [...schema.tables.keys()].sort()[0];
  const table = first === undefined ? undefined : schema.tables.get(first);
  return async () => {
    try {
      if (first === undefined || table === undefined) await source.schema();
      else {
        await source.list(
          { kind: "table", name: first, table },
          { filters: [], sort: [], limit: 1, offset: 0 },
        );
      }
    } catch (err) {
      return { ok: false, code: err instanceof EdgecacheError ? err.code : "E_SOURCE_UNAVAILABLE" };
    }
    // Reads answer but every write fails alike (a full disk, a read-only file): the node
    // serves reads, so degraded, with the driver's code an operator acts on.
    const fault = hasWriteFaults(source) ? source.writeFault() : undefined;
    return fault === undefined ? { ok: true } : { ok: true, state: "degraded", code: fault };
  };
}

/** Runs every check at once, each within HEALTH_TIMEOUT_MS. */
export async function runHealth(
  checks: HealthChecks,
  timeoutMs = HEALTH_TIMEOUT_MS,
): Promise<Health> {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]): Promise<[string, HealthCheck]> => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<HealthCheck>((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, code: "E_TIMEOUT" }), timeoutMs);
      });
      try {
        const result = await Promise.race([Promise.resolve().then(check), late]);
        return [name, result];
      } catch (err) {
        return [
          name,
          { ok: false, code: err instanceof EdgecacheError ? err.code : "E_CHECK_FAILED" },
        ];
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  const result: Record<string, HealthCheck> = Object.fromEntries(entries);
  const degraded = entries.some(([, c]) => c.state === "degraded" || c.state === "off");
  const status = !entries.every(([, c]) => c.ok) ? "fail" : degraded ? "degraded" : "ok";
  return { status, checks: result };
}

/**
 * The handler of `GET /_edgecache/health`: 200 when every check passes (`degraded` too: the
 * node serves), else 503, the body naming each check either way. Never stored (RFC 9111
 * 5.2.2.5).
 */
export function healthHandler(checks: HealthChecks) {
  return async (c: Context) => {
    const health = await runHealth(checks);
    return c.json(health, health.status === "fail" ? 503 : 200, { "cache-control": "no-store" });
  };
}
