// Bundled by test/adapter/cloudflare/proxy-in-workerd.test.ts: the proxy Worker in front of the origin
// the test runs (its URL in ORIGIN).
import { edgecacheProxyWorker } from "../../../src/adapter/cloudflare/proxy-worker.ts";
import type { ExecutionContextLike, LogEnv } from "../../../src/adapter/cloudflare/worker.ts";

export { ChangeLogObject } from "../../../src/adapter/cloudflare/change-log-object.ts";

type Env = LogEnv & { ORIGIN: string };
let worker: ReturnType<typeof edgecacheProxyWorker<Env>> | undefined;

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContextLike) {
    worker ??= edgecacheProxyWorker<Env>({ origins: [{ origin: env.ORIGIN }] });
    return worker.fetch(request, env, ctx);
  },
};
