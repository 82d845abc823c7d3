import { type Copies, containing, meets, shiftedBy } from "./conditions.ts";
import { addEvidence, type RuleChanges } from "./rule-changes.ts";
import {
  type Condition,
  checkRule,
  confidence,
  matchesRead,
  RULE_HOLE,
  type Rule,
  type RuleState,
  readPattern,
  ruleId,
  splitCondition,
  URL_BOUND,
  unbound,
  type Write,
  writeKey,
} from "./rules.ts";
import { templateOf } from "./template.ts";

export interface LearnerOptions {
  /** Share of tests a learned rule must have held to act (0.9). */
  threshold?: number;
  /** Tests a learned rule needs before it may act (3). */
  minTests?: number;
}

/**
 * The learner: holds the rules, counts each one's tests, chooses what to ask again after a
 * write, and plans what the rules that act remove. Pure and portable, as the rules are.
 */
export class Learner {
  readonly threshold: number;
  readonly minTests: number;
  #rules = new Map<string, Rule>();
  /** Evidence and decisions not yet taken by `takeChanges`. */
  #counted = new Map<string, RuleChanges["counts"][number]>();
  #decided: RuleChanges["decisions"] = [];
  /** Write key -> ids of its rules, for planning. */
  #byWrite = new Map<string, Set<string>>();

  constructor(options: LearnerOptions = {}) {
    this.threshold = options.threshold ?? 0.9;
    this.minTests = options.minTests ?? 3;
  }

  /** Every rule, most confident and most tested first. */
  rules(): Rule[] {
    return [...this.#rules.values()].sort(
      (a, b) => confidence(b) - confidence(a) || b.tested - a.tested,
    );
  }

  get(id: string): Rule | undefined {
    return this.#rules.get(id);
  }

  /** Whether a rule acts on writes: pinned and manual ones always, learned ones by evidence. */
  acts(rule: Rule): boolean {
    if (rule.state === "pinned" || rule.state === "manual") return true;
    if (rule.state === "rejected") return false;
    return rule.tested >= this.minTests && confidence(rule) >= this.threshold;
  }

  /**
   * Counts one test: `read` (a cached target) was revalidated after `write` succeeded, and
   * had changed or not. Counts for the most specific rule (values bound where they equal
   * the write's URL values or fields), for the one bound by URL values alone, and for the
   * one with every value free, which is tested by every read of that template; with the
   * read's copy (`copies`), for its template `containing` a value of the write's, and
   * `shifted by` each field the write moved its row in and the page is ordered by. Returns
   * the ids counted.
   */
  observe(write: Write, read: string, changed: boolean, now: number, copies?: Copies): string[] {
    const w = writeKey(write);
    const specific = readPattern(read, w.values, write.fields);
    const byUrl = readPattern(read, w.values);
    const general = templateOf(read).template;
    const patterns = new Set([specific, byUrl, general]);
    if (copies) {
      const held = containing(general, read, w.values, copies);
      if (held) patterns.add(held);
      for (const p of shiftedBy(general, read, write, copies)) patterns.add(p);
      if (specific !== general) {
        for (const p of shiftedBy(specific, read, write, copies)) patterns.add(p);
      }
    }
    const ids: string[] = [];
    for (const pattern of patterns) {
      const rule = this.#ensure(w.key, pattern);
      this.#count(rule, changed, now);
      ids.push(ruleId(rule));
    }
    return ids;
  }

