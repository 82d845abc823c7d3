import type { StatsFamily } from "../../../core/stats.ts";
import type { LearnEnv, LearnStats } from "./env.ts";
import { confidence, type Rule, ruleId } from "./rules.ts";

/**
 * Learning as the admin API and metrics show it: the counters as metrics, each rule with
 * its evidence, and an operator's decision passed on to where rules are kept.
 */

/** The learning counters as metrics: the stat, its metric's name (no prefix), its help. */
export const LEARN_COUNTERS: [keyof LearnStats, string, string][] = [
  [
    "learnedInvalidations",
    "learned_invalidations_total",
    "Cached entries removed by learned or hand-written rules on writes (proxy mode).",
  ],
  [
    "learningRequests",
    "learning_requests_total",
    "Origin requests spent on learning: sampled entries and audits asked again.",
  ],
  ["learningChanged", "learning_changed_total", "Sampled entries found changed by a write."],
  ["audits", "learning_audits_total", "Acting learned rules' removals checked again."],
  [
    "auditsFailed",
    "learning_audits_failed_total",
    "Audits that found the removed entry unchanged (the rule was wrong that time).",
  ],
  [
    "revalidations",
    "learning_revalidations_total",
    "Entries fetched again after writes (the revalidate action).",
  ],
];

/** The learning counters as metric families, for `toPrometheus` (a runtime without a metrics client). */
export function learnFamilies(stats: LearnStats): StatsFamily[] {
  return LEARN_COUNTERS.map(([key, name, help]) => ({
    name,
    type: "counter" as const,
    help,
    samples: [{ value: stats[key] }],
  }));
}

/** After an operator's decision: told as any change, and stored where rules are shared. */
export async function decided(env: LearnEnv): Promise<void> {
  const rules = env.learner.toJSON();
  env.onChange?.(rules);
  await env.onDecision?.(rules);
}

/** One rule as the admin API shows it: its evidence, confidence and whether it acts. */
export function describeRule(env: LearnEnv, rule: Rule) {
  return {
    id: ruleId(rule),
    write: rule.write,
    read: rule.read,
    state: rule.state,
    acts: env.learner.acts(rule),
    confidence: Math.round(confidence(rule) * 1000) / 1000,
    held: rule.held,
    tested: rule.tested,
    lastSeen: rule.lastSeen === 0 ? null : new Date(rule.lastSeen).toISOString(),
  };
}

/** GET /_edgecache/rules: the learner's settings, counts and every rule. */
export function rulesReport(env: LearnEnv) {
  return {
    threshold: env.learner.threshold,
    minTests: env.learner.minTests,
    perWrite: env.perWrite,
    perSecond: env.perSecond,
    action: env.action,
    revalidatePerWrite: env.revalidatePerWrite,
    revalidatePerSecond: env.refetches.perSecond,
    stats: { ...env.stats },
    rules: env.learner.rules().map((r) => describeRule(env, r)),
  };
}
