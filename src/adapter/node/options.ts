import { DEFAULT_LOG_LEVEL, LOG_LEVELS } from "./logging.ts";

/**
 * The settings of the two servers, `edgecache serve` (the data API) and `edgecache proxy`,
 * described once: the command line's flags (src/cli/server-flags.ts), the config file's
 * known keys (config.ts), the comments `edgecache init` writes and the options reference
 * (docs/reference/options.md, checked by a test) are all made from or checked against this.
 * A flag wins over its variable, the variable over the config key.
 */
export interface ServerOption {
  /** The config file's key: at the top for `serve`, in the `proxy` section for `proxy`. */
  readonly key?: string;
  /** The command-line flag, without its dashes. */
  readonly flag?: string;
  /** The environment variable that stands for the flag (src/cli/environment.ts lists it). */
  readonly env?: string;
  /** The servers it applies to. */
  readonly in: readonly Mode[];
  /** The flag's value: checked before the command runs (src/cli/flags.ts's valueHints). */
  readonly value?: "port" | "seconds" | "level" | "list" | "boolean" | "directives" | "redis";
  /** One line: what it is. */
  readonly doc: string;
  /** What applies without it, as the docs say it; per server where they differ. */
  readonly default?: string | Readonly<Record<Mode, string>>;
}

export type Mode = "serve" | "proxy";

