import type { LearnOptions } from "./env.ts";
import type { Learner } from "./learner.ts";
import type { RuleChanges } from "./rule-changes.ts";
import type { Rule } from "./rules.ts";

/**
 * How often a proxy adds what it learned to a shared store of rules (Redis, the Workers
 * rules object) and takes everyone's, when nothing else made it sync first.
 */
export const RULES_SYNC_MS = 1000;

/**
 * One step of a shared store of rules: adds `changes` (evidence added, decisions in order)
 * and answers every rule it holds, atomically. With `holds` true (the proxy has rules) a
 * store that holds none answers `null` untouched, as one that lost them (Redis restarted
 * empty): the proxy then seeds it with all it has.
 */
export type ExchangeRules = (
  changes: RuleChanges,
  holds: boolean,
) => Promise<readonly Rule[] | null>;

/**
 * Adds what `learner` counted and decided since the last step to a shared store and takes
 * the store's rules as the truth (with changes made meanwhile on top). When the store
 * cannot be reached the changes are given back, to be added by a later step, and the error
 * is thrown for the caller to report: the learner goes on learning and acting alone.
 */
export async function shareChanges(learner: Learner, exchange: ExchangeRules): Promise<void> {
  let changes = learner.takeChanges();
  try {
    let shared = await exchange(changes, learner.rules().length > 0);
    if (shared === null) {
      // The store lost the rules: what this learner has starts them again (its changes
      // since the last step are in it).
      changes = learner.everything();
      learner.takeChanges();
      shared = (await exchange(changes, false)) ?? [];
    }
    learner.adopt(shared);
  } catch (err) {
    learner.putBack(changes);
    throw err;
  }
}

/** What a runtime that shares rules does at each of the learner's moments. */
export interface Sharing {
  /** After any change (evidence or a decision): add it to the shared store, not awaited. */
  changed(): void;
  /** After an operator's decision, before it is answered (see `LearnOptions.onDecision`). */
  decided?(): Promise<void>;
  /** Before a write's rules are applied (see `LearnOptions.current`). */
  current?(): Promise<void>;
}

/**
 * The learn options (`true` or an object) of a proxy whose rules are shared, with the
 * user's own hooks called first. `sharing` is asked each time: the store is set up after
 * the proxy that learns.
 */
export function sharedLearning(
  setting: true | LearnOptions,
  sharing: () => Sharing | undefined,
): LearnOptions {
  const options = setting === true ? {} : setting;
  return {
    ...options,
    onChange(rules) {
      options.onChange?.(rules);
      sharing()?.changed();
    },
    async onDecision(rules) {
      await options.onDecision?.(rules);
      await sharing()?.decided?.();
    },
    async current() {
      await options.current?.();
      await sharing()?.current?.();
    },
  };
}
