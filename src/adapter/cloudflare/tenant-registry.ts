import { hostName } from "../../app/access.ts";
import { EdgecacheError } from "../../core/errors.ts";
import { renewAfterMs, WORKER_TENANTS_LEASE } from "../../core/time/lease.ts";
import type { DurableObjectNamespaceLike } from "../../durable/rpc.ts";
import { keyedOf, keyHashOf, type Tenant, type TenantAccess } from "../tenants/model.ts";
import type { Background } from "./background.ts";
import { callTenants, type TenantTable } from "./tenants-object.ts";

const C = "tenants";

/**
 * This isolate's copy of the tenant table. It is trusted for `leaseMs` after the request
 * that fetched it was sent; from half the lease a request refetches it in the background,
 * and past the lease a request waits for a fresh copy (503 if the registry cannot be
 * reached: a key may have been rotated meanwhile).
 */
export class TenantRegistry {
  readonly #namespace: DurableObjectNamespaceLike;
  readonly #leaseMs: number;
  readonly #background: Background;
  readonly #onChange: (tenants: Map<string, Tenant>) => void;
  #version = -1;
  #heardAt = Number.NEGATIVE_INFINITY;
  #byHash = new Map<string, TenantAccess>();
  #byHost = new Map<string, Tenant>();
  /**
   * Tenants' keys seen, to skip hashing on every request; emptied whenever the table
   * changes. Only keys that name a tenant: wrong keys, which anyone may send, are hashed
   * each time rather than filling the isolate's memory.
   */
  #byKey = new Map<string, TenantAccess>();
  #refreshing: Promise<void> | undefined;

  constructor(
    namespace: DurableObjectNamespaceLike,
    leaseMs: number,
    background: Background,
    onChange: (tenants: Map<string, Tenant>) => void,
  ) {
    this.#namespace = namespace;
    this.#leaseMs = leaseMs;
    this.#background = background;
    this.#onChange = onChange;
  }

  /**
   * Who is asking: the key's tenant and scope (`key`, as requestKey finds it), or without one
   * a public read by host; a wrong key is no one.
   */
  async accessOf(key: string | undefined, host: string): Promise<TenantAccess | undefined> {
    await this.#current();
    if (key === undefined) {
      const tenant = this.#byHost.get(hostName(host));
      return tenant && { tenant, scope: "read", anonymous: true };
    }
    const known = this.#byKey.get(key);
    if (known) return known;
    const version = this.#version;
    const access = this.#byHash.get(await keyHashOf(key));
    // A refetch while it hashed may have changed the table: then this answer is not kept.
    if (access && version === this.#version) this.#byKey.set(key, access);
    return access;
  }

  /**
   * Whether this isolate holds a table it may trust, fetching one if not: without it every
   * request but health gets 503 (the health check of a Worker of tenants).
   */
  async heard(): Promise<boolean> {
    try {
      await this.#current();
      return true;
    } catch {
      return false;
    }
  }

  async #current(): Promise<void> {
    const age = Date.now() - this.#heardAt;
    if (age >= this.#leaseMs) {
      try {
        await this.#refresh();
      } catch (error) {
        throw new EdgecacheError(
          "E_STORE_UNAVAILABLE",
          C,
          "the tenant registry (TENANTS) cannot be reached; requests are refused until it is",
          { cause: error },
        );
      }
    } else if (age >= renewAfterMs(WORKER_TENANTS_LEASE, this.#leaseMs)) {
      this.#background.add(this.#refresh());
    }
  }

  #refresh(): Promise<void> {
    this.#refreshing ??= (async () => {
      const started = Date.now();
      try {
        const table = await callTenants<TenantTable>(this.#namespace, "list");
        if (table.version !== this.#version) this.#apply(table);
        this.#heardAt = Math.max(this.#heardAt, started);
      } finally {
        this.#refreshing = undefined;
      }
    })();
    return this.#refreshing;
  }

  #apply(table: TenantTable): void {
    const keyed = keyedOf(table.rows);
    this.#byHash = new Map(keyed.map(({ hash, scope, tenant }) => [hash, { tenant, scope }]));
    this.#byHost = new Map(
      keyed.flatMap(({ tenant }) => (tenant.publicHost ? [[tenant.publicHost, tenant]] : [])),
    );
    this.#byKey = new Map();
    this.#version = table.version;
    this.#onChange(new Map(keyed.map(({ tenant }) => [tenant.name, tenant])));
  }
}
