import { startEdgecacheWorkers } from "../../adapter/cloudflare/edgecache-workers.ts";
import { consistencyProperty, type Deployment } from "./property.ts";
import { workersDeployment } from "./workers-deployment.ts";

/**
 * The consistency property on Cloudflare Workers, inside workerd: writes through one
 * isolate, reads through two others, all over one local D1 with memory, Cache API and KV
 * tiers and the Durable Object change log, in each of its modes.
 */
async function workers(mode: "strict" | "lease"): Promise<Deployment> {
  // The shortest lease the log takes: in lease mode a write waits for the readers' leases.
  const w = await startEdgecacheWorkers({ names: ["writer", "r1", "r2"], mode, leaseMs: 400 });
  return workersDeployment(w, ["writer", "r1", "r2"]);
}

/**
 * The readers start over every few requests (a new isolate's cache and log follower; the
 * Cache API, KV and the object as they are), as the edge recycles isolates: what they
 * serve from the shared tiers is judged by the log's history, never stale.
 */
async function churning(): Promise<Deployment> {
  const names = ["writer", "r1", "r2"];
  const vars = { r1: { RECYCLE_EVERY: "7" }, r2: { RECYCLE_EVERY: "11" } };
  const w = await startEdgecacheWorkers({ names, mode: "strict", leaseMs: 400, vars });
  return workersDeployment(w, names);
}

consistencyProperty("Workers isolates over D1, strict log", () => workers("strict"), 10, 0);
consistencyProperty("Workers isolates over D1, readers recycled", churning, 6, 0);
consistencyProperty("Workers isolates over D1, lease log", () => workers("lease"), 6, 0);
