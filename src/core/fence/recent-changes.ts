import type { PlanRules } from "../deps/planner.ts";

/** One applied change-log record, as the dashboard shows it. */
export interface ChangeSummary {
  /** Epoch ms when this node applied it. */
  at: number;
  seq: number;
  /** `write`: row changes (the data API's writes); `invalidate`: by key, tag or prefix (admin, purge). */
  cause: "write" | "invalidate";
  /** The writes: table and operation of each row change (the first 10). */
  writes?: { table: string; op: string }[];
  /** What an invalidation named. */
  named?: { keys?: number; tags?: string[]; prefix?: string[] };
  /** Keys it removed from the cache, and entries it patched in place instead. */
  removed: number;
  patched: number;
  /** Keys each rule of the planner chose (writes); `table` also counts fallbacks. */
  rules: PlanRules;
  /** A write that could not be analysed: the whole table went. */
  fallback: boolean;
}

/** The last `capacity` changes this node applied, newest first. */
export class RecentChanges {
  readonly #items: ChangeSummary[] = [];

  constructor(private readonly capacity = 50) {}

  push(change: ChangeSummary): void {
    this.#items.unshift(change);
    if (this.#items.length > this.capacity) this.#items.pop();
  }

  list(): readonly ChangeSummary[] {
    return [...this.#items];
  }
}
