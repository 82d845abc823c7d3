import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import stripJsonComments from "strip-json-comments";
import { addressSet, hostSet, originSet } from "../../app/access.ts";
import { type DataRoute, validateDataRoutes } from "../../app/data-routes.ts";
import {
  forwardedHeaders,
  type LearnOptions,
  type OriginRoute,
  validateRoutes,
} from "../../app/proxy/index.ts";
import type { ViewInfo } from "../../core/data/query.ts";
import { badOption, checkOptionNames, EdgecacheError } from "../../core/errors.ts";
import type { RedisSetting } from "./cluster.ts";
import { configKeys } from "./options.ts";

/** What `edgecache.config.json` (or `.ts`, `.js` and the rest of CONFIG_FILES, default-exporting it) may say. */
export interface EdgecacheConfig {
  /**
   * Your database: a SQLite file or a `postgres://` URL; without it edgecache serves the
   * demo database (DATABASE_URL or `--db` name it too).
   */
  database?: string;
  /** Seconds a write waits for a write lock another process holds, then 503 (5). */
  busyTimeout?: number;
  /** Declared views: joins served as one resource (`usersWithOrders`). */
  views?: ViewInfo[];
  /** Default time to live of cached responses, seconds (86400). */
  ttl?: number;
  /** Seconds an expired entry may still be served while it is refreshed (0). */
  staleWhileRevalidate?: number;
  /**
   * Per-resource settings: `{"users": {"ttl": 60}}`, with `staleWhileRevalidate`, and what
   * browsers and CDNs may keep: `{"products": {"browser": {"maxAge": 60}}}` (DataRoute).
   */
  routes?: Record<string, DataRoute>;
  /** Memory tier bounds. */
  memory?: { maxBytes?: number; maxEntries?: number };
  /** SQLite file of the persistent cache tier, or false for memory only. */
  cacheFile?: string | false;
  /** Bounds of the cache file (256 MiB, 100 000 entries). */
  disk?: { maxBytes?: number; maxEntries?: number };
  /** Cached 404 and 410 responses kept at once (10 000). */
  notFound?: { maxEntries?: number };
  /** The dependency index's heap at most, bytes (64 MiB). */
  index?: { maxBytes?: number };
  port?: number;
  hostname?: string;
  /**
   * Redis shared by several nodes: `redis://host:6379`, or `{url, prefix, leaseMs}`. With it
   * a write through any node is seen by every node (see the README's "Many nodes").
   */
  redis?: RedisSetting;
  /** Reverse proxies (IP addresses) whose X-Forwarded-For is believed. */
  trustedProxies?: string[];
  /** Host names the node answers to besides localhost, 127.0.0.1, [::1] and the address it listens on (`hostname`; DNS rebinding). */
  allowedHosts?: string[];
  /** Origins whose browser writes the data API accepts besides its own (CSRF). */
  allowedOrigins?: string[];
  /** Proxy mode (`edgecache proxy`): the origins and the cache in front of them. */
  proxy?: ProxyConfig;
}

/** The `proxy` section: used by `edgecache proxy`, ignored by `edgecache serve`. */
export interface ProxyConfig {
  /** Origins, chosen by host and path prefix; each with its own default TTL. */
  origins: OriginRoute[];
  /** Largest response body stored, bytes (8 MiB); larger ones stream through. */
  maxCacheableSize?: number;
  /** Seconds stored content may be served when the origin is down or answers 5xx (0). */
  grace?: number;
  /** Client request headers sent to the origin besides the default few, and keyed by. */
  forwardHeaders?: string[];
  memory?: { maxBytes?: number; maxEntries?: number };
  /** SQLite file of the persistent tier (./edgecache-proxy.cache.db), or false. */
  cacheFile?: string | false;
  disk?: { maxBytes?: number; maxEntries?: number };
  notFound?: { maxEntries?: number };
  index?: { maxBytes?: number };
  port?: number;
  hostname?: string;
  /** Redis shared by several proxy nodes (purges reach every node). */
  redis?: RedisSetting;
  trustedProxies?: string[];
  allowedHosts?: string[];
  /** Learned invalidation (README, "Learned invalidation"): true, or its options and hand-written rules. */
  learn?: boolean | LearnOptions;
  /** URLs kept cached: a manifest file's path (relative to the working directory), or its lines. */
  manifest?: string | string[];
  /** Manifest fetches at once (4). */
  manifestConcurrency?: number;
}

