// Bundled by the Worker tests (test/worker/edgecache-workers.ts): the Worker entry as a user
// builds it, over the demo seeded small into the test's local D1, with the options the test
// passes as JSON in OPTIONS. With DISTANCE (JSON, see distance.ts) its bindings are at that
// distance, and with DB_REPLICA that database plays a D1 replica lagging behind DB.
import {
  type EdgecacheEnv,
  type EdgecacheWorker,
  type ExecutionContextLike,
  edgecacheWorker,
} from "../../src/adapter/cloudflare/worker.ts";
import { demoViews } from "../../src/demo/seed.ts";
import { seedD1Demo } from "../../src/demo/seed-d1.ts";
import type { D1DatabaseLike } from "../../src/sources/d1.ts";
import { atDistance, calls, link, NO_DISTANCE, ReplicatedD1 } from "./distance.ts";

export { ChangeLogObject } from "../../src/adapter/cloudflare/change-log-object.ts";

type Env = EdgecacheEnv & {
  DEMO_USERS: string;
  DEMO_ORDERS: string;
  OPTIONS: string;
  DISTANCE?: string;
  DB_REPLICA?: D1DatabaseLike;
  REPLICA_LAG_MS?: string;
  IGNORE_BOOKMARKS?: string;
};

let worker: EdgecacheWorker<Env> | undefined;
let far: Env | undefined;

function workerFor(env: Env): EdgecacheWorker<Env> {
  worker ??= edgecacheWorker<Env>({
    views: demoViews,
    prepare: async (env) => {
      await seedD1Demo(env.DB, { users: Number(env.DEMO_USERS), orders: Number(env.DEMO_ORDERS) });
      // The schema and the seed are old news to a replica; what the test writes is not.
      if (env.DB instanceof ReplicatedD1) await env.DB.catchUp();
    },
    ...JSON.parse(env.OPTIONS),
  });
  return worker;
}

/** The bindings as this isolate sees them: at its distance, when the test set one. */
function envOf(env: Env): Env {
  if (!env.DISTANCE && !env.DB_REPLICA) return env;
  far ??= atDistance(
    env,
    { ...NO_DISTANCE, ...JSON.parse(env.DISTANCE ?? "{}") },
    {
      replica: env.DB_REPLICA,
      lagMs: env.REPLICA_LAG_MS ? Number(env.REPLICA_LAG_MS) : undefined,
      ignoreBookmarks: env.IGNORE_BOOKMARKS === "true",
    },
  );
  return far;
}

export default {
  fetch: (request: Request, env: Env, ctx: ExecutionContextLike) => {
    const path = new URL(request.url).pathname;
    // What this isolate's bindings were asked (benchmarks: calls per request).
    if (path === "/_distance/calls") return Response.json(calls);
    // Cuts or mends this isolate's link to the Durable Object (a partition).
    if (path === "/_distance/cut" || path === "/_distance/mend") {
      link.object = path === "/_distance/mend";
      return Response.json(link);
    }
    return workerFor(env).fetch(request, envOf(env), ctx);
  },
  scheduled: (controller: unknown, env: Env, ctx: ExecutionContextLike) =>
    workerFor(env).scheduled(controller, envOf(env), ctx),
};
