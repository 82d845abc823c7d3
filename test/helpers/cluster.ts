import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNodeEdgecache, type NodeEdgecache } from "../../src/adapter/node/modes/data-api.ts";
import type { PlanSchema, WriteEvent } from "../../src/core/deps/planner.ts";
import { randomId } from "../../src/core/random-id.ts";

/** Shared pieces of the tests of many nodes: waiting, a plan schema, a row update. */

/** Resolves once `check` holds; throws after `ms`. */
export async function until(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Every table keyed by `id`, no views: what the planner needs of a schema. */
export const schema: PlanSchema = { primaryKey: () => "id", joinColumns: () => [] };

/** A logger that keeps quiet: the tests provoke the faults it would report. */
export const quiet = { warn: () => {} };

/** An update of users row `id` from one name to another. */
export const userUpdate = (id: number, from: string, to: string): WriteEvent => ({
  table: "users",
  op: "update",
  old: { id, name: from },
  new: { id, name: to },
});

/**
 * Opens data API nodes (memory and Redis tiers, no cache file) over one demo database in a
 * fresh directory, sharing Redis under a fresh key prefix; `cleanup` collects their closing.
 */
export function redisDemoNodes(
  url: string,
  cleanup: (() => Promise<void> | void)[],
  more: { reloadLists?: boolean; rehydrate?: boolean } = {},
): () => Promise<NodeEdgecache> {
  const { rehydrate, ...log } = more;
  const dir = mkdtempSync(join(tmpdir(), "edgecache-nodes-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const redis = { url, prefix: `test:${randomId()}:`, leaseMs: 600, ...log };
  return async () => {
    const ec = await createNodeEdgecache({
      cwd: dir,
      demo: { users: 5, orders: 5 },
      redis,
      cacheFile: false,
      ...(rehydrate !== undefined && { rehydrate }),
    });
    cleanup.push(() => ec.close());
    return ec;
  };
}
