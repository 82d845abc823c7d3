import type { ManifestView } from "../../../app/admin.ts";
import {
  keepManifest,
  type ManifestKeeper,
  type ManifestKeeperOptions,
  type ManifestSummary,
  summarize,
  type UrlReport,
} from "../../../app/proxy/manifest/keeper.ts";
import { rateLimited, type Warner } from "../../../core/report.ts";
import { REDIS_LOG_LEASE, renewAfterMs, trustedUntil } from "../../../core/time/lease.ts";
import type { RedisClient } from "../../../redis/connect.ts";

// KEYS[1]: the keeper's lease; ARGV[1]: the node, ARGV[2]: the lease, ms. Taken when free,
// renewed when this node's: 1; held by another node: 0.
const HOLD = `
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`;

// KEYS[1]: the lease; ARGV[1]: the node. Given back only by its holder.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`;

// KEYS[1]: the lease, KEYS[2]: the URLs' states; ARGV[1]: the node, ARGV[2]: 'set' (then url,
// state pairs) or 'drop' (then urls). Only the lease's holder writes: a node that lost it
// while a fetch was in flight cannot overwrite what the new keeper saved.
const SAVE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'set' then
  for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
else
  for i = 3, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
end
return 1`;

/**
 * How long the URLs' states read from Redis serve `/_edgecache/manifest`, `/stats` and
 * metrics scrapes, ms: one HGETALL (and its parse: 10,000 URLs is megabytes of JSON) per
 * second at most, however often they are asked, and never more than one in flight. The
 * keeper reads them too, so that every node shows the same state, at most this much behind.
 */
export const MANIFEST_VIEW_MS = 1000;

export interface SharedManifestOptions extends Omit<ManifestKeeperOptions, "initial" | "settled"> {
  /** The cluster's client and the deployment's key prefix. */
  client: RedisClient;
  prefix: string;
  /** This node's name (the change log's): shown as the keeper's. */
  node: string;
  /** The change log's lease, ms: the keeper's lasts as long and is renewed as often. */
  leaseMs: number;
  logger?: Warner;
  /** Hears this node become the manifest's keeper (true) or stop being it (false). */
  onKeeper?(keeping: boolean): void;
}

/** The manifest of nodes sharing Redis, as one node sees it. */
export interface SharedManifest extends ManifestKeeper {
  /** What `/_edgecache/manifest` shows: the state in Redis, the same on every node. */
  view: ManifestView & { keeper(): Promise<string | null> };
  /** Whether this node keeps the manifest now. */
  keeping(): boolean;
}

/**
 * One manifest keeper for the nodes that share Redis: the node holding a lease in Redis
 * (as long as the change log's, renewed as often) fetches the URLs; the others fetch none
 * and serve what it stored from the shared tier. The keeper saves each URL's state in
 * Redis as its fetch ends, so every node shows the same state, and a node that takes over
 * (the keeper stopped, or lost Redis past its lease) starts from it: it fetches what is
 * due, not the whole list again. A keeper that cannot renew stops fetching once its lease
 * may have lapsed (less the log's clock margin), so two nodes never both keep it for long.
 */
export function sharedManifest(options: SharedManifestOptions): SharedManifest {
  const { client, prefix, node, leaseMs, urls } = options;
  // One hash tag: the scripts touch both keys, which must share a slot on a Redis Cluster.
  const leaseKey = `${prefix}{manifest}:keeper`;
  const statesKey = `${prefix}{manifest}:urls`;
  const report = rateLimited(options.logger ?? console, () => performance.now());
  const every = renewAfterMs(REDIS_LOG_LEASE, leaseMs);
  let keeper: ManifestKeeper | undefined;
  /** performance.now() until which this node trusts its lease. */
  let until = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let ticking: Promise<void> = Promise.resolve();
  let started = false;
  let closed = false;

  const states = async (): Promise<Map<string, UrlReport>> => {
    const all = (await client.hgetall(statesKey)) as Record<string, string>;
    const out = new Map<string, UrlReport>();
    for (const [url, json] of Object.entries(all)) {
      try {
        out.set(url, JSON.parse(json) as UrlReport);
      } catch {
        // A field this code did not write: the URL is pending.
      }
    }
    return out;
  };

  const save = async (slot: UrlReport) => {
    try {
      await client.eval(SAVE, 2, leaseKey, statesKey, node, "set", slot.url, JSON.stringify(slot));
    } catch (err) {
      report("save", `[edgecache] [manifest] a URL's state not saved in Redis: ${String(err)}`);
    }
  };

  const take = async () => {
    const saved = await states();
    const listed = new Set(urls);
    const gone = [...saved.keys()].filter((u) => !listed.has(u));
    // URLs a former manifest listed: dropped, so every node shows this list.
    if (gone.length > 0) await client.eval(SAVE, 2, leaseKey, statesKey, node, "drop", ...gone);
    keeper = keepManifest({ ...options, initial: saved, settled: save });
    keeper.start();
    options.onKeeper?.(true);
  };

  const drop = async () => {
    const held = keeper;
    keeper = undefined;
    if (!held) return;
    await held.stop();
    options.onKeeper?.(false);
  };

  const tick = async () => {
    const sent = performance.now();
    let held: boolean | undefined;
    try {
      held = (await client.eval(HOLD, 1, leaseKey, node, String(leaseMs))) === 1;
    } catch (err) {
      report("lease", `[edgecache] [manifest] keeper's lease not renewed: ${String(err)}`);
    }
    if (closed) return;
    if (held) {
      until = trustedUntil(REDIS_LOG_LEASE, sent, leaseMs);
      if (!keeper) {
        try {
          await take();
        } catch (err) {
          report("take", `[edgecache] [manifest] cannot take the manifest over: ${String(err)}`);
        }
      }
    } else if (keeper && (held === false || performance.now() >= until)) {
      await drop();
    }
  };

  const loop = () => {
    ticking = tick().finally(() => {
      if (!closed) {
        timer = setTimeout(loop, every);
        timer.unref?.();
      }
    });
  };

  const local = (): UrlReport[] =>
    keeper?.report() ?? urls.map((url) => ({ url, state: "pending" as const }));
  let viewed: { at: number; states: Promise<Map<string, UrlReport>> } | undefined;
  const shared = async (): Promise<UrlReport[]> => {
    const at = performance.now();
    if (!viewed || at - viewed.at >= MANIFEST_VIEW_MS) {
      const read = states();
      viewed = { at, states: read };
      // A failed read is not kept: the next request asks Redis again.
      read.catch(() => {
        if (viewed?.states === read) viewed = undefined;
      });
    }
    const saved = await viewed.states;
    return urls.map((url) => saved.get(url) ?? { url, state: "pending" as const });
  };

  return {
    start() {
      if (started || closed) return;
      started = true;
      loop();
    },
    async stop() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      await ticking;
      const held = keeper !== undefined;
      await drop();
      // Given back, so another node takes over at once rather than when the lease lapses.
      if (held) await client.eval(RELEASE, 1, leaseKey, node).catch(() => {});
    },
    summary: (): ManifestSummary => summarize(local()),
    report: local,
    keeping: () => keeper !== undefined,
    view: {
      summary: async () => summarize(await shared()),
      report: shared,
      keeper: async () => (await client.get(leaseKey)) ?? null,
    },
  };
}
