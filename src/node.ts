/** The Node.js adapter: the single-process setup, the server and config loading. */
export {
  type EdgecacheConfig,
  loadConfig,
  type ProxyConfig,
  validateConfig,
} from "./adapter/node/config.ts";
export {
  createNodeEdgecache,
  type NodeEdgecache,
  type NodeEdgecacheOptions,
} from "./adapter/node/modes/data-api.ts";
export { type NodeOriginFetch, nodeOriginFetch } from "./adapter/node/modes/origin-fetch.ts";
export {
  createNodeProxy,
  DEFAULT_PROXY_CACHE_FILE,
  type NodeProxy,
  type NodeProxyOptions,
} from "./adapter/node/modes/proxy.ts";
export {
  DRAIN_MS,
  type NodeServerOptions,
  peerAddress,
  type RunningServer,
  startServer,
} from "./adapter/node/server/server.ts";
export { scheduleWarm, type WarmSchedule } from "./adapter/node/warm-schedule.ts";
export { type AdminOptions, createAdminApi } from "./app/admin.ts";
export { createDataApi, type DataApi, type DataApiOptions } from "./app/data-api.ts";
export type { BrowserCaching, DataRoute } from "./app/data-routes.ts";
export {
  type CachingProxy,
  createProxy,
  type OriginFetch,
  type OriginRoute,
  type ProxyOptions,
  type PurgeRequest,
  type WarmResult,
} from "./app/proxy/index.ts";
export type { QueryCacheReport, QueryCacheView } from "./app/query-shapes.ts";
