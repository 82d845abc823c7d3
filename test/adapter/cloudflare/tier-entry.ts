// Bundled by test/adapter/cloudflare/durable-tier-in-workerd.test.ts: one isolate of a Worker whose cache
// is made as edgecacheWorker makes it (edgeCache: memory, the Durable Object tier, the Cache
// API, on the Durable Object change log), and the tier's class with a precompute every
// MIN_PRECOMPUTE_MS. Each request syncs with the log first, as every Worker request does.

import { Background } from "../../../src/adapter/cloudflare/background.ts";
import {
  cacheTierObject,
  MIN_PRECOMPUTE_MS,
  precomputeStats,
} from "../../../src/adapter/cloudflare/cache-tier-object.ts";
import { workerLogger } from "../../../src/adapter/cloudflare/logger.ts";
import { workerSettings } from "../../../src/adapter/cloudflare/variables.ts";
import { edgeCache, type LogEnv } from "../../../src/adapter/cloudflare/worker.ts";
import { Cache } from "../../../src/core/cache/index.ts";
import { DurableChangeLog } from "../../../src/log/durable-object.ts";
import { memoryStore } from "../../../src/stores/memory.ts";

export { ChangeLogObject } from "../../../src/adapter/cloudflare/change-log-object.ts";

/** Runs of the precompute in this object's isolate: the value every isolate should read. */
let runs = 0;

export const CacheTierObject = cacheTierObject({
  precompute: {
    every: MIN_PRECOMPUTE_MS,
    run: async (cache, env) => {
      if ((env as { FAIL_PRECOMPUTE?: string }).FAIL_PRECOMPUTE) {
        throw new Error("the precompute failed on purpose");
      }
      runs++;
      await cache.set("totals", { run: runs }, { ttl: 60_000 });
    },
  },
});

type Env = LogEnv & { CACHE_TIER: NonNullable<LogEnv["CACHE_TIER"]>; NAME: string };

const background = new Background();
let made: ReturnType<typeof edgeCache> | undefined;
/** A second cache on the same log with memory alone: its writes never reach the tier. */
let bare: { cache: Cache; log: DurableChangeLog } | undefined;
/** What this isolate's loads return: a new number each time. */
let loads = 0;

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const key = url.searchParams.get("key") ?? "";
    if (url.pathname === "/precompute") return Response.json(await precomputeStats(env.CACHE_TIER));
    made ??= edgeCache(env, workerSettings(env, {}), {}, background, workerLogger("warn"));
    const { cache, log } = made;
    await log.sync();
    let body: unknown;
    if (url.pathname === "/get") {
      body = { value: (await cache.get(key)) ?? null };
    } else if (url.pathname === "/load") {
      body = { value: await cache.getOrSet(key, () => ({ load: ++loads, by: env.NAME })) };
    } else if (url.pathname === "/set-around") {
      const log = new DurableChangeLog({ namespace: env.CHANGE_LOG });
      bare ??= { cache: new Cache({ tiers: [memoryStore()], log }), log };
      await bare.log.sync();
      await bare.cache.set(key, { around: true });
      body = { ok: true };
    } else if (url.pathname === "/stats") {
      body = cache.stats();
    } else return new Response("no such path", { status: 404 });
    // The background work (copies into the tier) is done before the answer, so the test's
    // next request, to any isolate, finds it.
    await background.idle();
    return Response.json(body);
  },
};
