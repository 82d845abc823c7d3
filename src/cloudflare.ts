/**
 * The Cloudflare Workers adapter: the Durable Object, KV and Cache API tiers and the Durable
 * Object change log. Nothing here imports a Cloudflare type; the bindings are described structurally.
 */
export {
  CacheTierObject,
  type CacheTierObjectOptions,
  cacheTierObject,
  MIN_PRECOMPUTE_MS,
  type Precompute,
  type PrecomputeStats,
  precomputeStats,
  type TierEnv,
} from "./adapter/cloudflare/cache-tier-object.ts";
export { ChangeLogObject } from "./adapter/cloudflare/change-log-object.ts";
export type {
  ManifestEnv,
  ManifestNamespaceLike,
  ManifestOptions,
  ManifestStateLike,
} from "./adapter/cloudflare/manifest-client.ts";
export { MANIFEST_RUN_MS, proxyManifestObject } from "./adapter/cloudflare/manifest-object.ts";
export {
  type PostgresCaptureEnv,
  type PostgresChangeLogOptions,
  type PostgresJs,
  postgresChangeLogObject,
} from "./adapter/cloudflare/postgres-drain.ts";
export {
  type EdgecacheProxyWorker,
  type EdgecacheProxyWorkerOptions,
  edgecacheProxyWorker,
  type ProxyEnv,
} from "./adapter/cloudflare/proxy-worker.ts";
export { TenantsObject } from "./adapter/cloudflare/tenants-object.ts";
export {
  type EdgecacheTenantsWorker,
  type EdgecacheTenantsWorkerOptions,
  edgecacheTenantsWorker,
  TENANT_MEMORY_BYTES,
  TENANTS_LEASE_MS,
  type TenantsEnv,
} from "./adapter/cloudflare/tenants-worker.ts";
export {
  DEFAULT_TTL_SECONDS,
  MEMORY_TIER_BYTES,
  type WorkerSettings,
} from "./adapter/cloudflare/variables.ts";
export {
  type EdgeCacheOptions,
  type EdgecacheEnv,
  type EdgecacheIsolate,
  type EdgecacheWorker,
  type EdgecacheWorkerOptions,
  type ExecutionContextLike,
  edgecacheWorker,
  type LogEnv,
  type WarmRun,
} from "./adapter/cloudflare/worker.ts";
export type { BrowserCaching, DataRoute } from "./app/data-routes.ts";
export { seedD1Demo } from "./demo/seed-d1.ts";
export type { DurableObjectNamespaceLike, DurableObjectStateLike } from "./durable/rpc.ts";
export { RETAINED_RECORDS } from "./log/durable-host.ts";
export {
  type ChangeLogMode,
  DEFAULT_LEASE_MS,
  DurableChangeLog,
  type DurableChangeLogOptions,
  durableChangeLog,
  MAX_LEASE_MS,
  STRICT_TRUST_MS,
} from "./log/durable-object.ts";
export {
  CACHE_API_FOREVER_SECONDS,
  CACHE_API_MAX_KEY_BYTES,
  type CacheApiStoreOptions,
  type CacheLike,
  type CacheStorageLike,
  cacheApiStore,
} from "./stores/cache-api.ts";
export {
  DURABLE_OBJECT_MAX_SHARDS,
  DURABLE_OBJECT_MAX_VALUE_BYTES,
  type DurableObjectStoreOptions,
  durableObjectStore,
  type TierNamespaceLike,
} from "./stores/durable-object.ts";
export {
  KV_MAX_KEY_BYTES,
  KV_MAX_VALUE_BYTES,
  KV_MIN_TTL_SECONDS,
  KV_WRITES_PER_SECOND_PER_KEY,
  type KvNamespaceLike,
  type KvStoreOptions,
  kvStore,
} from "./stores/kv.ts";
