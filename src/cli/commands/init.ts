import { existsSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { defineCommand } from "citty";
import stripJsonComments from "strip-json-comments";
import { validateConfig } from "../../adapter/node/config.ts";
import { isPostgresUrl } from "../../sources/postgres.ts";
import { CliFailure, EXIT, usageError } from "../run.ts";

const FILE = "edgecache.config.json";

const args = {
  db: {
    type: "string",
    description: "Your SQLite file or postgres:// URL, served as the data API",
    valueHint: "path",
  },
  origin: {
    type: "string",
    description: "Your HTTP API, cached by proxy mode, e.g. http://127.0.0.1:3000",
    valueHint: "url",
  },
  ttl: {
    type: "string",
    description: "Default seconds a response stays cached (data API 86400; proxy 60)",
    valueHint: "seconds",
  },
  config: {
    type: "string",
    description: `Where to write it (default ./${FILE})`,
    valueHint: "path",
  },
  force: { type: "boolean", description: "Overwrite an existing file" },
} as const;

/** `edgecache init`: writes a commented config for the user's database or origin. */
export const init = defineCommand({
  meta: {
    name: "init",
    description: `Write a commented ${FILE} for your database (--db) or origin (--origin)`,
  },
  args,
  run({ args: a }) {
    if (!a.db === !a.origin)
      throw usageError("expected either --db <sqlite file> or --origin <url>");
    const ttl = a.ttl === undefined ? undefined : Number(a.ttl);
    if (ttl !== undefined && !(Number.isInteger(ttl) && ttl >= 1)) {
      throw usageError(`--ttl: expected whole seconds >= 1, got ${a.ttl}`);
    }
    const path = resolve(a.config ?? FILE);
    if (existsSync(path) && !a.force) {
      throw new CliFailure(`${path} exists: pass --force to overwrite it`, EXIT.failed);
    }
    let text: string;
    if (a.db) {
      if (!isPostgresUrl(a.db) && !existsSync(resolve(a.db))) {
        throw usageError(`--db: no SQLite file at ${resolve(a.db)}`);
      }
      text = dataConfig(a.db, ttl ?? 86_400);
    } else {
      let origin: URL;
      try {
        origin = new URL(a.origin!);
      } catch {
        throw usageError(
          `--origin: expected a URL such as http://127.0.0.1:3000, got ${JSON.stringify(a.origin)}`,
        );
      }
      text = proxyConfig(origin.origin, ttl ?? 60);
    }
    // What it wrote must load: the same check `serve` and `proxy` make.
    validateConfig(JSON.parse(stripJsonComments(text, { trailingCommas: true })));
    writeFileSync(path, text);
    console.log(`wrote ${path}`);
    console.log(a.db ? "start it: edgecache serve" : "start it: edgecache proxy");
  },
});

function dataConfig(database: string, ttl: number): string {
  return `// edgecache config, read by \`edgecache serve\` from this directory (or --config <file>).
// Every key but "database" is optional; the values shown are the defaults. See the README.
{
  // Your SQLite file or postgres:// URL: each table is served at /v1/<table>, reads cached,
  // writes invalidating.
  "database": ${JSON.stringify(database)},

  // Seconds a cached response lives unless a write invalidates it first.
  "ttl": ${ttl},
  // Seconds an expired response may still be served while it is refetched.
  "staleWhileRevalidate": 0,
  // Per table or view TTLs, e.g. {"users": {"ttl": 60}}.
  "routes": {},
  // Joins served as one resource, e.g.
  // [{"name": "usersWithOrders", "base": "users",
  //   "joins": [{"as": "orders", "table": "orders", "foreignKey": "userId", "references": "id"}]}]
  "views": [],

  // The memory tier; beyond it, the SQLite cache file beside the database (or "cacheFile").
  "memory": { "maxBytes": 52428800, "maxEntries": 100000 },
  "disk": { "maxBytes": 268435456, "maxEntries": 100000 },

  "port": 8787,
  // 127.0.0.1 keeps the node on this machine; the data API has no authentication.
  "hostname": "127.0.0.1",

  // Several nodes: a Redis they share, e.g. "redis://127.0.0.1:6379" (README "Many nodes").
  // "redis": "redis://127.0.0.1:6379",
}
`;
}

function proxyConfig(origin: string, ttl: number): string {
  return `// edgecache config, read by \`edgecache proxy\` from this directory (or --config <file>).
// Every key but "origins" is optional; the values shown are the defaults. See the README.
{
  "proxy": {
    // Origins to cache, chosen by host and path prefix. "ttl": seconds a response without
    // Cache-Control freshness stays fresh (what the origin says always wins).
    "origins": [{ "origin": ${JSON.stringify(origin)}, "ttl": ${ttl} }],

    // Seconds stored content may be served while the origin is down or answers 5xx.
    "grace": 0,
    // Largest response body stored, bytes; larger ones stream through.
    "maxCacheableSize": 8388608,

    // The memory tier, then a SQLite file that survives restarts (false: memory only).
    "memory": { "maxBytes": 52428800, "maxEntries": 100000 },
    "cacheFile": "edgecache-proxy.cache.db",

    "port": 8788,
    "hostname": "127.0.0.1",

    // Several proxy nodes: a Redis they share, so a purge reaches every node.
    // "redis": "redis://127.0.0.1:6379",
  },
}
`;
}
