import { TOKEN_EMPTY } from "../app/access.ts";
import { closest } from "../core/closest.ts";
import { usageError } from "./failure.ts";
import { checkValue, type ValueType } from "./flags.ts";

/**
 * Every environment variable edgecache's command line and Node servers read, in one place
 * (docs/reference/options.md lists the same, a test keeps them together). Read them with
 * `envVar`, so that a variable read somewhere is a variable listed here. `value` is the
 * kind of value it takes, checked when it is read (flags.ts's VALUE_TYPES, as for flags).
 */
export const ENVIRONMENT = {
  PORT: { for: "serve, proxy: the port", flag: "--port", value: "port" },
  DATABASE_URL: { for: "serve, capture: the database", flag: "--db", value: "database" },
  REDIS_URL: { for: "serve, proxy: the Redis nodes share", flag: "--redis", value: "redis" },
  EDGECACHE_ADMIN_TOKEN: {
    for: "serve, proxy: the token the admin API requires; the commands send it",
    flag: "--token",
    value: "token",
    empty: TOKEN_EMPTY,
  },
  EDGECACHE_LOG_LEVEL: {
    for: "serve, proxy: the JSON log's level",
    flag: "--log-level",
    value: "level",
  },
  EDGECACHE_STATE: {
    for: "serve, tenants: the tenants' state database",
    flag: "--state",
    value: "state",
  },
  EDGECACHE_URL: { for: "the node the commands talk to", flag: "--url", value: "url" },
  EDGECACHE_KEY: { for: "warm: a tenant's key", flag: "--key", value: "token" },
  /** Set by npm for a script: a node it started stops when npm goes away. */
  npm_lifecycle_event: { for: "serve, proxy: started by npm" },
} as const satisfies Record<
  string,
  {
    for: string;
    flag?: string;
    value?: ValueType;
    /** Why the variable set but empty is refused, rather than taken for unset. */
    empty?: string;
  }
>;

export type EnvVar = keyof typeof ENVIRONMENT;

/**
 * `EDGECACHE_*` variables read elsewhere: by a Worker (from its bindings, where `--` flags
 * do not exist), or by the tests and benchmarks, which start the command line with them.
 */
const READ_ELSEWHERE: Record<string, string> = {
  EDGECACHE_LOG_MODE: "Workers only",
  EDGECACHE_LEASE_MS: "Workers only (a node's redis setting has leaseMs)",
  EDGECACHE_ALLOWED_HOSTS: "Workers only (a node takes --allowed-hosts)",
  EDGECACHE_CAPTURE_MS: "Workers only (the D1 capture drain's interval)",
  EDGECACHE_REGION: "Workers only (follower mode's region)",
  EDGECACHE_CACHE: "Workers only (caching off; a node has no such switch)",
  EDGECACHE_TTL: "Workers only (a node's config has ttl)",
  EDGECACHE_MEMORY_BYTES: "Workers only (a node's config has memory.maxBytes)",
  EDGECACHE_KV: "Workers only (the KV tier)",
  EDGECACHE_TEST_PG: "the tests",
  EDGECACHE_BENCH_PG: "the benchmarks",
  EDGECACHE_MEMORY_PROBE: "the benchmarks",
  EDGECACHE_HEAP_SNAPSHOT: "the benchmarks",
};

/**
 * The variable's value; an empty one counts as unset, as an absent flag does, unless the
 * variable says why it is refused (`empty`: an empty admin token is not no token). A value of the
 * wrong kind is refused naming the variable (`PORT: expected a port...`), as a flag's value
 * is refused naming the flag: the error names what the user set.
 */
export function envVar(name: EnvVar): string | undefined {
  const value = process.env[name];
  if (value === undefined) return undefined;
  if (value === "") {
    const empty = (ENVIRONMENT[name] as { empty?: string }).empty;
    if (empty) throw usageError(`${name}: ${empty}`);
    return undefined;
  }
  const kind: ValueType | undefined = (ENVIRONMENT[name] as { value?: ValueType }).value;
  const problem = kind && checkValue(kind, value);
  if (problem) throw usageError(`${name}: ${problem}`);
  return value;
}

/**
 * One line for each `EDGECACHE_*` variable of `env` that this process does not read: a
 * misspelt `EDGECACHE_ADMIN_TOKN` would otherwise leave the admin API open to loopback
 * clients without anyone noticing.
 */
export function unreadVariables(env: Record<string, string | undefined>): string[] {
  const known = Object.keys(ENVIRONMENT).filter((n) => n.startsWith("EDGECACHE_"));
  const lines: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith("EDGECACHE_") || name in ENVIRONMENT) continue;
    const elsewhere = READ_ELSEWHERE[name];
    if (elsewhere === "the tests" || elsewhere === "the benchmarks") continue;
    if (elsewhere) {
      lines.push(`[edgecache] [env] ${name} is read by ${elsewhere}; the command line ignores it`);
      continue;
    }
    // EDGECACHE_REDIS_URL for REDIS_URL, EDGECACHE_ADMIN_TOKN for EDGECACHE_ADMIN_TOKEN.
    const near =
      closest(name, known) ?? closest(name.slice("EDGECACHE_".length), Object.keys(ENVIRONMENT));
    lines.push(
      `[edgecache] [env] unknown variable ${name}, ignored${near ? ` (did you mean ${near}?)` : `: edgecache reads ${known.join(", ")}`}`,
    );
  }
  return lines;
}
