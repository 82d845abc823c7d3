import { badOption } from "../../../core/errors.ts";
import { COMPONENT, type Route } from "../routes.ts";
import { Learner } from "./learner.ts";
import { checkRule as checkRuleText, type Rule } from "./rules.ts";

/**
 * Learning's settings and state in a proxy: the options as given, checked once into the
 * environment every write's learning runs in, with its counters and request budgets.
 */

/** Learned invalidation in proxy mode (see the README, "Learned invalidation"). */
export interface LearnOptions {
  /** Share of tests a learned rule must have held to act (0.9). */
  threshold?: number;
  /** Tests a learned rule needs before it acts (3). */
  minTests?: number;
  /** Cached entries revalidated after one write, at most (8). */
  perWrite?: number;
  /** Origin requests spent on learning per second, at most (20). */
  perSecond?: number;
  /**
   * Share of writes on which each acting learned rule is audited (0.25): one target it
   * removes is asked again and compared with the removed copy, so a wrong rule loses
   * confidence. 0 turns audits off.
   */
  audit?: number;
  /**
   * What acting rules do to the entries they match, before the write's answer:
   * `invalidate` (the default) removes them; `revalidate` removes them and then fetches
   * them again (the write's own URL first, at most `revalidatePerWrite`), so the next read
   * is a hit. The write's answer waits for those requests. Entries learning finds changed
   * are fetched again too, after the answer.
   */
  action?: "invalidate" | "revalidate";
  /** Entries fetched again per write when the action is `revalidate`, at most (16). */
  revalidatePerWrite?: number;
  /**
   * Entries fetched again per second when the action is `revalidate`, at most (200): past
   * it what acting rules match is only removed, as with `invalidate`.
   */
  revalidatePerSecond?: number;
  /** Hand-written rules: `{ write: "PATCH /api/users/:id", read: "/api/users/$1/profile" }`. */
  rules?: { write: string; read: string }[];
  /** Rules from an earlier run or another node, merged in at start. */
  initial?: Rule[];
  /** Told whenever rules change (to persist or share them). */
  onChange?: (rules: Rule[]) => void;
  /**
   * Awaited after an operator's decision (the admin API), before it is answered: a runtime
   * that shares rules stores it there first, and throws when it cannot.
   */
  onDecision?: (rules: Rule[]) => Promise<void>;
  /**
   * Awaited before a successful write's rules are applied (started with its origin
   * request) and before the admin API lists them: a runtime that shares rules brings them
   * up to date here. Never rejects.
   */
  current?: () => Promise<void>;
}

/** What learning has done, for the admin stats and metrics. */
export interface LearnStats {
  /** Cached entries removed by learned (or hand-written) rules on writes. */
  learnedInvalidations: number;
  /** Origin requests made to learn (revalidations of sampled entries). */
  learningRequests: number;
  /** Sampled entries found changed (and removed, being stale). */
  learningChanged: number;
  /** Acting rules' removals checked again at the origin (part of learningRequests). */
  audits: number;
  /** Audits that found the removed entry unchanged: the rule was wrong that time. */
  auditsFailed: number;
  /** Entries fetched again because of writes (the `revalidate` action). */
  revalidations: number;
}

export interface LearnEnv {
  learner: Learner;
  /** The proxy's routes: learning asks only the origin of the write's own route. */
  routes: readonly Route[];
  stats: LearnStats;
  perWrite: number;
  perSecond: number;
  audit: number;
  action: "invalidate" | "revalidate";
  revalidatePerWrite: number;
  /** Refetches per second (see `revalidatePerSecond`), and the budget left this second. */
  refetches: Budget;
  /**
   * Requests targets through the proxy itself, as a client without headers would (so a
   * write's invalidation while one is on its way keeps it from being stored); set by the
   * proxy.
   */
  refetch?: (targets: string[], base: string) => Promise<unknown>;
  /** Random in [0, 1): which writes are audited (Math.random; fixed in tests). */
  random: () => number;
  onChange: ((rules: Rule[]) => void) | undefined;
  onDecision: ((rules: Rule[]) => Promise<void>) | undefined;
  current: (() => Promise<void>) | undefined;
  /** Learning requests per second (`perSecond`), and the budget left this second. */
  learning: Budget;
  /** The clock the budgets count seconds by (the proxy's). */
  now: () => number;
}

/** Requests allowed per second, and what is left of them in the current second. */
interface Budget {
  perSecond: number;
  tokens: number;
  second: number;
}

/** Takes up to `wanted` requests from `budget` at time `now` (ms); answers how many. */
export function take(budget: Budget, wanted: number, now: number): number {
  const second = Math.floor(now / 1000);
  if (second !== budget.second) {
    budget.second = second;
    budget.tokens = budget.perSecond;
  }
  const granted = Math.max(0, Math.min(wanted, budget.tokens));
  budget.tokens -= granted;
  return granted;
}

export function learnEnv(
  options: LearnOptions,
  routes: readonly Route[],
  now: () => number = Date.now,
): LearnEnv {
  const num = (name: keyof LearnOptions, v: unknown, d: number, min: number, max = Infinity) => {
    if (v === undefined) return d;
    if (typeof v !== "number" || !(v >= min && v <= max)) {
      badOption(COMPONENT, `learn.${name}`, `a number from ${min} to ${max}`, v);
    }
    return v;
  };
  const action = actionOf(options.action);
  const perSecond = num("perSecond", options.perSecond, 20, 0);
  const learner = new Learner({
    threshold: num("threshold", options.threshold, 0.9, 0, 1),
    minTests: num("minTests", options.minTests, 3, 1),
  });
  if (options.initial) learner.merge(options.initial);
  for (const [i, r] of (options.rules ?? []).entries()) {
    const problem = checkHandWritten(r);
    if (problem) badOption(COMPONENT, `learn.rules[${i}]`, problem, r);
    learner.decide(r.write, r.read, "manual");
  }
  return {
    learner,
    routes,
    stats: {
      learnedInvalidations: 0,
      learningRequests: 0,
      learningChanged: 0,
      audits: 0,
      auditsFailed: 0,
      revalidations: 0,
    },
    perWrite: num("perWrite", options.perWrite, 8, 0),
    perSecond,
    audit: num("audit", options.audit, 0.25, 0, 1),
    action,
    revalidatePerWrite: num("revalidatePerWrite", options.revalidatePerWrite, 16, 0),
    refetches: {
      perSecond: num("revalidatePerSecond", options.revalidatePerSecond, 200, 0),
      tokens: 0,
      second: -1,
    },
    random: Math.random,
    onChange: options.onChange,
    onDecision: options.onDecision,
    current: options.current,
    learning: { perSecond, tokens: 0, second: -1 },
    now,
  };
}

function actionOf(action: unknown): "invalidate" | "revalidate" {
  if (action === undefined || action === "invalidate" || action === "revalidate") {
    return action ?? "invalidate";
  }
  return badOption(COMPONENT, "learn.action", '"invalidate" or "revalidate"', action);
}

function checkHandWritten(r: unknown): string | undefined {
  if (typeof r !== "object" || r === null) return "an object {write, read}";
  const { write, read } = r as { write?: unknown; read?: unknown };
  return checkRuleText(write, read);
}