  /**
   * The cached targets a write changes by the rules that act, from `targets` (the cached
   * ones worth considering).
   */
  plan(
    write: Write,
    targets: Iterable<string>,
    copies?: Copies,
  ): { targets: string[]; rules: string[]; byRule: Map<string, string[]> } {
    const w = writeKey(write);
    const acting = [...(this.#byWrite.get(w.key) ?? [])]
      .map((id) => this.#rules.get(id) as Rule)
      .filter((r) => this.acts(r));
    const byRule = new Map<string, string[]>();
    if (acting.length === 0) return { targets: [], rules: [], byRule };
    // Each rule's parts once, and by the template its reads have: a target's template
    // picks the few rules worth matching it against.
    const byTemplate = new Map<string, { rule: Rule; read: string; condition: Condition }[]>();
    for (const rule of acting) {
      const [read, condition] = splitCondition(rule.read);
      const template = unbound(read);
      byTemplate.set(template, [...(byTemplate.get(template) ?? []), { rule, read, condition }]);
    }
    const out: string[] = [];
    for (const target of targets) {
      const rule = byTemplate
        .get(templateOf(target).template)
        ?.find(
          ({ read, condition }) =>
            matchesRead(read, target, w.values, write.fields) &&
            meets(condition, target, write, w.values, copies),
        )?.rule;
      if (rule) {
        out.push(target);
        const id = ruleId(rule);
        const list = byRule.get(id);
        if (list) list.push(target);
        else byRule.set(id, [target]);
      }
    }
    return { targets: out, rules: [...byRule.keys()], byRule };
  }

  /**
   * The reads acting rules name outright: a rule with no condition on the copy whose every
   * placeholder the write binds (`/api/users/$1/profile`) names one target, whether or not
   * this node has it cached. Removed through the log, it reaches the copies other nodes and
   * isolates hold (`plan` finds only the reads this node holds).
   */
  named(write: Write): string[] {
    const w = writeKey(write);
    const out = new Set<string>();
    for (const id of this.#byWrite.get(w.key) ?? []) {
      const rule = this.#rules.get(id) as Rule;
      if (!this.acts(rule)) continue;
      const [read, condition] = splitCondition(rule.read);
      if (condition.kind !== "none") continue;
      let open = false;
      const target = read.replace(RULE_HOLE, (hole) => {
        const bound = !hole.startsWith("$")
          ? undefined
          : /^\$\d/.test(hole)
            ? w.values[Number(hole.slice(1)) - 1]
            : write.fields?.get(hole.slice(1));
        if (bound === undefined || bound === "") open = true;
        return bound ?? hole;
      });
      // The target made must read back as the rule's template with those values (a value
      // that is not a placeholder's in a target, such as a word, makes another template).
      if (!open && matchesRead(read, target, w.values, write.fields)) out.add(target);
    }
    return [...out];
  }

  /**
   * Counts one audit of an acting learned rule: a target it removed was asked again after
   * the write and compared with the copy removed. Counts for that rule alone, so a rule
   * that acts on coincidences (several writes at once, entries stale before the write)
   * loses confidence and goes back to being observed.
   */
  audit(id: string, changed: boolean, now: number): void {
    const rule = this.#rules.get(id);
    if (rule) this.#count(rule, changed, now);
  }

  /**
   * Which cached targets to revalidate after a write, at most `limit`: one per read
   * pattern, patterns whose rule is least tested first; none whose rule an operator
   * decided (pinned, rejected, manual) or that acts already. A read that binds none of the
   * write's URL values but whose cached copy holds one (see `Copies`) is of its template's
   * `containing` pattern; else one the write's row moved across is of its `shifted by`
   * pattern. `pick` chooses among the targets of one pattern (in production at random,
   * the most read likelier; the first in tests).
   */
  sample(
    write: Write,
    targets: Iterable<string>,
    limit: number,
    pick: (targets: readonly string[]) => number = () => 0,
    copies?: Copies,
  ): string[] {
    const w = writeKey(write);
    const classes = new Map<string, string[]>();
    for (const target of targets) {
      let pattern = readPattern(target, w.values, write.fields);
      // A page that holds the written id is a class of its own, even where a field binds
      // one of its values (the status list an order was on): among its template's other
      // pages, which mostly do not change, it would seldom be the one asked. So is one that
      // binds nothing and the written row moved across.
      if (copies && !URL_BOUND.test(pattern)) {
        const general = templateOf(target).template;
        pattern =
          containing(general, target, w.values, copies) ??
          (pattern === general ? shiftedBy(general, target, write, copies)[0] : undefined) ??
          pattern;
      }
      const rule = this.#rules.get(ruleId({ write: w.key, read: pattern }));
      if (rule && (rule.state !== "learned" || this.acts(rule))) continue;
      const list = classes.get(pattern);
      if (list) list.push(target);
      else classes.set(pattern, [target]);
    }
    const tested = (pattern: string) =>
      this.#rules.get(ruleId({ write: w.key, read: pattern }))?.tested ?? 0;
    return [...classes.entries()]
      .sort(([a], [b]) => tested(a) - tested(b))
      .slice(0, limit)
      .map(([, list]) => list[Math.min(list.length - 1, pick(list))] as string);
  }

  /** Sets an operator's decision on a rule (creating it for a hand-written one). */
  decide(write: string, read: string, state: RuleState): Rule {
    const rule = this.#ensure(write, read);
    rule.state = state;
    this.#decided.push({ write, read, state });
    return rule;
  }

  /** Forgets a rule (a hand-written one removed, or a learned one reset). */
  remove(id: string): boolean {
    const rule = this.#rules.get(id);
    if (!rule) return false;
    this.#drop(rule);
    this.#counted.delete(id);
    this.#decided.push({ write: rule.write, read: rule.read, state: "forget" });
    return true;
  }

  /** Evidence and decisions since the last call, for a shared store to add to its own. */
  takeChanges(): RuleChanges {
    const changes = { counts: [...this.#counted.values()], decisions: this.#decided };
    this.#counted = new Map();
    this.#decided = [];
    return changes;
  }

  /** Every rule as changes, to seed a shared store found empty: counts and decisions. */
  everything(): RuleChanges {
    const rules = [...this.#rules.values()];
    return {
      counts: rules
        .filter((r) => r.tested > 0)
        .map(({ write, read, held, tested, lastSeen }) => ({
          write,
          read,
          held,
          tested,
          lastSeen,
        })),
      decisions: rules
        .filter((r) => r.state !== "learned")
        .map(({ write, read, state }) => ({ write, read, state })),
    };
  }

  /** Gives back changes a shared store did not take (it could not be reached). */
  putBack(changes: RuleChanges): void {
    for (const c of changes.counts) {
      const mine = this.#counted.get(ruleId(c));
      if (mine) addEvidence(mine, c);
      else this.#counted.set(ruleId(c), { ...c });
    }
    this.#decided = [...changes.decisions, ...this.#decided];
  }

  /**
   * Takes a shared store's rules as the truth (they include every change it took), with
   * the changes it has not taken yet on top.
   */
  adopt(shared: readonly Rule[]): void {
    for (const rule of [...this.#rules.values()]) this.#drop(rule);
    for (const r of shared) {
      if (checkRule(r.write, r.read) !== undefined) continue;
      Object.assign(this.#ensure(r.write, r.read), {
        held: r.held,
        tested: Math.max(r.tested, r.held),
        lastSeen: r.lastSeen,
        state: r.state,
      });
    }
    for (const c of this.#counted.values()) addEvidence(this.#ensure(c.write, c.read), c);
    for (const d of this.#decided) {
      if (d.state === "forget") {
        const rule = this.#rules.get(ruleId(d));
        if (rule) this.#drop(rule);
      } else this.#ensure(d.write, d.read).state = d.state;
    }
  }

  /** Rules as plain data, to persist or share. */
  toJSON(): Rule[] {
    return [...this.#rules.values()].map((r) => ({ ...r }));
  }

  /**
   * Merges persisted or shared rules in: counts take the larger of each (two nodes counting
   * the same evidence must not double it), an operator's decision wins over `learned`.
   */
  merge(rules: readonly Rule[]): void {
    for (const r of rules) {
      if (checkRule(r.write, r.read) !== undefined) continue;
      const rule = this.#ensure(r.write, r.read);
      rule.held = Math.max(rule.held, r.held);
      rule.tested = Math.max(rule.tested, r.tested, rule.held);
      rule.lastSeen = Math.max(rule.lastSeen, r.lastSeen);
      if (r.state !== "learned") rule.state = r.state;
    }
  }

  #count(rule: Rule, changed: boolean, now: number): void {
    const test = { held: changed ? 1 : 0, tested: 1, lastSeen: now };
    addEvidence(rule, test);
    const id = ruleId(rule);
    const c = this.#counted.get(id);
    if (c) addEvidence(c, test);
    else this.#counted.set(id, { write: rule.write, read: rule.read, ...test });
  }

  #drop(rule: Rule): void {
    const id = ruleId(rule);
    this.#rules.delete(id);
    this.#byWrite.get(rule.write)?.delete(id);
  }

  #ensure(write: string, read: string): Rule {
    const id = ruleId({ write, read });
    let rule = this.#rules.get(id);
    if (!rule) {
      rule = { write, read, held: 0, tested: 0, lastSeen: 0, state: "learned" };
      this.#rules.set(id, rule);
      const ids = this.#byWrite.get(write) ?? new Set<string>();
      this.#byWrite.set(write, ids);
      ids.add(id);
    }
    return rule;
  }
}
