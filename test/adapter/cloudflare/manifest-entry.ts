// Bundled by test/adapter/cloudflare/manifest-in-workerd.test.ts: the proxy Worker with a manifest and the
// manifest's Durable Object, made from the same options. The test puts its origin's URL in
// place of ORIGIN_URL (the options are the module's, as in a deployed Worker) and gives the
// manifest in EDGECACHE_MANIFEST.
import { proxyManifestObject } from "../../../src/adapter/cloudflare/manifest-object.ts";
import {
  type EdgecacheProxyWorkerOptions,
  edgecacheProxyWorker,
} from "../../../src/adapter/cloudflare/proxy-worker.ts";

export { CacheTierObject } from "../../../src/adapter/cloudflare/cache-tier-object.ts";
export { ChangeLogObject } from "../../../src/adapter/cloudflare/change-log-object.ts";

const options: EdgecacheProxyWorkerOptions = {
  origins: [{ origin: "ORIGIN_URL" }],
  // Short delays, so that the backoff's doubling shows within seconds.
  manifestRetry: { minMs: 200, maxMs: 1600 },
  manifestConcurrency: 2,
};

export const ManifestObject = proxyManifestObject(options);
export default edgecacheProxyWorker(options);
