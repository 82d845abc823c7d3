import { type Rule, type RuleState, ruleId } from "./rules.ts";

/**
 * Evidence as a learner counts it and a shared store of rules adds it up: what a learner
 * counted and decided since it was last asked, and how a store adds that to its own rules.
 */

/** Evidence a rule or a change carries: tests, those that held, the latest test's time. */
type Evidence = Pick<Rule, "held" | "tested" | "lastSeen">;

/** Adds `more` evidence to `into`. */
export function addEvidence(into: Evidence, more: Evidence): void {
  into.held += more.held;
  into.tested += more.tested;
  into.lastSeen = Math.max(into.lastSeen, more.lastSeen);
}

/**
 * What a learner counted and decided since it was last asked (`takeChanges`): what a
 * shared store of rules adds to its own, so nodes that learn apart count all of it once.
 */
export interface RuleChanges {
  /** Evidence added per rule: tests, held, and the latest test's time. */
  counts: { write: string; read: string; held: number; tested: number; lastSeen: number }[];
  /** Operators' decisions, in order; `forget` removes the rule. */
  decisions: { write: string; read: string; state: RuleState | "forget" }[];
}

/**
 * Adds a learner's changes to a shared store's rules, as one step: evidence added (each
 * learner sends only what it counted itself, so nothing is counted twice), then decisions
 * in order (the latest wins; `forget` removes the rule). What the Redis script does in
 * Lua, for stores that run JavaScript (the Workers rules object). Returns the ids it
 * changed or removed, for the store to write back.
 */
export function addChanges(
  rules: Map<string, Rule>,
  changes: RuleChanges,
): { changed: Set<string>; removed: Set<string> } {
  const changed = new Set<string>();
  const removed = new Set<string>();
  const ensure = (write: string, read: string) => {
    const id = ruleId({ write, read });
    let rule = rules.get(id);
    if (!rule) {
      rule = { write, read, held: 0, tested: 0, lastSeen: 0, state: "learned" };
      rules.set(id, rule);
    }
    changed.add(id);
    removed.delete(id);
    return rule;
  };
  for (const c of changes.counts) addEvidence(ensure(c.write, c.read), c);
  for (const d of changes.decisions) {
    if (d.state !== "forget") ensure(d.write, d.read).state = d.state;
    else {
      const id = ruleId(d);
      rules.delete(id);
      changed.delete(id);
      removed.add(id);
    }
  }
  return { changed, removed };
}
