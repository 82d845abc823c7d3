/** The Node.js adapter: the single-process setup, the server and config loading. */
export { type EdgecacheConfig, loadConfig, validateConfig } from "./adapter/node/config.ts";
export {
  createNodeEdgecache,
  type NodeEdgecache,
  type NodeEdgecacheOptions,
} from "./adapter/node/edgecache.ts";
export { isLoopback, type RunningServer, startServer } from "./adapter/node/server.ts";
export { type AdminOptions, createAdminApi } from "./app/admin.ts";
export { createDataApi, type DataApi, type DataApiOptions } from "./app/data-api.ts";
