import { Hono } from "hono";
import { bearerToken, constantTimeEqual, isHostName } from "../../app/access.ts";
import { fields, isJsonObject, readBody, type Schema } from "../../app/body.ts";
import { createDataApi } from "../../app/data-api.ts";
import { edgecacheApp, openAdminRoutes } from "../../app/edgecache-app.ts";
import { jsonOnly, limitBody, onError } from "../../app/errors.ts";
import { sourceCheck } from "../../app/health.ts";
import { isAdminPath, validUrl } from "../../app/request-target.ts";
import {
  badOption,
  checkOptionNames,
  EdgecacheError,
  type OptionNames,
} from "../../core/errors.ts";
import type { LogLevel } from "../../core/logging-levels.ts";
import { randomId } from "../../core/random-id.ts";
import { WORKER_TENANTS_LEASE } from "../../core/time/lease.ts";
import type { DurableObjectNamespaceLike } from "../../durable/rpc.ts";
import type { DurableChangeLog } from "../../log/durable-object.ts";
import { type D1DatabaseLike, d1Source } from "../../sources/d1.ts";
import {
  allowed,
  fromRow,
  identity,
  type KeyScope,
  keyedOf,
  keyHashOf,
  newKey,
  newTenantKeys,
  type Row,
  requestKey,
  rowOf,
  type Tenant,
  type TenantSource,
  tenantHeaders,
} from "../tenants/model.ts";
import { Background } from "./background.ts";
import { workerProxy } from "./proxy-worker.ts";
import { TenantRegistry } from "./tenant-registry.ts";
import { callTenants, type TenantTable } from "./tenants-object.ts";
import { adminTokenVariable, EDGE_CACHE_OPTION_NAMES, workerSettings } from "./variables.ts";
import {
  adminAccess,
  capturedBy,
  type EdgeCacheOptions,
  type ExecutionContextLike,
  edgeCache,
  isolateLogger,
  type LogEnv,
  regionOf,
  serveRequest,
  setupFailed,
} from "./worker.ts";

/**
 * The bindings of a Worker of tenants: the change log and the registry (`TENANTS`), and
 * whatever D1 bindings its tenants name (`DB_SHOP`, ...).
 */
export interface TenantsEnv extends LogEnv {
  /** The Durable Object namespace of `TenantsObject`: the tenants and their key hashes. */
  TENANTS: DurableObjectNamespaceLike;
  /** The operator's token: the only way to create, list, rotate and delete tenants. */
  EDGECACHE_ADMIN_TOKEN?: string;
}

export interface EdgecacheTenantsWorkerOptions extends EdgeCacheOptions {
  /**
   * How long an isolate trusts its copy of the tenant table after it asked the registry
   * (TENANTS_LEASE_MS). A change through the operator's API is answered only once this long
   * has passed since the registry made it, so every isolate has refetched the table or
   * stopped trusting it by then.
   */
  tenantsLeaseMs?: number;
}

export interface EdgecacheTenantsWorker<E extends TenantsEnv = TenantsEnv> {
  fetch(request: Request, env: E, ctx: ExecutionContextLike): Promise<Response>;
}

/** Default TENANTS lease: a rotation or deletion returns after about this long. */
export const TENANTS_LEASE_MS = WORKER_TENANTS_LEASE.ms;
/**
 * Added to the lease before a change is answered: a Worker's clock moves only with I/O,
 * so an isolate may read the time a little before the moment it checks its lease.
 */
const CLOCK_MARGIN_MS = WORKER_TENANTS_LEASE.marginMs;
/**
 * A tenant's memory tier when it sets none: several tenants share an isolate's 128 MB
 * (MEMORY_TIER_BYTES is a whole isolate's).
 */
export const TENANT_MEMORY_BYTES = 4 * 1024 * 1024;
const C = "tenants";

/** The options EdgecacheTenantsWorkerOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<EdgecacheTenantsWorkerOptions> = {
  ...EDGE_CACHE_OPTION_NAMES,
  tenantsLeaseMs: true,
};

/** One tenant's app in this isolate: its cache, its change log, its data API or proxy. */
interface Served {
  app: Hono;
  log: DurableChangeLog;
  logger: ReturnType<typeof isolateLogger>;
  /** What the Worker sends the tenant's admin API in place of the tenant's key. */
  adminToken: string;
}

