import type { PlanSchema, WriteEvent } from "../../src/core/deps/planner.ts";

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
