import { checkToken, isBearerToken, isHostName, TOKEN_EXPECTED } from "../../app/access.ts";
import { badOption, badVariable, type OptionNames } from "../../core/errors.ts";
import {
  DEFAULT_LOG_LEVEL,
  isLogLevel,
  LOG_LEVELS,
  type LogLevel,
} from "../../core/logging-levels.ts";
import type { DurableObjectNamespaceLike } from "../../durable/rpc.ts";
import {
  CHANGE_LOG_MODES,
  type ChangeLogMode,
  DEFAULT_LEASE_MS,
  MIN_LEASE_MS,
  REGION_NAME,
} from "../../log/durable-object.ts";
import type { TierNamespaceLike } from "../../stores/durable-object.ts";
import { DURABLE_OBJECT_MAX_SHARDS } from "../../stores/durable-object.ts";
import type { KvNamespaceLike } from "../../stores/kv.ts";

/** The bindings and variables of the cache and the log, which every edgecache Worker reads. */
export interface LogEnv {
  /** The Durable Object namespace of `ChangeLogObject`: the order of changes. */
  CHANGE_LOG: DurableObjectNamespaceLike;
  /** KV: the global, eventually consistent tier. */
  CACHE?: KvNamespaceLike;
  /**
   * The Durable Object namespace of `CacheTierObject`: a strongly consistent tier between
   * memory and the Cache API, and the object whose alarm runs the precompute (optional).
   */
  CACHE_TIER?: TierNamespaceLike;
  /** Bearer token of the admin API; without it only loopback clients (wrangler dev) get in. */
  EDGECACHE_ADMIN_TOKEN?: string;
  /** Host names the admin API answers to besides localhost, comma-separated (`api.example.com`). */
  EDGECACHE_ALLOWED_HOSTS?: string;
  /** `strict` (default), `lease`, `follower` or `session`: see `DurableChangeLog`. */
  EDGECACHE_LOG_MODE?: string;
  /** `off`: caching off, every read goes to D1 or the origin (counted as bypasses); `on` (default). */
  EDGECACHE_CACHE?: string;
  /** The default TTL, seconds (over the `ttl` option). */
  EDGECACHE_TTL?: string;
  /** Bytes the isolate's memory tier may hold (over `memoryBytes`). */
  EDGECACHE_MEMORY_BYTES?: string;
  /** `off`: no KV tier even with `CACHE` bound; `on`: KV, which needs `CACHE` (default: KV when bound). */
  EDGECACHE_KV?: string;
  /** `fatal`, `error`, `warn` (default), `info` (every request), `debug`, `trace` or `silent`. */
  EDGECACHE_LOG_LEVEL?: string;
  /** Lease mode: ms an isolate trusts its memory after it last heard the log; follower mode: a follower's lease. */
  EDGECACHE_LEASE_MS?: string;
  /** Follower mode: this Worker's region (a location hint such as `weur`); default from `request.cf`. */
  EDGECACHE_REGION?: string;
  /** Objects the Durable Object tier spreads keys over (over `tierShards`); `cacheTierObject` reads it too. */
  EDGECACHE_TIER_SHARDS?: string;
  /** The log's object: how often it drains change capture, ms (1000 by default; 0: never). */
  EDGECACHE_CAPTURE_MS?: string;
  /** `postgresChangeLogObject`: the PostgreSQL schema whose change table it drains (`public`). */
  EDGECACHE_CAPTURE_SCHEMA?: string;
}

/**
 * The settings a Worker's cache is made of (both the data API's and the proxy's). Where an
 * `EDGECACHE_*` variable is set it wins over its option here (see workerSettings).
 */