/**
 * One Worker that serves several tenants, as `edgecache serve --state` does on Node: each
 * request names its tenant by `Authorization: Bearer <key>` (or `X-Edgecache-Key`, requestKey) and goes
 * to that tenant's own data API over its own D1 binding, or its own proxy of its origin,
 * with a cache of its own (memory, change log, Cache API cache, KV and Durable Object tier
 * prefixes). The key is taken off the request first.
 *
 * The tenants live in the `TenantsObject` Durable Object (bound as `TENANTS`), keys as their
 * SHA-256 only. Each isolate trusts its copy for `tenantsLeaseMs`; the operator's API
 * (`/_edgecache/tenants`, `EDGECACHE_ADMIN_TOKEN`, what `edgecache tenants --url` speaks)
 * answers a change only after that, so a rotated key is refused by every isolate when the
 * command returns.
 *
 * @example
 * ```ts
 * import { ChangeLogObject, TenantsObject, edgecacheTenantsWorker } from "edgecache/cloudflare";
 * export { ChangeLogObject, TenantsObject };
 * export default edgecacheTenantsWorker();
 * ```
 */
export function edgecacheTenantsWorker<E extends TenantsEnv = TenantsEnv>(
  options: EdgecacheTenantsWorkerOptions = {},
): EdgecacheTenantsWorker<E> {
  if (typeof options !== "object" || options === null)
    badOption(C, "options", "an object", options);
  checkOptionNames(C, options, OPTIONS);
  const leaseMs = options.tenantsLeaseMs ?? TENANTS_LEASE_MS;
  if (!(Number.isFinite(leaseMs) && leaseMs > 0)) {
    badOption(C, "tenantsLeaseMs", "a number of ms > 0", leaseMs);
  }
  const background = new Background();
  let front: Hono | undefined;
  return {
    async fetch(request, env, ctx) {
      try {
        front ??= frontApp(env, options, leaseMs, background);
        return await front.fetch(request, env, ctx);
      } catch (error) {
        return setupFailed(error); // a bad binding or variable: the operator's to fix
      } finally {
        ctx.waitUntil(background.idle());
      }
    },
  };
}

/** The isolate's app: the operator's API, then every other request to its tenant's app. */
function frontApp(
  env: TenantsEnv,
  options: EdgecacheTenantsWorkerOptions,
  leaseMs: number,
  background: Background,
): Hono {
  if (typeof env.TENANTS?.idFromName !== "function") {
    badOption(C, "env.TENANTS", "a Durable Object binding of TenantsObject", env.TENANTS);
  }
  // The operator's token is checked at set-up, as a node checks it at start: a bad or empty
  // one is the operator's to fix, not a surprise at the first tenants API call.
  adminTokenVariable(env);
  const settings = workerSettings(env, options);
  const logger = isolateLogger(settings, background);
  const served = new Map<string, { tenant: Tenant; opened: Promise<Served> }>();
  const registry = new TenantRegistry(env.TENANTS, leaseMs, background, (names) => {
    // Deleted (or made anew), or its source or budget changed: its app goes.
    for (const [name, { tenant }] of served) {
      const now = names.get(name);
      if (!now || identity(now) !== identity(tenant)) served.delete(name);
    }
  });
  const servedOf = (tenant: Tenant, request: Request): Promise<Served> => {
    let entry = served.get(tenant.name);
    if (!entry || identity(entry.tenant) !== identity(tenant)) {
      const opened = openTenant(tenant, env, options, background, regionOf(request));
      entry = { tenant, opened };
      served.set(tenant.name, entry);
      // A failed start (a missing binding) is tried again by the next request.
      opened.catch(() => {
        if (served.get(tenant.name) === entry) served.delete(tenant.name);
      });
    }
    return entry.opened;
  };

  const app = new Hono();
  app.onError(onError);
  app.use(validUrl);
  // Before any key is looked for, as on Node: the dashboard's page, and health for load
  // balancers (the isolate's, never a tenant's: whether it can read the registry).
  openAdminRoutes(app, { state: async () => ({ ok: await registry.heard() }) });
  app.route("/_edgecache/tenants", operatorApi(env, { env, options, background }, leaseMs, logger));
  app.all("*", async (c) => {
    // The URL's host: Cloudflare makes it from the request's Host (miniflare's local Host
    // header is its own loopback address).
    const host = new URL(c.req.url).host;
    // Only what the admin API answers gets its token: `/_edgecache_x` is the origin's.
    const admin = isAdminPath(new URL(c.req.url).pathname);
    const key = requestKey((name) => c.req.header(name));
    const access = allowed(await registry.accessOf(key.key, host), c.req.method, admin);
    // Authorization beside X-Edgecache-Key holding a tenant's key is a key too (keyField).
    const bearerIsKey =
      key.bearer !== undefined && (await registry.accessOf(key.bearer, host)) !== undefined;
    const request = c.req.raw;
    const ctx = c.executionCtx;
    return serveRequest(
      () => servedOf(access.tenant, request),
      background,
      ctx,
      async (tenant) => {
        // The key let it in: its admin API (under /_edgecache) is this tenant's.
        const headers = tenantHeaders(
          request.headers,
          key,
          bearerIsKey,
          admin ? tenant.adminToken : undefined,
        );
        return tenant.app.fetch(new Request(request, { headers }), env, ctx);
      },
      request,
    );
  });
  return app;
}

