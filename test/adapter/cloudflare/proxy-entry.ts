// Bundled by test/adapter/cloudflare/proxy-in-workerd.test.ts: the proxy Worker in front of the origin
// the test runs (its URL in ORIGIN), with the route's clientDirectives from CLIENT_DIRECTIVES.
import { edgecacheProxyWorker } from "../../../src/adapter/cloudflare/proxy-worker.ts";
import type { ExecutionContextLike, LogEnv } from "../../../src/adapter/cloudflare/worker.ts";
import type { ClientDirectives } from "../../../src/app/proxy/index.ts";

export { ChangeLogObject } from "../../../src/adapter/cloudflare/change-log-object.ts";

type Env = LogEnv & { ORIGIN: string; CLIENT_DIRECTIVES?: ClientDirectives };
let worker: ReturnType<typeof edgecacheProxyWorker<Env>> | undefined;

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContextLike) {
    const clientDirectives = env.CLIENT_DIRECTIVES;
    worker ??= edgecacheProxyWorker<Env>({
      origins: [{ origin: env.ORIGIN, ...(clientDirectives && { clientDirectives }) }],
    });
    return worker.fetch(request, env, ctx);
  },
};
