import { badOption, badVariable } from "../../core/errors.ts";
import { DEFAULT_LOG_LEVEL, isLogLevel, LOG_LEVELS, type LogLevel } from "../../core/log-levels.ts";
import {
  CHANGE_LOG_MODES,
  type ChangeLogMode,
  DEFAULT_LEASE_MS,
  MIN_LEASE_MS,
  REGION_NAME,
} from "../../log/durable-object.ts";
import { DURABLE_OBJECT_MAX_SHARDS } from "../../stores/durable-object.ts";
import type { KvNamespaceLike } from "../../stores/kv.ts";
import type { EdgeCacheOptions, LogEnv } from "./worker.ts";

/**
 * An isolate has 128 MB for everything: the memory tier takes at most a quarter, leaving
 * room for requests in flight, the dependency index and the runtime itself.
 */
export const MEMORY_TIER_BYTES = 32 * 1024 * 1024;
/** The default TTL, seconds (one day). */
export const DEFAULT_TTL_SECONDS = 86_400;

/**
 * What one isolate's cache is made with. Each setting comes from its `EDGECACHE_*` variable
 * when set (not empty), else from the Worker's code option, else the default: an operator
 * changes a deployed Worker with `wrangler secret`/`vars` or the dashboard, without a build.
 */
export interface WorkerSettings {
  /** false: `EDGECACHE_CACHE=off`, every read goes to D1 or the origin. */
  caching: boolean;
  /**
   * The default TTL, seconds, when a variable or option sets one (the data API's default is
   * DEFAULT_TTL_SECONDS; the proxy then keeps its origins' own freshness rules).
   */
  ttl: number | undefined;
  memoryBytes: number;
  /** The KV tier's namespace: the `CACHE` binding, unless KV is off. */
  kv: KvNamespaceLike | undefined;
  logLevel: LogLevel;
  mode: ChangeLogMode;
  leaseMs: number;
  /** Objects the Durable Object tier spreads keys over (`tierShards`, EDGECACHE_TIER_SHARDS). */
  tierShards: number;
  /** Follower mode: `EDGECACHE_REGION` over the `region` option (else from the request). */
  region: string | undefined;
}

const C = "worker";
const SWITCH = '"on" or "off"';

/**
 * The settings of `env` over `options`, each variable checked: a bad one throws E_BAD_OPTION
 * naming it and the values it takes, so the isolate's first request fails with that
 * message instead of the Worker running on a setting nobody chose.
 */
export function workerSettings(env: LogEnv, options: EdgeCacheOptions): WorkerSettings {
  const caching = onOff(env, "EDGECACHE_CACHE") ?? option(options, "caching");
  const kvOn = onOff(env, "EDGECACHE_KV") ?? option(options, "kv");
  if (kvOn === true && !env.CACHE) {
    const text = variable(env, "EDGECACHE_KV");
    if (text !== undefined) {
      badVariable(C, "EDGECACHE_KV", '"off" (or unset) without a KV binding named CACHE', text);
    }
    badOption(C, "kv", "false (or unset) without a KV binding named CACHE", true);
  }
  const level = variable(env, "EDGECACHE_LOG_LEVEL");
  if (level !== undefined && !isLogLevel(level)) {
    badVariable(C, "EDGECACHE_LOG_LEVEL", `one of ${LOG_LEVELS.join(", ")}`, level);
  }
  if (options.logLevel !== undefined && !isLogLevel(options.logLevel)) {
    badOption(C, "logLevel", `one of ${LOG_LEVELS.join(", ")}`, options.logLevel);
  }
  const mode = variable(env, "EDGECACHE_LOG_MODE");
  if (mode !== undefined && !(CHANGE_LOG_MODES as readonly string[]).includes(mode)) {
    badVariable(C, "EDGECACHE_LOG_MODE", `one of ${CHANGE_LOG_MODES.join(", ")}`, mode);
  }
  return {
    caching: caching ?? true,
    ttl:
      number(env, "EDGECACHE_TTL", /^\d+(\.\d+)?$/, "a number of seconds > 0 (such as 300)") ??
      options.ttl,
    memoryBytes:
      number(env, "EDGECACHE_MEMORY_BYTES", /^\d+$/, "a whole number of bytes > 0") ??
      options.memoryBytes ??
      MEMORY_TIER_BYTES,
    kv: kvOn === false ? undefined : env.CACHE,
    logLevel: (level as LogLevel | undefined) ?? options.logLevel ?? DEFAULT_LOG_LEVEL,
    mode: (mode as ChangeLogMode | undefined) ?? options.mode ?? "strict",
    leaseMs:
      number(
        env,
        "EDGECACHE_LEASE_MS",
        /^\d+$/,
        `a whole number of ms >= ${MIN_LEASE_MS}`,
        MIN_LEASE_MS,
      ) ??
      options.leaseMs ??
      DEFAULT_LEASE_MS,
    tierShards: tierShards(env, options.tierShards),
    region: regionOf(env, options.region),
  };
}

