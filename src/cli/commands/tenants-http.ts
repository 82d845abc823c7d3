import type { TenantState } from "../../adapter/node/tenants/state-contract.ts";
import type { Created, KeyScope, Tenant } from "../../adapter/tenants/model.ts";
import { nodeClient } from "./node-client.ts";

/**
 * The tenants of a Worker (`edgecacheTenantsWorker`), through its operator API under
 * `/_edgecache/tenants` with the Worker's EDGECACHE_ADMIN_TOKEN. The Worker answers a
 * change only once every isolate has refetched its tenant table or stopped trusting it, so
 * there is nothing left to wait for here (`settle`).
 */
export function httpTenantState(args: { url: string; token?: string }): TenantState {
  const client = nodeClient(args);
  const path = (name: string) => `/tenants/${encodeURIComponent(name)}`;
  return {
    where: client.url,
    async create(tenant) {
      const {
        key,
        readKey,
        settledMs: _,
        ...created
      } = await client.admin<
        Omit<Tenant, "readKey"> & { key: string; readKey?: string; settledMs: number }
      >("POST", "/tenants", tenant);
      const made: Tenant = { ...created, ...(readKey && { readKey: true }) };
      return { tenant: made, key, ...(readKey && { readKey }) } satisfies Created;
    },
    async list() {
      return (await client.admin<{ tenants: Tenant[] }>("GET", "/tenants")).tenants;
    },
    async rotateKey(name, scope: KeyScope = "write") {
      return (await client.admin<{ key: string }>("POST", `${path(name)}/rotate-key`, { scope }))
        .key;
    },
    async delete(name) {
      await client.admin("DELETE", path(name));
    },
    settle: async () => undefined,
    follow() {
      throw new Error("[edgecache] [tenants] a Worker's tenants are followed by the Worker itself");
    },
    close: async () => {},
  };
}
