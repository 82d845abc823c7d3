// Bundled by test/adapter/cloudflare/learned-rules-in-workerd.test.ts: the proxy Worker with learning,
// in front of the origin the test runs (its URL in ORIGIN).
import { edgecacheProxyWorker } from "../../../src/adapter/cloudflare/proxy-worker.ts";
import type { ExecutionContextLike, LogEnv } from "../../../src/adapter/cloudflare/worker.ts";

export { ChangeLogObject } from "../../../src/adapter/cloudflare/change-log-object.ts";

type Env = LogEnv & { ORIGIN: string };
let worker: ReturnType<typeof edgecacheProxyWorker<Env>> | undefined;

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContextLike) {
    worker ??= edgecacheProxyWorker<Env>({
      origins: [{ origin: env.ORIGIN }],
      // Two tests make a rule act; every cached read of a write's route is a sample.
      learn: { minTests: 2, perWrite: 30, audit: 0 },
    });
    return worker.fetch(request, env, ctx);
  },
};