/** What the operator's API needs to check a tenant and clean up a deleted one. */
interface Cleanup {
  env: TenantsEnv;
  options: EdgeCacheOptions;
  background: Background;
}

/**
 * The operator's API under `/_edgecache/tenants` (`EDGECACHE_ADMIN_TOKEN` only): list,
 * create, rotate a key, delete. A change is answered once every isolate's lease on the
 * table it had before has run out, `settledMs` after the registry made it.
 */
function operatorApi(
  env: TenantsEnv,
  cleanup: Cleanup,
  leaseMs: number,
  logger: ReturnType<typeof isolateLogger>,
): Hono {
  const api = new Hono();
  api.use("*", async (c, next) => {
    const token = adminTokenVariable(env);
    if (!token) {
      throw new EdgecacheError(
        "E_FORBIDDEN",
        C,
        "the tenants API needs EDGECACHE_ADMIN_TOKEN set on the Worker",
      );
    }
    const given = bearerToken(c.req.header("authorization"));
    if (given === undefined || !constantTimeEqual(given, token)) {
      throw new EdgecacheError("E_UNAUTHORIZED", C, "the operator's token is required");
    }
    await next();
  });
  api.use("*", limitBody, jsonOnly);
  const settled = async () => {
    const started = Date.now();
    await new Promise((done) => setTimeout(done, leaseMs + CLOCK_MARGIN_MS));
    return Date.now() - started;
  };
  api.get("/", async (c) => {
    const { rows } = await callTenants<TenantTable>(env.TENANTS, "list");
    return c.json({
      tenants: keyedOf(rows).flatMap((k) => (k.scope === "write" ? [k.tenant] : [])),
    });
  });
  api.post("/", async (c) => {
    const body = await readBody(
      c,
      NEW_TENANT,
      C,
      '{"name": "shop", "source": {"database": "DB_SHOP"}}',
    );
    checkSource(env, body.source);
    const { created, key, readKey } = newTenantKeys({
      name: body.name,
      source: body.source,
      ...(body.ttl !== undefined && { ttl: body.ttl }),
      ...(body.memoryBytes !== undefined && { memoryBytes: body.memoryBytes }),
      ...(body.readKey && { readKey: true }),
      ...(body.publicHost && { publicHost: body.publicHost }),
    });
    const row = rowOf(
      created,
      await keyHashOf(key),
      readKey === undefined ? undefined : await keyHashOf(readKey),
    );
    await callTenants(env.TENANTS, "create", { row });
    const settledMs = await settled();
    return c.json({ ...created, key, ...(readKey && { readKey }), settledMs });
  });
  api.post("/:name/rotate-key", async (c) => {
    const name = c.req.param("name");
    const { scope = "write" } = await readBody(c, ROTATE, C, '{"scope": "read"}');
    const key = newKey();
    await callTenants(env.TENANTS, "rotate", { name, scope, hash: await keyHashOf(key) });
    const settledMs = await settled();
    return c.json({ name, scope, key, settledMs });
  });
  api.delete("/:name", async (c) => {
    const name = c.req.param("name");
    const { row } = await callTenants<{ row: Row }>(env.TENANTS, "delete", { name });
    const settledMs = await settled();
    // Its entries go through its own change log (every isolate, KV, the Durable Object
    // tier); the place is never used again, so what this cannot reach is never read.
    await dropEntries(row, cleanup).catch((error) =>
      logger.warn(`[edgecache] [${C}] removing ${name}'s entries failed: ${String(error)}`),
    );
    return c.json({ deleted: name, settledMs });
  });
  return api;
}

