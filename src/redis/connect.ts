import type { Cluster, Redis } from "ioredis";
import { badOption, importPeer } from "../core/errors.ts";

/**
 * The ioredis client edgecache makes or is given, shared by the Redis store, the Redis change
 * log, the Node cluster and tenants: it lives beneath them, so the log imports no store.
 */

/** An ioredis client: one server, or a Redis Cluster. */
export type RedisClient = Redis | Cluster;

export interface RedisConnectOptions {
  /** `redis://` or `rediss://` URL: a client is created for it, and closed by its owner. */
  url?: string;
  /** An existing ioredis `Redis` or `Cluster`, shared with the rest of the app; never closed here. */
  client?: RedisClient;
  /** `url` names one node of a Redis Cluster: the client discovers the others. */
  cluster?: boolean;
  /** Milliseconds a command may take before it fails. Default 500. */
  commandTimeout?: number;
}

export interface RedisConnection {
  client: RedisClient;
  /** True when the client was created from `url`: whoever holds it closes it. */
  owned: boolean;
  commandTimeout: number;
}

/**
 * A stopped (SIGSTOP) or unreachable Redis must make a tier read fail fast, so the cache
 * falls through to the next tier or the source instead of hanging a request; 500 ms is
 * hundreds of times a normal round trip, yet short enough for a request to absorb.
 */
export const DEFAULT_COMMAND_TIMEOUT_MS = 500;
/** Reconnects back off exponentially from this delay... */
const RECONNECT_MIN_MS = 50;
/** ...up to this one, and never give up: Redis coming back brings the tier back. */
const RECONNECT_MAX_MS = 2000;

/** Checks the connection options in "expected X, got Y" form; returns the command timeout. */
function checkRedisOptions(component: string, options: RedisConnectOptions): number {
  const { url, client, commandTimeout = DEFAULT_COMMAND_TIMEOUT_MS } = options;
  if (url !== undefined && client !== undefined) {
    badOption(component, "url", "either url or client, not both", url);
  }
  if (client !== undefined) {
    // Duck-typed: the app's ioredis may be another copy than ours, so instanceof can fail.
    const c = client as Partial<Record<"getBuffer" | "unlink" | "scan", unknown>> | null;
    if (typeof c?.getBuffer !== "function" || typeof c.unlink !== "function") {
      badOption(component, "client", "an ioredis Redis or Cluster instance", client);
    }
  } else if (!isRedisUrl(url)) {
    badOption(component, "url", "a redis:// or rediss:// URL (or a client)", url);
  }
  if (!(Number.isFinite(commandTimeout) && commandTimeout > 0)) {
    badOption(component, "commandTimeout", "a positive number of ms", commandTimeout);
  }
  return commandTimeout;
}

/**
 * The client to use: `options.client` as is, or a new one for `options.url` that fails
 * fast while Redis is away and reconnects in the background. ioredis is an optional peer
 * dependency, loaded here on first use. Does not wait for the connection: a Redis that is
 * down at start makes the tier fail, not the app.
 *
 * @example
 * ```ts
 * const { client, owned } = await connectRedis("redis", { url: "redis://127.0.0.1:6379" });
 * ```
 */
export async function connectRedis(
  component: string,
  options: RedisConnectOptions,
): Promise<RedisConnection> {
  const commandTimeout = checkRedisOptions(component, options);
  if (options.client !== undefined) {
    return { client: options.client, owned: false, commandTimeout };
  }
  const { Redis, Cluster } = await importIoredis(component);
  const backoff = (times: number) => Math.min(RECONNECT_MIN_MS * 2 ** times, RECONNECT_MAX_MS);
  const settings = {
    commandTimeout,
    // A command caught by a dropped connection fails rather than being resent later: a
    // cache write replayed after a reconnect could bring back what was deleted meanwhile.
    maxRetriesPerRequest: 0,
    retryStrategy: backoff,
  };
  let client: RedisClient;
  if (options.cluster) {
    const url = new URL(options.url!);
    client = new Cluster([{ host: url.hostname, port: Number(url.port || 6379) }], {
      enableAutoPipelining: true,
      clusterRetryStrategy: backoff,
      redisOptions: {
        ...settings,
        username: decodeURIComponent(url.username) || undefined,
        password: decodeURIComponent(url.password) || undefined,
        tls: url.protocol === "rediss:" ? {} : undefined,
      },
    });
  } else {
    client = new Redis(options.url!, { ...settings, enableAutoPipelining: true });
  }
  // Connection faults surface as failed commands, which the engine counts and logs; an
  // 'error' event with no listener would be printed (or thrown) by the EventEmitter.
  client.on("error", () => {});
  // Commands sent before the first connection wait for it (the app has just started);
  // after that, one sent while disconnected fails at once instead of queueing.
  client.once("ready", () => {
    client.options.enableOfflineQueue = false;
  });
  return { client, owned: true, commandTimeout };
}

async function importIoredis(
  component: string,
): Promise<{ Redis: typeof Redis; Cluster: typeof Cluster }> {
  return importPeer(
    () => import("ioredis"),
    component,
    "install ioredis to use the Redis store: npm install ioredis",
  );
}

function isRedisUrl(url: unknown): url is string {
  if (typeof url !== "string") return false;
  try {
    const { protocol } = new URL(url);
    return protocol === "redis:" || protocol === "rediss:";
  } catch {
    return false;
  }
}

/** Another connection like `client` (for blocking reads or a subscription), errors muted. */
export function duplicateClient(
  client: RedisClient,
  commandTimeout: number | undefined,
): RedisClient {
  const copy: RedisClient =
    "isCluster" in client && client.isCluster
      ? (client as Cluster).duplicate(undefined, { redisOptions: { commandTimeout } })
      : (client as Redis).duplicate({ commandTimeout });
  copy.on("error", () => {}); // faults surface as failed commands, reported by the caller
  return copy;
}

/**
 * ioredis' auto-pipelining (on for the clients edgecache makes) keeps one batch in flight
 * per connection: a command issued meanwhile waits for that batch's whole round trip, which
 * across a far link doubles its own. `commands` go out at once instead (still in order on
 * the connection), whatever else is in flight on the client.
 */
export function sentAtOnce(client: RedisClient, commands: readonly string[]): void {
  const options = client.options as { autoPipeliningIgnoredCommands?: string[] };
  const ignored = options.autoPipeliningIgnoredCommands ?? [];
  options.autoPipeliningIgnoredCommands = [...new Set([...ignored, ...commands])];
}
