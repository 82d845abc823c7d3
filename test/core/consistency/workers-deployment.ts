import type { EdgecacheWorkers } from "../../adapter/cloudflare/edgecache-workers.ts";
import type { Deployment } from "./property.ts";

/**
 * The consistency property's deployment over isolates in workerd: writes through the
 * isolate "writer", reads through "r1" or "r2" at random; patches and entries summed over
 * every isolate's stats. `session`: one client carrying its session (session mode): each
 * request sends the `x-edgecache-session` of the last response.
 */
export function workersDeployment(
  w: EdgecacheWorkers,
  names: readonly string[],
  session = false,
): Deployment {
  let carried: string | null = null;
  const send = async (name: string, path: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    if (session && carried) headers.set("x-edgecache-session", carried);
    const res = await w.fetch(name, path, { ...init, headers });
    carried = res.headers.get("x-edgecache-session") ?? carried;
    return res;
  };
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
    read: (path) => send(Math.random() < 0.5 ? "r1" : "r2", path),
    write: (method, path, body) =>
      send("writer", path, {
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
