import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { badOption, EdgecacheError } from "../../core/errors.ts";
import type { ViewInfo } from "../../core/query.ts";

/** What `edgecache.config.json` (or `.ts` / `.js`, default-exporting it) may say. */
export interface EdgecacheConfig {
  /** SQLite file of your own; without it edgecache serves the demo database. */
  database?: string;
  /** Declared views: joins served as one resource (`usersWithOrders`). */
  views?: ViewInfo[];
  /** Default time to live of cached responses, seconds (86400). */
  ttl?: number;
  /** Seconds an expired entry may still be served while it is refreshed (0). */
  staleWhileRevalidate?: number;
  /** Per-resource settings: `{"users": {"ttl": 60}}`. */
  routes?: Record<string, { ttl?: number }>;
  /** Memory tier bounds. */
  memory?: { maxBytes?: number; maxEntries?: number };
  /** SQLite file of the persistent cache tier, or false for memory only. */
  cacheFile?: string | false;
  port?: number;
  hostname?: string;
}

export const CONFIG_FILES = ["edgecache.config.json", "edgecache.config.ts", "edgecache.config.js"];
const C = "config";

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
  let raw: unknown;
  try {
    raw = found.endsWith(".json")
      ? JSON.parse(readFileSync(found, "utf8"))
      : ((await import(pathToFileURL(found).href)) as { default: unknown }).default;
  } catch (err) {
    throw new EdgecacheError("E_BAD_OPTION", C, `could not read ${found}: ${String(err)}`, {
      cause: err,
    });
  }
  return { config: validateConfig(raw), path: found };
}

/** Checks every field in "expected X, got Y" form. */
export function validateConfig(raw: unknown): EdgecacheConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    badOption(C, "config", "an object", raw);
  }
  const c = raw as Record<string, unknown>;
  const known = new Set([
    "database",
    "views",
    "ttl",
    "staleWhileRevalidate",
    "routes",
    "memory",
    "cacheFile",
    "port",
    "hostname",
  ]);
  for (const k of Object.keys(c)) {
    if (!known.has(k)) badOption(C, k, `one of ${[...known].join(", ")}`, k);
  }
  const str = (k: string) =>
    c[k] === undefined || typeof c[k] === "string" || badOption(C, k, "a string", c[k]);
  const num = (k: string, v: unknown, min: number) =>
    v === undefined ||
    (typeof v === "number" && v >= min) ||
    badOption(C, k, `a number >= ${min}`, v);
  str("database");
  str("hostname");
  num("ttl", c.ttl, 1);
  num("staleWhileRevalidate", c.staleWhileRevalidate, 0);
  if (
    c.port !== undefined &&
    !(Number.isInteger(c.port) && (c.port as number) >= 0 && (c.port as number) <= 65535)
  ) {
    badOption(C, "port", "an integer from 0 to 65535", c.port);
  }
  if (c.cacheFile !== undefined && c.cacheFile !== false && typeof c.cacheFile !== "string") {
    badOption(C, "cacheFile", "a path or false", c.cacheFile);
  }
  if (c.memory !== undefined) {
    const m = c.memory as Record<string, unknown>;
    if (typeof m !== "object" || m === null) badOption(C, "memory", "an object", m);
    num("memory.maxBytes", m.maxBytes, 1);
    num("memory.maxEntries", m.maxEntries, 1);
  }
  if (c.routes !== undefined) {
    if (typeof c.routes !== "object" || c.routes === null)
      badOption(C, "routes", "an object", c.routes);
    for (const [name, r] of Object.entries(c.routes as Record<string, { ttl?: unknown }>)) {
      num(`routes.${name}.ttl`, r?.ttl, 1);
    }
  }
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
