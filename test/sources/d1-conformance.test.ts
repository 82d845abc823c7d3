import type { Miniflare } from "miniflare";
import type { TableInfo, ViewInfo } from "../../src/core/data/query.ts";
import { demoRows } from "../../src/demo/seed.ts";
import type { Source } from "../../src/sources/source.ts";
import { CASCADE_SQL, CONFORMANCE_SIZE, sourceConformance } from "../../src/testing/index.ts";
import { startWorker } from "../helpers/workerd.ts";
import { callD1Source } from "./d1-call.ts";

/**
 * The source conformance suite against the D1 source inside workerd, over miniflare's
 * local D1: each source call is one request to d1-entry.ts, which runs it there.
 */
sourceConformance(
  "d1 (workerd)",
  async () => {
    const mf = await startWorker(new URL("./d1-entry.ts", import.meta.url), {
      d1Databases: ["DB"],
    });
    const rows = demoRows(CONFORMANCE_SIZE);
    await callD1Source(mf, "seed", rows.users, rows.orders);
    await callD1Source(mf, "exec", ...CASCADE_SQL);
    return { source: workerSource(mf), close: () => mf.dispose() };
  },
  // Each query is a request in which the entry's new source discovers the database again.
  { numRuns: 100 },
);

/** A Source whose every call runs in the Worker; errors come back with their code. */
function workerSource(mf: Miniflare): Source {
  const run = (op: string, ...args: unknown[]) => callD1Source(mf, op, ...args);
  const maybe = async <T>(result: Promise<unknown>) => ((await result) ?? undefined) as T;
  return {
    name: "d1",
    async schema() {
      const { tables, views } = (await run("schema-views")) as {
        tables: TableInfo[];
        views: ViewInfo[];
      };
      return {
        tables: new Map(tables.map((t) => [t.name, t])),
        views: new Map(views.map((v) => [v.name, v])),
      };
    },
    list: (resource, query) => maybe(run("list", resource.name, query)),
    get: (resource, id) => maybe(run("get", resource.name, id)),
    insert: (table, values) => maybe(run("insert", table, values)),
    update: (table, id, values) => maybe(run("update", table, id, values)),
    replace: (table, id, values) => maybe(run("replace", table, id, values)),
    delete: (table, id) => maybe(run("delete", table, id)),
    effects: (table, op) => maybe(run("effects", table, op)),
    close: async () => {},
  };
}