export interface EdgeCacheOptions {
  /** Default TTL in seconds (one day); `EDGECACHE_TTL` overrides. */
  ttl?: number;
  /**
   * Seconds after the TTL during which a stale response is served at once and refreshed in
   * the background (`ctx.waitUntil`); 0 (default) turns it off.
   */
  staleWhileRevalidate?: number;
  /** Bytes the isolate's memory tier may hold (MEMORY_TIER_BYTES); `EDGECACHE_MEMORY_BYTES` overrides. */
  memoryBytes?: number;
  /**
   * false: caching off, every read goes to D1 or the origin and nothing is stored, each read
   * counted in the stats' `bypasses`; writes still go through the log. `EDGECACHE_CACHE` overrides.
   */
  caching?: boolean;
  /** false: no KV tier even with a `CACHE` binding (default: KV when bound); `EDGECACHE_KV` overrides. */
  kv?: boolean;
  /**
   * Objects the Durable Object tier (`CACHE_TIER`) spreads keys over, default 1. Prefer the
   * variable `EDGECACHE_TIER_SHARDS`, which `cacheTierObject` reads too: one number for both
   * (else this must equal `cacheTierObject`'s `shards`).
   */
  tierShards?: number;
  /** What the isolate logs (`warn`); `EDGECACHE_LOG_LEVEL` overrides. */
  logLevel?: LogLevel;
  /**
   * The change log's mode and lease; `EDGECACHE_LOG_MODE` / `EDGECACHE_LEASE_MS` override.
   * `follower`: each request syncs with its region's follower of the log (docs/guides/regions.md).
   */
  mode?: ChangeLogMode;
  leaseMs?: number;
  /**
   * Follower mode: the region whose follower this Worker's isolates sync with (a location
   * hint: `wnam`, `enam`, `sam`, `weur`, `eeur`, `apac`, `oc`, `afr`, `me`). Default: from
   * the first request's `cf.continent` (REGION_OF_CONTINENT); `EDGECACHE_REGION` overrides.
   */
  region?: string;
  /** The Durable Object's name: one log (and one order of changes) per name. */
  logName?: string;
}

/**
 * EdgeCacheOptions' names, spread into each Worker's own list (checkOptionNames refuses any
 * other): typed from the interface, so an option added there must be added here.
 */
export const EDGE_CACHE_OPTION_NAMES: OptionNames<EdgeCacheOptions> = {
  caching: true,
  kv: true,
  leaseMs: true,
  logLevel: true,
  logName: true,
  memoryBytes: true,
  mode: true,
  region: true,
  staleWhileRevalidate: true,
  tierShards: true,
  ttl: true,
};

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
  // The change log's object reads these (its capture drain); checked here as well, so a bad
  // value fails every request naming it instead of only the object's drain, unseen, while
  // reads stay stale.
  captureIntervalMs(env, 0);
  captureSchemaVariable(env);
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

/**
 * How often the log's object drains change capture, ms: `EDGECACHE_CAPTURE_MS` (0 turns the
 * drain off), else `fallback`. Anything else is refused, naming the variable: a typo must
 * not turn capture off without a word, leaving reads stale for good.
 */
export function captureIntervalMs(
  env: { EDGECACHE_CAPTURE_MS?: unknown },
  fallback: number,
): number {
  const value = variable(env, "EDGECACHE_CAPTURE_MS");
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    badVariable(
      C,
      "EDGECACHE_CAPTURE_MS",
      "a whole number of ms (such as 1000; 0 turns the drain off)",
      value,
    );
  }
  return Number(value);
}

/**
 * The admin API's bearer token, `EDGECACHE_ADMIN_TOKEN`: visible ASCII without spaces (what
 * `Authorization: Bearer` can carry, see isBearerToken), or unset.
 */
export function adminTokenVariable(env: { EDGECACHE_ADMIN_TOKEN?: unknown }): string | undefined {
  // `variable` takes empty for unset; an empty token is not no token (checkToken).
  if (env.EDGECACHE_ADMIN_TOKEN === "") checkToken(C, "EDGECACHE_ADMIN_TOKEN", "");
  const value = variable(env, "EDGECACHE_ADMIN_TOKEN");
  if (value !== undefined && !isBearerToken(value)) {
    badVariable(C, "EDGECACHE_ADMIN_TOKEN", TOKEN_EXPECTED, "(hidden)");
  }
  return value;
}

/** `EDGECACHE_ALLOWED_HOSTS`: host names, comma-separated (`api.example.com,admin.example.com`). */
export function allowedHostsVariable(env: { EDGECACHE_ALLOWED_HOSTS?: unknown }): string[] {
  const value = variable(env, "EDGECACHE_ALLOWED_HOSTS");
  const hosts = (value ?? "")
    .split(",")
    .map((h) => h.trim())
    .filter((h) => h !== "");
  const bad = hosts.find((h) => !isHostName(h));
  if (bad !== undefined) {
    badVariable(
      C,
      "EDGECACHE_ALLOWED_HOSTS",
      "host names, comma-separated (such as api.example.com)",
      bad,
    );
  }
  return hosts;
}

/** The PostgreSQL schema `postgresChangeLogObject` drains: `EDGECACHE_CAPTURE_SCHEMA`, else public. */
export function captureSchemaVariable(env: { EDGECACHE_CAPTURE_SCHEMA?: unknown }): string {
  const value = variable(env, "EDGECACHE_CAPTURE_SCHEMA");
  if (value === undefined) return "public";
  if (!/^[A-Za-z_][A-Za-z0-9_$]*$/.test(value)) {
    badVariable(C, "EDGECACHE_CAPTURE_SCHEMA", "a schema name (letters, digits, _ or $)", value);
  }
  return value;
}