/** The names looked for in the working directory, in this order; `--config` takes the same kinds. */
export const CONFIG_FILES = [
  "edgecache.config.json",
  "edgecache.config.jsonc",
  "edgecache.config.ts",
  "edgecache.config.mts",
  "edgecache.config.cts",
  "edgecache.config.js",
  "edgecache.config.mjs",
  "edgecache.config.cjs",
];
const C = "config";
const KINDS = /\.(jsonc?|[mc]?ts|[mc]?js)$/;

/** Finds and loads the config file in `dir` (or `path`); undefined when there is none. */
export async function loadConfig(
  dir: string,
  path?: string,
): Promise<{ config: EdgecacheConfig; path: string } | undefined> {
  const found = path
    ? resolve(dir, path)
    : CONFIG_FILES.map((f) => resolve(dir, f)).find((f) => existsSync(f));
  if (!found) return undefined;
  if (!existsSync(found)) throw new EdgecacheError("E_BAD_OPTION", C, `no config file at ${found}`);
  const kind = KINDS.exec(found)?.[1];
  if (!kind) {
    throw new EdgecacheError(
      "E_BAD_OPTION",
      C,
      `cannot read ${found}: expected a .json, .jsonc, .ts, .mts, .cts, .js, .mjs or .cjs file`,
    );
  }
  let raw: unknown;
  try {
    raw = kind.startsWith("json")
      ? // Comments and trailing commas allowed: `edgecache init` writes a commented file.
        JSON.parse(stripJsonComments(readFileSync(found, "utf8"), { trailingCommas: true }))
      : await importConfig(found);
  } catch (err) {
    throw new EdgecacheError("E_BAD_OPTION", C, `could not read ${found}: ${String(err)}`, {
      cause: err,
    });
  }
  return { config: validateConfig(raw), path: found };
}

/**
 * A code config's default export. tsx's tsImport compiles TypeScript with a loader of its
 * own, registered for this import alone: Node cannot import .ts from the published build, and
 * a global registration (the clone's bin) loads a .ts file in a CommonJS app through
 * `require` untransformed. Both module kinds, in either package type, come back the same way.
 */
async function importConfig(file: string): Promise<unknown> {
  const { tsImport } = await import("tsx/esm/api");
  const loaded = (await tsImport(pathToFileURL(file).href, { parentURL: import.meta.url })) as {
    default?: unknown;
  };
  const exported = loaded.default as { __esModule?: boolean; default?: unknown } | undefined;
  // A file run as CommonJS gives its module.exports; an `export default` compiled into it
  // sits one level down, marked __esModule.
  return exported?.__esModule && "default" in exported ? exported.default : exported;
}

const num = (k: string, v: unknown, min: number) =>
  v === undefined ||
  (typeof v === "number" && v >= min) ||
  badOption(C, k, `a number >= ${min}`, v);
const str = (c: Record<string, unknown>, k: string, at = k) =>
  c[k] === undefined || typeof c[k] === "string" || badOption(C, at, "a string", c[k]);

function checkKeys(c: Record<string, unknown>, known: Set<string>, at: string): void {
  checkOptionNames(
    C,
    c,
    Object.fromEntries([...known].map((k) => [k, true])) as Record<string, true>,
    at,
  );
}

/** The server settings both sections have (`at`: "" or "proxy."). */
function checkServer(c: Record<string, unknown>, at: string): void {
  str(c, "hostname", `${at}hostname`);
  addressSet(C, `${at}trustedProxies`, c.trustedProxies);
  hostSet(C, `${at}allowedHosts`, c.allowedHosts);
  if (
    c.port !== undefined &&
    !(Number.isInteger(c.port) && (c.port as number) >= 0 && (c.port as number) <= 65535)
  ) {
    badOption(C, `${at}port`, "an integer from 0 to 65535", c.port);
  }
  if (c.cacheFile !== undefined && c.cacheFile !== false && typeof c.cacheFile !== "string") {
    badOption(C, `${at}cacheFile`, "a path or false", c.cacheFile);
  }
  if (c.redis !== undefined) checkRedis(c.redis, `${at}redis`);
  bounds(c, "memory", at, ["maxBytes", "maxEntries"]);
  bounds(c, "disk", at, ["maxBytes", "maxEntries"]);
  bounds(c, "notFound", at, ["maxEntries"]);
  bounds(c, "index", at, ["maxBytes"]);
}

