/**
 * edgecache: the portable engine. Stores, sources and runtime adapters are subpath
 * exports (`edgecache/stores/memory`, `edgecache/stores/sqlite`, `edgecache/sources/sqlite`,
 * `edgecache/node`), so importing the engine pulls in no runtime-specific code.
 *
 * @example
 * import { createCache } from "edgecache";
 * import { memoryStore } from "edgecache/stores/memory";
 * const cache = createCache({ tiers: [memoryStore()] });
 * const user = await cache.getOrSet("user:1", () => db.user(1), { tags: ["users#1"] });
 */
export {
  Cache,
  type CacheOptions,
  createCache,
  type EntryInit,
  type InvalidateRequest,
  type Resolved,
  strongEtag,
  type WriteHooks,
  type WriteResult,
} from "./core/cache/index.ts";
export type {
  ChangeLog,
  ChangeOp,
  ChangeRecord,
  LogFollower,
  LogPosition,
  LogStart,
} from "./core/change-log/contract.ts";
export { type LocalChangeLogOptions, localChangeLog } from "./core/change-log/in-process.ts";
export { type KeyPart, requestKey } from "./core/data/keys.ts";
export type * from "./core/data/query.ts";
export { parseListQuery } from "./core/data/query-params.ts";
export {
  type DependencyLookup,
  type InvalidationPolicy,
  type ListDependency,
  type Plan,
  type PlanSchema,
  planSchemaOf,
  planWrite,
  rowTag,
  setTag,
  tableTag,
  type WriteEvent,
} from "./core/deps/planner.ts";
export { type CacheEntry, type DeferredBody, deferredBody } from "./core/entries/entry.ts";
export { EdgecacheError, type ErrorCode } from "./core/errors.ts";
export {
  Namespace,
  type NamespaceInvalidation,
  type NamespaceOptions,
} from "./core/library/namespace.ts";
export { type CacheStats, type TierStats, toPrometheus } from "./core/stats.ts";
export type * from "./core/store.ts";
