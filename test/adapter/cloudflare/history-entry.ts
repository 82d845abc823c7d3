// Bundled by test/adapter/cloudflare/history-in-workerd.test.ts: each Worker is an isolate of its own
// whose cache starts on its first request, as a new isolate's does. Two caches: the
// Worker's (edgeCache: memory, the Durable Object tier, the Cache API, KV, on the Durable
// Object change log) and a library user's (createCache over memory and KV with
// durableChangeLog, on a log of its own name).

import { Background } from "../../../src/adapter/cloudflare/background.ts";
import { cacheTierObject } from "../../../src/adapter/cloudflare/cache-tier-object.ts";
import { workerLogger } from "../../../src/adapter/cloudflare/logger.ts";
import { workerSettings } from "../../../src/adapter/cloudflare/variables.ts";
import { edgeCache, type LogEnv } from "../../../src/adapter/cloudflare/worker.ts";
import { type Cache, createCache } from "../../../src/core/cache/index.ts";
import { planSchemaOf, rowTag } from "../../../src/core/deps/planner.ts";
import { type DurableChangeLog, durableChangeLog } from "../../../src/log/durable-object.ts";
import { type KvNamespaceLike, kvStore } from "../../../src/stores/kv.ts";
import { memoryStore } from "../../../src/stores/memory.ts";
import { answeringErrors } from "../../helpers/entry-errors.ts";

export { ChangeLogObject } from "../../../src/adapter/cloudflare/change-log-object.ts";
export const CacheTierObject = cacheTierObject();

type Env = LogEnv & {
  NAME: string;
  CACHE_TIER: NonNullable<LogEnv["CACHE_TIER"]>;
  CACHE: KvNamespaceLike;
};

const background = new Background();
let worker: { cache: Cache; log: DurableChangeLog } | undefined;
let library: { cache: Cache; log: DurableChangeLog } | undefined;
/** What this isolate's loads return: a new number each time. */
let loads = 0;

const schema = planSchemaOf({
  tables: new Map([["users", { name: "users", primaryKey: "id", columns: [] }]]),
  views: new Map(),
});

export default answeringErrors<Env>(route);

async function route(request: Request, env: Env): Promise<Response> {
  const url = new URL(request.url);
  const key = url.searchParams.get("key") ?? "";
  const id = url.searchParams.get("id") ?? "";
  if (url.pathname.startsWith("/lib/")) {
    if (!library) {
      const log = durableChangeLog({ namespace: env.CHANGE_LOG, name: "library" });
      const tiers = [memoryStore(), kvStore({ namespace: env.CACHE, prefix: "library:" })];
      library = { cache: createCache({ tiers, log }), log };
    }
    await library.log.sync();
    let body: unknown;
    if (url.pathname === "/lib/set") {
      await library.cache.set(key, { key, by: env.NAME });
      body = { ok: true };
    } else if (url.pathname === "/lib/get") {
      body = { value: (await library.cache.get(key)) ?? null };
    } else if (url.pathname === "/lib/stats") {
      body = library.cache.stats();
    } else return new Response("no such path", { status: 404 });
    await background.idle();
    return Response.json(body);
  }
  if (!worker) {
    worker = edgeCache(env, workerSettings(env, {}), {}, background, workerLogger("warn"));
    worker.cache.setSchema(schema);
  }
  const { cache, log } = worker;
  await log.sync();
  let body: unknown;
  if (url.pathname === "/load") {
    // A user's row, tagged as the data API tags one.
    const value = await cache.getOrSet(key, () => ({ id, load: ++loads, by: env.NAME }), {
      tags: [rowTag("users", id)],
    });
    body = { value };
  } else if (url.pathname === "/write") {
    await cache.applyWrite({
      table: "users",
      op: "update",
      old: { id, name: "old" },
      new: { id, name: url.searchParams.get("name") ?? "new" },
    });
    body = { ok: true };
  } else if (url.pathname === "/purge") {
    body = { invalidated: await cache.invalidate({ prefix: url.searchParams.get("prefix")! }) };
  } else if (url.pathname === "/stats") {
    body = cache.stats();
  } else return new Response("no such path", { status: 404 });
  // Copies into the shared tiers are made before the answer, so the next isolate finds them.
  await background.idle();
  return Response.json(body);
}
