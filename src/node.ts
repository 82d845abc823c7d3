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
} from "./adapter/node/edgecache.ts";
export { type NodeOriginFetch, nodeOriginFetch } from "./adapter/node/origin-fetch.ts";
export {
  createNodeProxy,
  DEFAULT_PROXY_CACHE_FILE,
  type NodeProxy,
  type NodeProxyOptions,
} from "./adapter/node/proxy.ts";
export {
  DRAIN_MS,
  type NodeServerOptions,
  peerAddress,
  type RunningServer,
  startServer,
} from "./adapter/node/server.ts";
export { scheduleWarm, type WarmSchedule } from "./adapter/node/warm-schedule.ts";
export { type AdminOptions, createAdminApi } from "./app/admin.ts";
export { createDataApi, type DataApi, type DataApiOptions } from "./app/data-api.ts";
export {
  type CachingProxy,
  createProxy,
  type OriginFetch,
  type OriginRoute,
  type ProxyOptions,
  type PurgeRequest,
  type WarmResult,
} from "./app/proxy.ts";
