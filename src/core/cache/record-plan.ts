import type { ChangeRecord } from "../change-log/contract.ts";
import {
  type DependencyLookup,
  type InvalidationPolicy,
  type PlanRule,
  type PlanRules,
  type PlanSchema,
  planWrite,
  type WriteEvent,
} from "../deps/planner.ts";
import { type KeyPattern, keyPattern } from "../fence/pattern.ts";
import type { ChangeSummary } from "../fence/recent-changes.ts";

/** What the plan of a record reads of this node's dependency index. */
export interface RecordLookup extends DependencyLookup {
  /** Registered keys under a prefix. */
  keys(prefix: string): Iterable<string>;
}

/** What one change-log record invalidates on this node (see planRecord). */
export interface RecordPlan {
  /** Registered keys the record concerns. */
  keys: Set<string>;
  /** Its write events, in order. */
  events: WriteEvent[];
  /** Prefixes and patterns it names: tiers may hold keys under them the index never saw. */
  prefixes: KeyPattern[];
  /** Whether a write could not be planned exactly and fell back to its table. */
  fallback: boolean;
  /** Keys found by each planner rule, for the recent-changes list. */
  rules: PlanRules;
  /** What its invalidations named, for the recent-changes list. */
  named: NonNullable<ChangeSummary["named"]>;
}

/**
 * The keys one record concerns, from this node's registrations: each write event through
 * the planner, each invalidation by key, tag, prefix or pattern. Pure: no tier is asked
 * (what tiers hold beyond the index is listed by the caller from `prefixes`).
 */
export function planRecord(
  record: ChangeRecord,
  schema: PlanSchema,
  index: RecordLookup,
  policy: InvalidationPolicy,
): RecordPlan {
  const plan: RecordPlan = {
    keys: new Set(),
    events: [],
    prefixes: [],
    fallback: false,
    rules: { row: 0, predicate: 0, window: 0, table: 0 },
    named: {},
  };
  const { keys, named } = plan;
  for (const op of record.ops) {
    if ("event" in op) {
      plan.events.push(op.event);
      const planned = planWrite(op.event, schema, index, policy);
      for (const k of planned.keys) keys.add(k);
      plan.fallback ||= planned.fallback;
      for (const rule of Object.keys(plan.rules) as PlanRule[]) {
        plan.rules[rule] += planned.rules[rule];
      }
    } else if ("keys" in op) {
      for (const k of op.keys) keys.add(k);
      named.keys = (named.keys ?? 0) + op.keys.length;
    } else if ("tags" in op) {
      for (const tag of op.tags) for (const k of index.keysForTag(tag)) keys.add(k);
      named.tags = [...(named.tags ?? []), ...op.tags];
    } else {
      const match = "pattern" in op ? keyPattern(op.pattern) : undefined;
      const prefix = match?.prefix ?? (op as { prefix: string }).prefix;
      named.prefix = [...(named.prefix ?? []), "pattern" in op ? op.pattern : prefix];
      for (const k of index.keys(prefix)) if (!match || match.test(k)) keys.add(k);
      plan.prefixes.push(match ?? { prefix, test: () => true });
    }
  }
  return plan;
}