// The operator API's bodies, declared as data (app/body.ts checks them).
const NEW_TENANT = {
  name: fields.required(fields.string),
  source: fields.required({
    expected: '{"database": <D1 binding>} or {"origin": <url>}',
    accepts: (v): v is TenantSource =>
      isJsonObject(v) &&
      Object.keys(v).length === 1 &&
      (typeof v.database === "string" || typeof v.origin === "string"),
  }),
  ttl: fields.wholeNumber,
  memoryBytes: fields.wholeNumber,
  readKey: fields.boolean,
  publicHost: {
    expected: "a host name (such as shop.example.com)",
    accepts: (v): v is string => typeof v === "string" && isHostName(v),
  },
} satisfies Schema;
const ROTATE = { scope: fields.oneOf<KeyScope>(["write", "read"]) } satisfies Schema;

/** A tenant's source must be one this Worker can serve: a D1 binding it has, or a URL. */
function checkSource(env: TenantsEnv, source: TenantSource | undefined): void {
  if (source && "database" in source) {
    d1Binding(env, source.database);
    return;
  }
  if (source && "origin" in source) {
    try {
      const url = new URL(source.origin);
      if (url.protocol === "http:" || url.protocol === "https:") return;
    } catch {}
    badOption(C, "origin", "an http(s) URL", source.origin);
  }
  badOption(C, "source", "{ database: <D1 binding> } or { origin: <url> }", JSON.stringify(source));
}

function d1Binding(env: TenantsEnv, name: string): D1DatabaseLike {
  const binding = (env as unknown as Record<string, unknown>)[name] as D1DatabaseLike | undefined;
  if (typeof binding?.prepare !== "function") {
    badOption(C, "database", "the name of a D1 binding of this Worker", name);
  }
  return binding;
}

/**
 * Where a tenant's cache lives beyond memory: its name and when it was made, so a tenant
 * deleted and made anew never meets the old one's entries.
 */
function placeOf(tenant: Pick<Tenant, "name" | "createdAt">): string {
  return `tenant:${tenant.name}-${Date.parse(tenant.createdAt).toString(36)}`;
}

/** Opens a tenant's app in this isolate: its cache in its place, its D1 or its origin. */
async function openTenant(
  tenant: Tenant,
  env: TenantsEnv,
  options: EdgeCacheOptions,
  background: Background,
  region: string | undefined,
): Promise<Served> {
  const { cache, log, logger, settings } = tenantCache(tenant, env, options, background, region);
  const adminToken = randomId() + randomId();
  const admin = { cache, ...adminAccess(env), token: adminToken };
  if ("database" in tenant.source) {
    const schedule = (work: Promise<unknown>) => background.add(work);
    const source = d1Source({ database: d1Binding(env, tenant.source.database), schedule });
    // One write at a time, as in worker.ts (WriteChain).
    const api = await createDataApi({ source, cache, groupWrites: 1 });
    const health = { source: sourceCheck(source, api.schema) };
    // Its log drains its own D1 (tenantCache): the changes it applied, per tenant.
    const app = edgecacheApp(api.app, { ...admin, health, capture: capturedBy(log) });
    return { app, log, logger, adminToken };
  }
  const proxy = workerProxy(
    cache,
    [{ origin: tenant.source.origin, ...(settings.ttl !== undefined && { ttl: settings.ttl }) }],
    logger,
  );
  return { app: edgecacheApp(proxy.app, { ...admin, proxy }), log, logger, adminToken };
}

/** Removes a deleted tenant's entries from the tiers that can list them, through its log. */
async function dropEntries(row: Row, { env, options, background }: Cleanup): Promise<void> {
  // Its log's object stops draining its D1 (which a tenant made anew drains into its own).
  const { cache, log } = tenantCache(fromRow(row), env, options, background, undefined, true);
  await log.sync();
  await cache.invalidate({ prefix: "" });
  await background.idle();
}

/** A tenant's cache in its place, with its own TTL and memory budget over the Worker's. */
function tenantCache(
  tenant: Tenant,
  env: TenantsEnv,
  options: EdgeCacheOptions,
  background: Background,
  region: string | undefined,
  removing = false,
) {
  const settings = {
    ...workerSettings(env, options),
    memoryBytes: tenant.memoryBytes ?? TENANT_MEMORY_BYTES,
    ...(tenant.ttl !== undefined && { ttl: tenant.ttl }),
    ...(removing && { logLevel: "silent" as LogLevel }),
  };
  const logger = isolateLogger(settings, background);
  // Its log is fed from its own D1's change table (changes made around the Worker), unless
  // it serves an origin or is being removed.
  const capture: string | false =
    "database" in tenant.source && !removing ? tenant.source.database : false;
  const place = { place: placeOf(tenant), capture };
  return {
    ...edgeCache(env, settings, options, background, logger, region, place),
    logger,
    settings,
  };
}
