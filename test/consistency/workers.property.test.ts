import { startEdgecacheWorkers } from "../worker/edgecache-workers.ts";
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

consistencyProperty("Workers isolates over D1, strict log", () => workers("strict"), 10, 0);
consistencyProperty("Workers isolates over D1, lease log", () => workers("lease"), 6, 0);