/** A section of size bounds (`memory`, `disk`, `notFound`): positive integers only. */
function bounds(c: Record<string, unknown>, key: string, at: string, fields: string[]): void {
  const b = c[key] as Record<string, unknown> | undefined;
  if (b === undefined) return;
  if (typeof b !== "object" || b === null || Array.isArray(b)) {
    badOption(C, `${at}${key}`, "an object", b);
  }
  checkKeys(b, new Set(fields), `${at}${key}.`);
  for (const f of fields) {
    const v = b[f];
    if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= 1)) {
      badOption(C, `${at}${key}.${f}`, "an integer >= 1", v);
    }
  }
}

function checkRedis(raw: unknown, at: string): void {
  if (typeof raw === "string") return;
  if (typeof raw !== "object" || raw === null) {
    badOption(C, at, "a redis:// URL or {url, prefix, leaseMs, cluster, reloadLists}", raw);
  }
  const r = raw as Record<string, unknown>;
  checkKeys(r, new Set(["url", "prefix", "leaseMs", "cluster", "reloadLists"]), `${at}.`);
  for (const flag of ["cluster", "reloadLists"]) {
    if (r[flag] !== undefined && typeof r[flag] !== "boolean") {
      badOption(C, `${at}.${flag}`, "true or false", r[flag]);
    }
  }
  if (typeof r.url !== "string") badOption(C, `${at}.url`, "a redis:// URL", r.url);
  str(r, "prefix", `${at}.prefix`);
  num(`${at}.leaseMs`, r.leaseMs, 200);
}

function validateProxy(raw: unknown): void {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    badOption(C, "proxy", "an object", raw);
  }
  const p = raw as Record<string, unknown>;
  checkKeys(p, new Set(configKeys("proxy")), "proxy.");
  // Its fields are checked where the proxy is made (createProxy), in the same form.
  if (
    p.learn !== undefined &&
    typeof p.learn !== "boolean" &&
    (typeof p.learn !== "object" || p.learn === null)
  ) {
    badOption(C, "proxy.learn", "true, false or an object of learning options", p.learn);
  }
  if (
    p.manifest !== undefined &&
    typeof p.manifest !== "string" &&
    !(Array.isArray(p.manifest) && p.manifest.every((l) => typeof l === "string"))
  ) {
    badOption(C, "proxy.manifest", "a manifest file's path or an array of URLs", p.manifest);
  }
  if (
    p.manifestConcurrency !== undefined &&
    !(Number.isSafeInteger(p.manifestConcurrency) && (p.manifestConcurrency as number) >= 1)
  ) {
    badOption(C, "proxy.manifestConcurrency", "an integer >= 1", p.manifestConcurrency);
  }
  validateRoutes(p.origins, C, "proxy.origins");
  num("proxy.maxCacheableSize", p.maxCacheableSize, 0);
  num("proxy.grace", p.grace, 0);
  forwardedHeaders(p.forwardHeaders, C, "proxy.forwardHeaders");
  checkServer(p, "proxy.");
}

/** Checks every field in "expected X, got Y" form. */
export function validateConfig(raw: unknown): EdgecacheConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    badOption(C, "config", "an object", raw);
  }
  const c = raw as Record<string, unknown>;
  checkKeys(c, new Set(configKeys("serve")), "");
  str(c, "database");
  checkServer(c, "");
  originSet(C, "allowedOrigins", c.allowedOrigins);
  num("ttl", c.ttl, 1);
  num("staleWhileRevalidate", c.staleWhileRevalidate, 0);
  num("busyTimeout", c.busyTimeout, 0);
  if (c.proxy !== undefined) validateProxy(c.proxy);
  validateDataRoutes(c.routes, C);
  if (c.views !== undefined) {
    if (!Array.isArray(c.views)) badOption(C, "views", "an array", c.views);
    c.views.forEach((v: Record<string, unknown>, i: number) => {
      const at = `views[${i}]`;
      if (typeof v?.name !== "string") badOption(C, `${at}.name`, "a string", v?.name);
      if (typeof v.base !== "string") badOption(C, `${at}.base`, "a string", v.base);
      if (!Array.isArray(v.joins)) badOption(C, `${at}.joins`, "an array", v.joins);
      for (const [j, join] of (v.joins as Record<string, unknown>[]).entries()) {
        for (const f of ["as", "table", "foreignKey", "references"]) {
          if (typeof join?.[f] !== "string")
            badOption(C, `${at}.joins[${j}].${f}`, "a string", join?.[f]);
        }
      }
    });
  }
  return c as EdgecacheConfig;
}
