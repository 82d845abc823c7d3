#!/usr/bin/env node
import { existsSync } from "node:fs";
import { defineCommand } from "citty";
import type { RedisSetting } from "../adapter/node/cluster.ts";
import { loadConfig } from "../adapter/node/config.ts";
import { createNodeEdgecache } from "../adapter/node/modes/data-api.ts";
import { createNodeProxy, DEFAULT_PROXY_CACHE_FILE } from "../adapter/node/modes/proxy.ts";
import { DRAIN_MS, type RunningServer } from "../adapter/node/server/server.ts";
import { createTenantNode } from "../adapter/node/tenants/dispatcher.ts";
import { DEFAULT_STATE_FILE } from "../adapter/node/tenants/state.ts";
import type { ClientDirectives } from "../app/proxy/index.ts";
import { EdgecacheError } from "../core/errors.ts";
import { capture } from "./capture.ts";
import { explain } from "./commands/explain.ts";
import { init } from "./commands/init.ts";
import { invalidate } from "./commands/invalidate.ts";
import { keys } from "./commands/keys.ts";
import { purge } from "./commands/purge.ts";
import { rules } from "./commands/rules.ts";
import { stats } from "./commands/stats.ts";
import { tenants } from "./commands/tenants.ts";
import { warm } from "./commands/warm.ts";
import { envVar } from "./environment.ts";
import { friendly } from "./friendly.ts";
import { runCli } from "./run.ts";
import { serverArgs } from "./server-flags.ts";

