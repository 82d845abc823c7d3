import { startEdgecacheWorkers } from "../../adapter/cloudflare/edgecache-workers.ts";
import { consistencyProperty, type Deployment } from "./property.ts";
import { workersDeployment } from "./workers-deployment.ts";

/**
 * The consistency property on Workers at a distance, inside workerd: every call to the
 * Durable Object, D1 and KV costs a round trip (test/adapter/cloudflare/distance.ts), the writer near
 * the object and the two readers far from it, and D1 read replication on over a replica that
 * lags behind the primary until a session's bookmark makes it catch up. Reads are compared
 * with D1's primary read directly: zero stale reads. In follower mode each isolate is in a
 * region of its own, 5 ms from its follower, which is as far from the log's object as the
 * isolate is. In session mode the isolates sync only once per half lease and hold none: the
 * one client of the property carries its session, so it must read its own writes anyway.
 */
const DISTANCE = {
  writer: { object: 5, primary: 10, replica: 2, kv: 2, follower: 5 },
  r1: { object: 40, primary: 40, replica: 5, kv: 5, follower: 5 },
  r2: { object: 90, primary: 90, replica: 5, kv: 5, follower: 5 },
};

async function workers(mode: "strict" | "lease" | "follower" | "session"): Promise<Deployment> {
  const names = Object.keys(DISTANCE);
  const w = await startEdgecacheWorkers({
    names,
    mode,
    // Session mode: long enough that the readers would serve what they hold, unsynced.
    leaseMs: mode === "session" ? 30_000 : 400,
    distance: DISTANCE,
    regions: { writer: "w", r1: "r1", r2: "r2" },
    regionRtt: { w: 5, r1: 40, r2: 90 },
    replica: {},
    options: { readReplicas: true },
  });
  return workersDeployment(w, names, mode === "session");
}

consistencyProperty(
  "Workers at a distance, D1 replicas, strict log",
  () => workers("strict"),
  4,
  0,
);
consistencyProperty("Workers at a distance, D1 replicas, lease log", () => workers("lease"), 3, 0);
// Four runs: with two, a run of this mode's few hits (each isolate far from the others)
// sometimes held none, failing the property's check that the cache served anything.
consistencyProperty(
  "Workers at a distance, D1 replicas, regional followers",
  () => workers("follower"),
  4,
  0,
);
consistencyProperty(
  "Workers at a distance, D1 replicas, session mode, one client carrying its session",
  () => workers("session"),
  6,
  0,
);
