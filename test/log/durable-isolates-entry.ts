// Bundled by test/log/durable-isolates.test.ts: each Worker is its own isolate
// with its own memory tier, all following one Durable Object change log.

import { ChangeLogObject } from "../../src/adapter/cloudflare/change-log-object.ts";
import { createCache } from "../../src/core/cache/index.ts";
import { planSchemaOf, rowTag } from "../../src/core/deps/planner.ts";
import type { DurableObjectNamespaceLike } from "../../src/durable/rpc.ts";
import { DurableChangeLog } from "../../src/log/durable-object.ts";
import type { KvNamespaceLike } from "../../src/stores/kv.ts";
import { kvStore } from "../../src/stores/kv.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { answeringErrors } from "../helpers/entry-errors.ts";

export { ChangeLogObject };

type Env = {
  LOG: DurableObjectNamespaceLike;
  MODE: "strict" | "lease";
  LEASE_MS: string;
  /** When bound, KV is a second tier shared by every isolate. */
  CACHE?: KvNamespaceLike;
  /** The log's object name; default the mode. */
  LOG_NAME?: string;
};

let isolate: { log: DurableChangeLog; cache: ReturnType<typeof createCache> } | undefined;

function setUp(env: Env) {
  if (isolate) return isolate;
  const log = new DurableChangeLog({
    namespace: env.LOG,
    name: env.LOG_NAME ?? env.MODE,
    mode: env.MODE,
    leaseMs: Number(env.LEASE_MS),
  });
  const memory = memoryStore({ maxBytes: 1_000_000 });
  const tiers = env.CACHE ? [memory, kvStore({ namespace: env.CACHE })] : [memory];
  const cache = createCache({ tiers, log });
  cache.setSchema(
    planSchemaOf({
      tables: new Map([["users", { name: "users", primaryKey: "id", columns: [] }]]),
      views: new Map(),
    }),
  );
  isolate = { log, cache };
  return isolate;
}

export default answeringErrors<Env>(route);

async function route(request: Request, env: Env): Promise<Response> {
  const { log, cache } = setUp(env);
  const url = new URL(request.url);
  const id = url.searchParams.get("id") ?? "1";
  const started = Date.now();
  await log.sync();
  switch (url.pathname) {
    case "/read": {
      // What this isolate serves for user `id`: its memory, or `name` as loaded now.
      const name = url.searchParams.get("name") ?? "";
      let loaded = false;
      const value = await cache.getOrSet(
        `user:${id}`,
        async () => {
          loaded = true;
          return { id, name };
        },
        { tags: [rowTag("users", id)] },
      );
      return Response.json({ value, loaded, trusted: log.trusted() });
    }
    case "/write": {
      const seq = await cache.applyWrite({
        table: "users",
        op: "update",
        old: { id, name: url.searchParams.get("old") },
        new: { id, name: url.searchParams.get("name") },
      });
      return Response.json({ keys: seq.keys, ms: Date.now() - started });
    }
    case "/position":
      return Response.json(cache.position);
    default:
      return new Response("no route", { status: 404 });
  }
}