function regionOf(env: LogEnv, option: string | undefined): string | undefined {
  const region = variable(env, "EDGECACHE_REGION");
  if (region !== undefined && !REGION_NAME.test(region)) {
    badVariable(
      C,
      "EDGECACHE_REGION",
      "a region name (letters, digits, - or _), such as weur",
      region,
    );
  }
  return region ?? option;
}

/**
 * The Durable Object tier's shard count: `EDGECACHE_TIER_SHARDS` over the code's option, else
 * 1. The Worker and `cacheTierObject` both read it, so the variable, set once in `vars`, is
 * the one number both sides use (the precompute writes to the shards the Worker reads).
 */
export function tierShards(env: { EDGECACHE_TIER_SHARDS?: unknown }, option?: number): number {
  const expected = `a whole number from 1 to ${DURABLE_OBJECT_MAX_SHARDS}`;
  const value = variable(env, "EDGECACHE_TIER_SHARDS");
  if (value === undefined) return option ?? 1;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > DURABLE_OBJECT_MAX_SHARDS) {
    badVariable(C, "EDGECACHE_TIER_SHARDS", expected, value);
  }
  return n;
}

/** The settings in one line, which an isolate logs at `info` when it starts. */
export function describeSettings(s: WorkerSettings): string {
  return [
    `caching ${s.caching ? "on" : "off"}`,
    `ttl ${s.ttl === undefined ? "default" : `${s.ttl} s`}`,
    `memory ${s.memoryBytes} bytes`,
    `kv ${s.kv ? "on" : "off"}`,
    `log level ${s.logLevel}`,
    `log mode ${s.mode}, lease ${s.leaseMs} ms`,
    `tier shards ${s.tierShards}`,
  ].join("; ");
}

type Variable = Exclude<keyof LogEnv, "CHANGE_LOG" | "CACHE">;

/**
 * A variable's text; unset or empty is undefined, as an absent flag. A number in `vars`
 * (`"EDGECACHE_TTL": 300` in wrangler.jsonc) reaches the Worker as a number: taken as text.
 */
function variable(env: Partial<Record<Variable, unknown>>, name: Variable): string | undefined {
  const value: unknown = env[name];
  if (value === undefined || value === "") return undefined;
  if (typeof value === "number") return String(value);
  if (typeof value !== "string") badVariable(C, name, "a string", value);
  return value;
}

function onOff(env: LogEnv, name: Variable): boolean | undefined {
  const value = variable(env, name);
  if (value === undefined) return undefined;
  if (value !== "on" && value !== "off") badVariable(C, name, SWITCH, value);
  return value === "on";
}

/** A positive number in `form` (no sign, exponent or unit), at least `min`. */
function number(
  env: LogEnv,
  name: Variable,
  form: RegExp,
  expected: string,
  min = Number.MIN_VALUE,
): number | undefined {
  const value = variable(env, name);
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!form.test(value) || !Number.isSafeInteger(Math.ceil(n)) || n < min) {
    badVariable(C, name, expected, value);
  }
  return n;
}

function option(options: EdgeCacheOptions, name: "caching" | "kv"): boolean | undefined {
  const value = options[name];
  if (value !== undefined && typeof value !== "boolean") badOption(C, name, "true or false", value);
  return value;
}