export const SERVER_OPTIONS = [
  {
    key: "database",
    flag: "db",
    env: "DATABASE_URL",
    in: ["serve"],
    doc: "Your SQLite file or postgres:// URL: each table is served at /v1/<table>, reads cached, writes invalidating",
    default: "the demo database ./edgecache.db",
  },
  {
    key: "busyTimeout",
    in: ["serve"],
    doc: "Seconds a write waits for a write lock another process holds, then 503 E_SOURCE_BUSY",
    default: "5",
  },
  {
    key: "views",
    in: ["serve"],
    doc: 'Joins served as one resource, e.g. [{"name": "usersWithOrders", "base": "users", "joins": [{"as": "orders", "table": "orders", "foreignKey": "userId", "references": "id"}]}]',
  },
  {
    key: "ttl",
    in: ["serve"],
    doc: "Seconds a cached response lives unless a write invalidates it first",
    default: "86400",
  },
  {
    key: "staleWhileRevalidate",
    in: ["serve"],
    doc: "Seconds an expired response may still be served while it is refetched",
    default: "0",
  },
  {
    key: "routes",
    in: ["serve"],
    doc: 'Per table or view TTLs, and what browsers may keep, e.g. {"users": {"ttl": 60, "browser": {"maxAge": 30}}}',
  },
  {
    key: "origins",
    in: ["proxy"],
    doc: 'Origins to cache, chosen by host and path prefix: [{"origin", "host", "pathPrefix", "ttl", "clientDirectives"}]; "ttl" is the freshness of responses that state none, "clientDirectives" as --client-directives',
  },
  {
    flag: "origin",
    in: ["proxy"],
    doc: "Origin to cache, e.g. http://127.0.0.1:3000",
    default: "the config's origins",
  },
  {
    flag: "ttl",
    in: ["proxy"],
    value: "seconds",
    doc: "Seconds a response without explicit freshness stays fresh (with --origin)",
  },
  {
    flag: "client-directives",
    in: ["proxy"],
    value: "directives",
    doc: 'Clients\' Cache-Control and Pragma on reads (with --origin): "follow" (RFC 9111) or "ignore" (no-cache, max-age, min-fresh and Pragma: no-cache neither skip nor revalidate a stored answer)',
    default: "follow",
  },
  {
    key: "maxCacheableSize",
    in: ["proxy"],
    doc: "Largest response body stored, bytes; larger ones stream through",
    default: "8388608",
  },
  {
    key: "grace",
    flag: "grace",
    in: ["proxy"],
    value: "seconds",
    doc: "Seconds stored content may be served while the origin is down or answers 500, 502, 503 or 504",
    default: "0",
  },
  {
    key: "forwardHeaders",
    flag: "forward-headers",
    in: ["proxy"],
    value: "list",
    doc: "Client request headers the origin gets besides Accept, Accept-Encoding, Accept-Language, Authorization, Cache-Control, Cookie, Origin and Pragma; each is part of the cache key (docs/operating/security.md)",
    default: "none",
  },
  {
    key: "learn",
    flag: "learn",
    in: ["proxy"],
    value: "boolean",
    doc: "Learn which cached GETs each write changes, and invalidate them (docs/guides/learned-rules.md)",
    default: "off",
  },
  {
    key: "manifest",
    flag: "manifest",
    in: ["proxy"],
    doc: "URLs to keep cached: a file of URLs or paths, one a line ({1..20} and {a,b} expand), fetched at start and again before each expires; the config may list them instead",
  },
  {
    key: "manifestConcurrency",
    in: ["proxy"],
    doc: "Manifest fetches at once",
    default: "4",
  },
  {
    key: "memory",
    in: ["serve", "proxy"],
    doc: "The memory tier's bounds: {maxBytes, maxEntries}",
    default: "50 MB, 100,000",
  },
  {
    key: "cacheFile",
    flag: "cache-file",
    in: ["serve", "proxy"],
    doc: "SQLite file of the persistent tier, or false (--no-cache-file) to keep the cache in memory",
    default: { serve: "beside the database", proxy: "./edgecache-proxy.cache.db" },
  },
  {
    key: "disk",
    in: ["serve", "proxy"],
    doc: "The cache file's bounds: {maxBytes, maxEntries}",
    default: "256 MiB, 100,000",
  },
  {
    key: "index",
    in: ["serve", "proxy"],
    doc: "The dependency index's heap: {maxBytes}",
    default: "64 MiB",
  },
  {
    key: "notFound",
    in: ["serve", "proxy"],
    doc: "Cached 404s and 410s: {maxEntries}",
    default: "10,000",
  },
  {
    key: "port",
    flag: "port",
    env: "PORT",
    in: ["serve", "proxy"],
    value: "port",
    doc: "Port to listen on (0 picks a free one)",
    default: { serve: "8787", proxy: "8788" },
  },
  {
    key: "hostname",
    flag: "host",
    in: ["serve", "proxy"],
    doc: "Address to listen on; 127.0.0.1 keeps the node on this machine",
    default: "127.0.0.1",
  },
  {
    key: "redis",
    flag: "redis",
    env: "REDIS_URL",
    in: ["serve", "proxy"],
    value: "redis",
    doc: "Redis shared by several nodes, e.g. redis://127.0.0.1:6379: a write through any node is seen by every node",
  },
  {
    key: "trustedProxies",
    flag: "trusted-proxies",
    in: ["serve", "proxy"],
    value: "list",
    doc: "Addresses of reverse proxies whose X-Forwarded-For is believed",
  },
  {
    key: "allowedHosts",
    flag: "allowed-hosts",
    in: ["serve", "proxy"],
    value: "list",
    doc: "Host names the node answers to besides localhost, 127.0.0.1, [::1] and its --host address (DNS rebinding: a loopback node answers no other name)",
  },
  {
    key: "allowedOrigins",
    flag: "allowed-origins",
    in: ["serve"],
    value: "list",
    doc: "Origins whose browser writes the data API accepts besides its own (such as https://app.example.com)",
  },
  {
    flag: "log-level",
    env: "EDGECACHE_LOG_LEVEL",
    in: ["serve", "proxy"],
    value: "level",
    doc: `JSON log on stdout: ${LOG_LEVELS.join(", ")}; info logs every request`,
    default: DEFAULT_LOG_LEVEL,
  },
  {
    flag: "config",
    in: ["serve", "proxy"],
    doc: "Config file",
    default: "./edgecache.config.{json,ts,js}",
  },
  {
    flag: "state",
    env: "EDGECACHE_STATE",
    in: ["serve"],
    doc: "Serve the tenants of this state database",
    default: "./edgecache.tenants.db when it exists",
  },
  {
    key: "proxy",
    in: ["serve"],
    doc: "The proxy section, read by edgecache proxy only",
  },
] as const satisfies readonly ServerOption[];

/** The config keys of `mode`'s section, in the table's order. */
export function configKeys(mode: Mode): string[] {
  return SERVER_OPTIONS.flatMap((o: ServerOption) =>
    o.key !== undefined && o.in.includes(mode) ? [o.key] : [],
  );
}

/** The option that config key `key` of `mode` is; throws for a key the table lacks. */
export function optionOfKey(mode: Mode, key: string): ServerOption {
  const found = SERVER_OPTIONS.find((o: ServerOption) => o.key === key && o.in.includes(mode));
  if (!found) throw new Error(`no config key ${key} for ${mode}`);
  return found;
}

/** `default` as it applies to `mode`. */
export function defaultOf(option: ServerOption, mode: Mode): string | undefined {
  return typeof option.default === "object" ? option.default[mode] : option.default;
}
