import type { EdgecacheWorkers } from "../worker/edgecache-workers.ts";
import type { Deployment } from "./property.ts";

/**
 * The consistency property's deployment over isolates in workerd: writes through the
 * isolate "writer", reads through "r1" or "r2" at random; patches and entries summed over
 * every isolate's stats.
 */
export function workersDeployment(w: EdgecacheWorkers, names: readonly string[]): Deployment {
  const stats = async () =>
    Promise.all(
      names.map(
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
