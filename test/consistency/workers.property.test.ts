import { startEdgecacheWorkers } from "../worker/edgecache-workers.ts";
import { consistencyProperty, type Deployment } from "./property.ts";

/**
 * The consistency property on Cloudflare Workers, inside workerd: writes through one
 * isolate, reads through two others, all over one local D1 with memory, Cache API and KV
 * tiers and the Durable Object change log, in each of its modes.
 */
async function workers(mode: "strict" | "lease"): Promise<Deployment> {
  // The shortest lease the log takes: in lease mode a write waits for the readers' leases.
  const w = await startEdgecacheWorkers({ names: ["writer", "r1", "r2"], mode, leaseMs: 400 });
  const stats = async () =>
    Promise.all(
      ["writer", "r1", "r2"].map(
        async (n) =>
          (await (await w.fetch(n, "/_edgecache/stats")).json()) as {
            patches: number;
            indexedKeys: number;
          },
      ),
    );
  return {
    databasePath: "",
    read: (path) => w.fetch(Math.random() < 0.5 ? "r1" : "r2", path),
    write: (method, path, body) =>
      w.fetch("writer", path, {
        method,
        headers: { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      }),
    fresh: () => w.fresh(),
    patches: async () => (await stats()).reduce((t, s) => t + s.patches, 0),
    entries: async () => (await stats()).reduce((t, s) => t + s.indexedKeys, 0),
    close: () => w.close(),
  };
}

consistencyProperty("Workers isolates over D1, strict log", () => workers("strict"), 10, 0);
consistencyProperty("Workers isolates over D1, lease log", () => workers("lease"), 6, 0);