/** A list flag's value: comma-separated. */
function listOf(value: string): string[] {
  return value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

/** The flags given, over the config's values. */
function serverOptionsOf(args: {
  "trusted-proxies"?: string;
  "allowed-hosts"?: string;
  "log-level"?: string;
}) {
  return {
    ...(args["trusted-proxies"] !== undefined && {
      trustedProxies: listOf(args["trusted-proxies"]),
    }),
    ...(args["allowed-hosts"] !== undefined && { allowedHosts: listOf(args["allowed-hosts"]) }),
    logLevel: args["log-level"] || envVar("EDGECACHE_LOG_LEVEL") || undefined,
  };
}

const serve = defineCommand({
  meta: {
    name: "serve",
    description: "Serve the data API (the demo database unless a config names yours)",
  },
  args: serverArgs("serve"),
  run: ({ args }) =>
    friendly(async () => {
      const state =
        args.state ||
        envVar("EDGECACHE_STATE") ||
        (existsSync(DEFAULT_STATE_FILE) ? DEFAULT_STATE_FILE : undefined);
      if (state) {
        const port = portOf(args.port ?? envVar("PORT") ?? 8787);
        const redis = args.redis || envVar("REDIS_URL");
        const node = await createTenantNode({
          state,
          port,
          hostname: args.host,
          ...serverOptionsOf(args),
          adminToken: envVar("EDGECACHE_ADMIN_TOKEN") || undefined,
          ...(redis && { redis }),
          ...(cacheFileFlag(args["cache-file"]) === false && { cacheDir: false as const }),
        });
        const { url } = await listen(node, port, args.host);
        console.log(`edgecache serving the tenants of ${node.state.where}`);
        if (node.shared)
          console.log(`shared:    tenants' change logs and entries on ${redisUrl(node.shared)}`);
        console.log(`tenants:   ${url}/ with Authorization: Bearer <tenant key>`);
        console.log(`admin API: ${url}/_edgecache/stats (each tenant's own, with its key)`);
        stopOnSignals(node);
        return;
      }
      const loaded = await loadConfig(process.cwd(), args.config);
      const config = loaded?.config ?? {};
      const port = portOf(args.port ?? envVar("PORT") ?? config.port ?? 8787);
      // --db names the demo database's file unless a config names a database of its own.
      const flag = cacheFileFlag(args["cache-file"]);
      const redis = args.redis || envVar("REDIS_URL") || config.redis;
      const db = args.db || envVar("DATABASE_URL");
      const edgecache = await createNodeEdgecache({
        ...config,
        ...(db && (config.database ? { database: db } : { demoDatabase: db })),
        ...(flag !== undefined && { cacheFile: flag }),
        ...(redis && { redis }),
        port,
        hostname: args.host ?? config.hostname,
        ...serverOptionsOf(args),
        ...(args["allowed-origins"] !== undefined && {
          allowedOrigins: listOf(args["allowed-origins"]),
        }),
        adminToken: envVar("EDGECACHE_ADMIN_TOKEN") || undefined,
      });
      const { url } = await listen(edgecache, port, args.host ?? config.hostname);
      const resources = [
        ...edgecache.api.schema.tables.keys(),
        ...edgecache.api.schema.views.keys(),
      ];
      console.log(
        `edgecache serving ${edgecache.demo ? "the demo database" : "your database"} ${edgecache.databasePath}`,
      );
      if (loaded) console.log(`config: ${loaded.path}`);
      console.log(`data API:  ${url}/v1/{${resources.join(",")}}`);
      console.log(`try:       curl '${url}/v1/users?firstName=Lane&limit=5'`);
      console.log(`admin API: ${url}/_edgecache/stats`);
      if (redis) console.log(sharedLine(redis, edgecache.cache));
      stopOnSignals(edgecache);
    }),
});

const proxy = defineCommand({
  meta: {
    name: "proxy",
    description: "Cache an HTTP API: edgecache in front of an origin (RFC 9111 caching)",
  },
  args: serverArgs("proxy"),
  run: ({ args }) =>
    friendly(async () => {
      const loaded = await loadConfig(process.cwd(), args.config);
      const config = loaded?.config.proxy;
      const origins = args.origin
        ? [
            {
              origin: args.origin,
              ...(args.ttl && { ttl: numberOf("--ttl", args.ttl) }),
              ...(args["client-directives"] && {
                clientDirectives: args["client-directives"] as ClientDirectives,
              }),
            },
          ]
        : config?.origins;
      if (!origins) {
        throw new EdgecacheError(
          "E_BAD_OPTION",
          "cli",
          "--origin: expected an origin such as http://127.0.0.1:3000, or a config file with a proxy section",
        );
      }
      const port = portOf(args.port ?? envVar("PORT") ?? config?.port ?? 8788);
      const flag = cacheFileFlag(args["cache-file"]);
      const redis = args.redis || envVar("REDIS_URL") || config?.redis;
      const node = await createNodeProxy({
        ...config,
        origins,
        port,
        hostname: args.host ?? config?.hostname,
        ...(redis && { redis }),
        ...serverOptionsOf(args),
        cacheFile: flag ?? config?.cacheFile,
        ...(args.grace && { grace: numberOf("--grace", args.grace) }),
        ...(args["forward-headers"] !== undefined && {
          forwardHeaders: listOf(args["forward-headers"]),
        }),
        ...(args.learn && { learn: config?.learn || true }),
        ...(args.manifest && { manifest: args.manifest }),
        adminToken: envVar("EDGECACHE_ADMIN_TOKEN") || undefined,
      });
      const { url } = await listen(node, port, args.host ?? config?.hostname);
      const file = flag ?? config?.cacheFile ?? DEFAULT_PROXY_CACHE_FILE;
      console.log(`edgecache proxy in front of ${origins.map((o) => o.origin).join(", ")}`);
      if (loaded?.config.proxy) console.log(`config: ${loaded.path}`);
      console.log(`proxy:     ${url}/`);
      console.log(`admin API: ${url}/_edgecache/stats`);
      console.log(`cache:     memory${file === false ? " only" : ` + ${file}`}`);
      console.log(clientsLine(origins));
      if (redis) console.log(sharedLine(redis, node.cache));
      if (args.learn || config?.learn) console.log(`learning:  ${url}/_edgecache/rules`);
      if (node.manifest) {
        const { total } = node.manifest.summary();
        console.log(`manifest:  ${total} URLs kept cached: ${url}/_edgecache/manifest`);
      }
      stopOnSignals(node);
    }),
});

/**
 * What the proxy does with clients' reloads (`no-cache`, `max-age=0`): by default each one
 * costs an origin request, which a newcomer otherwise learns from the origin's load.
 */
function clientsLine(origins: readonly { clientDirectives?: ClientDirectives }[]): string {
  const ignored = origins.filter((o) => o.clientDirectives === "ignore").length;
  if (ignored === origins.length)
    return "clients:   reloads (no-cache, max-age=0) served from cache";
  const which = ignored === 0 ? "" : " on routes that follow them";
  return `clients:   reloads (no-cache, max-age=0) revalidate with the origin${which} (RFC 9111; --client-directives ignore serves them from cache)`;
}

/** `--cache-file PATH`, or false for `--no-cache-file` (citty's negation); undefined if not given. */
function cacheFileFlag(value: unknown): string | false | undefined {
  if (value === false) return false;
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** The shared log's line, with this node's name in it (what a manifest's keeper shows). */
function sharedLine(redis: RedisSetting, cache: { log: { node?: string } }): string {
  const name = cache.log.node === undefined ? "" : ` as node ${cache.log.node}`;
  return `shared:    change log and lease on ${redisUrl(redis)}${name}`;
}

/** The URL to show: without a password. */
function redisUrl(setting: RedisSetting): string {
  const url = new URL(typeof setting === "string" ? setting : setting.url);
  if (url.password) url.password = "***";
  return url.href;
}

/**
 * The port, from a value already checked where it was given: --port by checkFlags, PORT by
 * envVar, the config's port by loadConfig; each error names its own.
 */
function portOf(value: string | number): number {
  return Number(value);
}

function numberOf(flag: string, value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !(n >= 0)) {
    throw new EdgecacheError("E_BAD_OPTION", "cli", `${flag}: expected seconds >= 0, got ${value}`);
  }
  return n;
}

interface Listening {
  listen(): Promise<RunningServer>;
  close(): Promise<void>;
}

/** Listens, or says in one line which flag the system refused and what to pass instead. */
async function listen(
  node: Listening,
  port: number,
  host: string | undefined,
): Promise<RunningServer> {
  try {
    return await node.listen();
  } catch (err) {
    await node.close();
    const code = (err as { code?: string }).code;
    if (code === "EADDRINUSE") {
      throw new EdgecacheError(
        "E_BAD_OPTION",
        "cli",
        `port ${port} is in use: stop what runs there or pass --port (0 picks a free one)`,
      );
    }
    if (code === "EACCES") {
      throw new EdgecacheError(
        "E_BAD_OPTION",
        "cli",
        `--port ${port}: this user may not listen there (EACCES): pass --port 1024 or above (0 picks a free one)`,
      );
    }
    if (code === "ENOTFOUND" || code === "EADDRNOTAVAIL" || code?.startsWith("EAI_")) {
      throw new EdgecacheError(
        "E_BAD_OPTION",
        "cli",
        `--host ${host}: not an address of this machine (${code}): pass one of its addresses, 127.0.0.1 (this machine only) or 0.0.0.0 (every address)`,
      );
    }
    throw err;
  }
}

/** After the drain, closing the tiers and the database gets this long before the exit. */
const CLOSE_MS = 5_000;
/** How often a process started by npm checks that its parent is still there. */
const PARENT_POLL_MS = 500;

/**
 * Runs until SIGINT or SIGTERM, then stops accepting connections, lets requests in flight
 * finish (DRAIN_MS at most) and closes the tiers (the SQLite tier is flushed and stamped).
 * A repeated signal (a terminal's Ctrl-C reaches both npm and this process) changes nothing;
 * the bound holds either way.
 *
 * Under npm (`npm start`, `npx edgecache`) a signal sent to npm reaches only npm's child;
 * when that child is the `sh -c` npm runs scripts with (npx always), the shell dies and this
 * process is left to init. So a process npm started stops, as on SIGTERM, when its parent
 * goes away. (Outside npm it does not: `nohup edgecache serve &` outlives its shell.)
 */
function stopOnSignals(node: Listening): void {
  let stopping = false;
  const stop = (why: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${why}: finishing requests in flight, then closing`);
    setTimeout(() => {
      console.error(`edgecache: not closed within ${(DRAIN_MS + CLOSE_MS) / 1000} s; exiting`);
      process.exit(1);
    }, DRAIN_MS + CLOSE_MS).unref();
    node.close().then(
      () => process.exit(0),
      (err) => {
        console.error("edgecache: close failed:", err);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  if (envVar("npm_lifecycle_event") !== undefined) {
    const parent = process.ppid;
    const poll = setInterval(() => {
      if (process.ppid === parent) return;
      clearInterval(poll);
      stop("parent process exited");
    }, PARENT_POLL_MS);
    poll.unref();
  }
}

const main = defineCommand({
  meta: { name: "edgecache", description: "A cache for database-backed APIs" },
  subCommands: {
    serve,
    proxy,
    invalidate,
    keys,
    stats,
    warm,
    purge,
    rules,
    init,
    capture,
    explain,
    tenants,
  },
});

runCli(main);
