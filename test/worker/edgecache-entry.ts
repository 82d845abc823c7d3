// Bundled by the Worker tests (test/worker/edgecache-workers.ts): the Worker entry as a user
// builds it, over the demo seeded small into the test's local D1, with the options the test
// passes as JSON in OPTIONS.
import {
  type EdgecacheEnv,
  type EdgecacheWorker,
  type ExecutionContextLike,
  edgecacheWorker,
} from "../../src/adapter/cloudflare/worker.ts";
import { demoViews } from "../../src/demo/seed.ts";
import { seedD1Demo } from "../../src/demo/seed-d1.ts";

export { ChangeLogObject } from "../../src/adapter/cloudflare/change-log-object.ts";

type Env = EdgecacheEnv & { DEMO_USERS: string; DEMO_ORDERS: string; OPTIONS: string };

let worker: EdgecacheWorker<Env> | undefined;

function workerFor(env: Env): EdgecacheWorker<Env> {
  worker ??= edgecacheWorker<Env>({
    views: demoViews,
    prepare: (env) =>
      seedD1Demo(env.DB, { users: Number(env.DEMO_USERS), orders: Number(env.DEMO_ORDERS) }),
    ...JSON.parse(env.OPTIONS),
  });
  return worker;
}

export default {
  fetch: (request: Request, env: Env, ctx: ExecutionContextLike) =>
    workerFor(env).fetch(request, env, ctx),
  scheduled: (controller: unknown, env: Env, ctx: ExecutionContextLike) =>
    workerFor(env).scheduled(controller, env, ctx),
};
