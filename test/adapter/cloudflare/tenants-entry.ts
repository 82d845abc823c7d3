// Bundled by test/adapter/cloudflare/tenants-in-workerd.test.ts: a Worker of tenants as a user writes
// one, with the lease its variable names (the test shortens nothing else).

import {
  ChangeLogObject,
  type ExecutionContextLike,
  edgecacheTenantsWorker,
  type TenantsEnv,
  TenantsObject,
} from "../../../src/cloudflare.ts";

export { ChangeLogObject, TenantsObject };

type Env = TenantsEnv & { TENANTS_LEASE_MS: string };

let worker: ReturnType<typeof edgecacheTenantsWorker<Env>> | undefined;

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContextLike): Promise<Response> {
    worker ??= edgecacheTenantsWorker<Env>({ tenantsLeaseMs: Number(env.TENANTS_LEASE_MS) });
    return worker.fetch(request, env, ctx);
  },
};
