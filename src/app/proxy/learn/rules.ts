import { arity, isTemplate, templateOf } from "./template.ts";

/**
 * The learner: rules between a write's route template and the reads it changes, counted
 * from what the origin answered when cached reads were asked again after writes. Pure and
 * portable: no I/O, no clock (times are passed in), so it can be tested alone and run on
 * any runtime.
 *
 * A rule reads `PATCH /api/users/:id -> /api/users/$1/profile`: a read whose template is
 * `/api/users/:id/profile` and whose first value equals the write's first value (`$1`).
 * Placeholders left as they are (`:id`, `*`) match any value. A value can also be bound to a
 * field of the write's JSON answer (`$userId`) or of the written resource's cached copy read
 * before the write (`$before.status`): `PATCH /api/orders/:id -> /api/users/$userId/orders`.
 * A rule can also ask something of the read's cached copy: that it holds the write's value
 * (`/api/users?sort=* containing $1`), or that its rows are in the order of a field the
 * write moved its row in, where the row moved (`/api/users?sort=* shifted by $lastName`).
 * Its confidence is the share
 * of the times it was tested (a matching cached read revalidated after a matching write)
 * in which it held (the read had changed): explainable, and nothing else is learned.
 */

export type RuleState = "learned" | "pinned" | "rejected" | "manual";

export interface Rule {
  /** `PATCH /api/users/:id`: the write's method and template. */
  write: string;
  /**
   * `/api/users/$1/profile`: the read's template, values bound to the write's as `$n` (its
   * URL's values) or `$name` (a field of its answer, `$before.name` of the copy before it).
   */
  read: string;
  /** Times a matching read was found changed after a matching write. */
  held: number;
  /** Times a matching read was revalidated after a matching write. */
  tested: number;
  /** When it was last tested (ms since the epoch), 0 when never. */
  lastSeen: number;
  /** learned: acts by its confidence; pinned and manual: always; rejected: never. */
  state: RuleState;
}

export interface LearnerOptions {
  /** Share of tests a learned rule must have held to act (0.9). */
  threshold?: number;
  /** Tests a learned rule needs before it may act (3). */
  minTests?: number;
}

/** What the learner needs of a write: its method and request target, and what it returned. */
export interface Write {
  method: string;
  target: string;
  /**
   * Scalar fields of the write's JSON answer (`userId`, `team.id`) and of the written
   * resource's cached copy read before it (`before.userId`), as text: what `$name` binds.
   */
  fields?: ReadonlyMap<string, string>;
}

const HOLE = /:id|\*/g;
/** A binding: `$1` (the write's first URL value) or `$userId` / `$before.team.id` (a field). */
const BINDING = /\$\d+|\$[A-Za-z_]\w*(?:\.\w+)*/g;
const RULE_HOLE = new RegExp(`:id|\\*|${BINDING.source}`, "g");
const NO_FIELDS: ReadonlyMap<string, string> = new Map();
/** A read pattern that binds one of the write's URL values (`$1`). */
const URL_BOUND = /\$\d/;

export function ruleId(rule: Pick<Rule, "write" | "read">): string {
  return `${rule.write} -> ${rule.read}`;
}

/** `PATCH /api/users/:id` for a write. */
export function writeKey(write: Write): { key: string; values: readonly string[] } {
  const t = templateOf(write.target);
  return { key: `${write.method.toUpperCase()} ${t.template}`, values: t.values };
}

/**
 * The read side of the most specific rule a read target can be evidence for: its template
 * with each value equal to one of the write's URL values replaced by `$n` (1-based), else
 * equal to one of its fields by `$name` (the first field with that value).
 */
export function readPattern(
  target: string,
  writeValues: readonly string[],
  fields: ReadonlyMap<string, string> = NO_FIELDS,
): string {
  const { template, values } = templateOf(target);
  let i = 0;
  return template.replace(HOLE, (placeholder) => {
    const value = values[i++] ?? "";
    if (value === "") return placeholder;
    const at = writeValues.indexOf(value);
    if (at >= 0) return `$${at + 1}`;
    const name = byValue(fields).get(value);
    return name === undefined ? placeholder : `$${name}`;
  });
}

/** A write's fields by value (the first name for each), made once per write's fields. */
const BY_VALUE = new WeakMap<ReadonlyMap<string, string>, Map<string, string>>();

function byValue(fields: ReadonlyMap<string, string>): Map<string, string> {
  let names = BY_VALUE.get(fields);
  if (!names) {
    names = new Map();
    for (const [name, value] of fields) if (!names.has(value)) names.set(value, name);
    BY_VALUE.set(fields, names);
  }
  return names;
}

/** Evidence a rule or a change carries: tests, those that held, the latest test's time. */
type Evidence = Pick<Rule, "held" | "tested" | "lastSeen">;

/** Adds `more` evidence to `into`. */
function addEvidence(into: Evidence, more: Evidence): void {
  into.held += more.held;
  into.tested += more.tested;
  into.lastSeen = Math.max(into.lastSeen, more.lastSeen);
}

/**
 * Whether a read target matches a rule's read side for a write with these values and
 * fields: the same template, and each bound placeholder equal to the write's value.
 */
export function matchesRead(
  read: string,
  target: string,
  writeValues: readonly string[],
  fields: ReadonlyMap<string, string> = NO_FIELDS,
): boolean {
  const { template, values } = templateOf(target);
  // The same text between placeholders, and each placeholder the same or bound and equal.
  if (read.split(RULE_HOLE).join("\0") !== template.split(HOLE).join("\0")) return false;
  const ruleHoles = read.match(RULE_HOLE) ?? [];
  const targetHoles = template.match(HOLE) ?? [];
  return ruleHoles.every((hole, k) => {
    if (!hole.startsWith("$")) return hole === targetHoles[k];
    const bound = /^\$\d/.test(hole)
      ? writeValues[Number(hole.slice(1)) - 1]
      : fields.get(hole.slice(1));
    return values[k] !== undefined && values[k] === bound;
  });
}

/** A rule's confidence: held / tested (0 when never tested). */
export function confidence(rule: Rule): number {
  return rule.tested === 0 ? 0 : rule.held / rule.tested;
}

/** Checks a hand-written rule's sides; returns a message naming what is wrong, or undefined. */
export function checkRule(write: unknown, read: unknown): string | undefined {
  if (typeof write !== "string" || !/^[A-Z]+ \//.test(write)) {
    return `write: expected "METHOD /template" such as "PATCH /api/users/:id", got ${JSON.stringify(write)}`;
  }
  const template = write.slice(write.indexOf(" ") + 1);
  if (!isTemplate(template)) {
    return `write: expected a route template (:id for values, ?name=* for query values), got ${JSON.stringify(template)}`;
  }
  const [readTemplate, condition] =
    typeof read === "string" ? splitCondition(read) : [undefined, undefined];
  if (typeof readTemplate !== "string" || !isTemplate(unbound(readTemplate))) {
    return `read: expected a route template such as "/api/users/$1/profile", "/api/users?team=$team", "/api/users?sort=* containing $1" or "/api/users?sort=* shifted by $name", got ${JSON.stringify(read)}`;
  }
  const n = arity(template);
  if (
    condition?.kind === "containing" &&
    !(Number.isInteger(condition.k) && condition.k >= 1 && condition.k <= n)
  ) {
    return `read: "containing $k" names no value of the write (it has ${n})`;
  }
  if (condition?.kind === "shifted" && !FIELD_NAME.test(condition.name)) {
    return `read: "shifted by $name" needs a field name, got ${JSON.stringify(condition.name)}`;
  }
  for (const bound of readTemplate.match(/\$\d+/g) ?? []) {
    const k = Number(bound.slice(1));
    if (k < 1 || k > n) return `read: ${bound} names no value of the write (it has ${n})`;
  }
  return undefined;
}

/** What the learner may know of cached reads' copies: given by the proxy, from stored bodies. */
export interface Copies {
  /**
   * Whether there is a copy to look in: not for a read only on its way from the origin, nor
   * one that is not fresh in memory (the proxy looks only there, synchronously).
   */
  has(target: string): boolean;
  /** Whether a cached read's copy holds a value (the written row's id in a list page, say). */
  holds(target: string, value: string): boolean;
  /**
   * The rows of a cached list page (the objects of its JSON array), in order, if it is one:
   * the same array each time while the copy lives.
   */
  rows(target: string): Rows | undefined;
}

const CONTAINING = " containing $";
/** A field a rule can name (`$lastName`): what `writeFields` binds at the top level. */
const FIELD_NAME = /^[A-Za-z_]\w*$/;
const SHIFTED = " shifted by $";

/**
 * `/api/users?team=* containing $1`: the pattern of reads of `template` whose cached copy
 * holds the write's first URL value, when `target`'s does; undefined when it holds none.
 */
function containing(
  template: string,
  target: string,
  values: readonly string[],
  copies: Copies,
): string | undefined {
  const k = values.findIndex((v) => v !== "" && copies.holds(target, v));
  return k < 0 ? undefined : `${template}${CONTAINING}${k + 1}`;
}

/** What a rule's read side asks of a read's copy besides its template: nothing, or a condition. */
type Condition =
  | { kind: "none" }
  | { kind: "containing"; k: number }
  | { kind: "shifted"; name: string };

/** A rule's read side: its template (with bindings) and its condition on the copy. */
function splitCondition(read: string): [string, Condition] {
  let at = read.indexOf(CONTAINING);
  if (at >= 0) {
    return [
      read.slice(0, at),
      { kind: "containing", k: Number(read.slice(at + CONTAINING.length)) },
    ];
  }
  at = read.indexOf(SHIFTED);
  if (at >= 0)
    return [read.slice(0, at), { kind: "shifted", name: read.slice(at + SHIFTED.length) }];
  return [read, { kind: "none" }];
}

/** Whether a read's copy meets a rule's condition, for a write with these URL values. */
function meets(
  condition: Condition,
  target: string,
  write: Write,
  values: readonly string[],
  copies: Copies | undefined,
): boolean {
  if (condition.kind === "none") return true;
  if (!copies) return false;
  // A read with no copy to look in (a load on its way, say) may hold anything: it meets
  // every condition, so that a load begun before the write is not stored.
  if (!copies.has(target)) return true;
  if (condition.kind === "containing") {
    const value = values[condition.k - 1];
    return value !== undefined && copies.holds(target, value);
  }
  const span = spanOf(write, condition.name);
  const rows = span && copies.rows(target);
  return span !== undefined && rows !== undefined && shifts(rows, condition.name, span, target);
}

/**
 * Where a write moves its row in the order of one field: from its value before the write
 * (`$before.name`) to its value after (`$name`). A POST's row is new (it shifts everything
 * from its place on), a DELETE's is gone (everything from its old place on); any other
 * write needs both values.
 */
type Span = { from: Scalar; to: Scalar } | { open: Scalar };
type Scalar = string | number;

function spanOf(write: Write, name: string): Span | undefined {
  const after = write.fields?.get(name);
  const before = write.fields?.get(`before.${name}`);
  const method = write.method.toUpperCase();
  if (method === "POST") return after === undefined ? undefined : { open: scalar(after) };
  if (method === "DELETE") return before === undefined ? undefined : { open: scalar(before) };
  return after === undefined || before === undefined
    ? undefined
    : { from: scalar(before), to: scalar(after) };
}

/** A field's text as it compares: a number when it reads as one. */
function scalar(text: string): Scalar {
  return /^-?\d+(?:\.\d+)?$/.test(text) ? Number(text) : text;
}

function compare(a: Scalar, b: Scalar): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  const x = String(a);
  const y = String(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

type Rows = readonly Readonly<Record<string, unknown>>[];

/** How a page's rows run in one field's order: which way, and the values at its ends. */
interface Order {
  /** Never falling; else never rising. */
  up: boolean;
  /** Every value the same: the page alone does not say it is in this order. */
  flat: boolean;
  low: Scalar;
  high: Scalar;
}

/** Each page's orders, by field, found once per page (the proxy keeps its rows while it lives). */
const ORDERS = new WeakMap<Rows, Map<string, Order>>();

/** The fields a page's rows are in the order of (every row has it, as text or a number). */
function ordersOf(rows: Rows): Map<string, Order> {
  let orders = ORDERS.get(rows);
  if (orders) return orders;
  orders = new Map();
  for (const name of Object.keys(rows[0] ?? {})) {
    let up = true;
    let down = true;
    let ok = true;
    for (let i = 0; ok && i < rows.length; i++) {
      const v = rows[i]![name];
      if (typeof v !== "string" && typeof v !== "number") ok = false;
      else if (i > 0) {
        const c = compare(rows[i - 1]![name] as Scalar, v);
        if (c > 0) up = false;
        if (c < 0) down = false;
      }
    }
    if (!ok || !(up || down)) continue;
    const first = rows[0]![name] as Scalar;
    const last = rows[rows.length - 1]![name] as Scalar;
    const flat = up && down;
    orders.set(
      name,
      up ? { up, flat, low: first, high: last } : { up, flat, low: last, high: first },
    );
  }
  ORDERS.set(rows, orders);
  return orders;
}

/**
 * Whether a page of rows ordered by `name` is one that a row's move (`span`) shifts: its
 * range of values meets the span between the two places, or, for a row added or removed,
 * reaches its place or comes after it (in the page's own direction). A page whose rows are
 * not in `name` order, or lack it, is not.
 */
function shifts(rows: Rows, name: string, span: Span, target: string): boolean {
  const order = ordersOf(rows).get(name);
  if (!order) return false;
  let { up } = order;
  const { flat, low, high } = order;
  if (flat) {
    // Equal values (a page of one last name, or a field every row shares, like a version):
    // only a page whose URL asks for that order (`sort=lastName`, `sort=-lastName`) is in
    // it, running the way the URL says.
    const asked = sortedBy(target, name);
    if (asked === undefined) return false;
    up = asked === "up";
  }
  if ("open" in span) {
    return up ? compare(high, span.open) >= 0 : compare(low, span.open) <= 0;
  }
  const [a, b] = compare(span.from, span.to) <= 0 ? [span.from, span.to] : [span.to, span.from];
  // A row whose value stayed has not moved: it changes the page that shows it, no other.
  if (compare(a, b) === 0) return false;
  return compare(low, b) <= 0 && compare(high, a) >= 0;
}

/**
 * Whether a target's query asks for `name`'s order, as a value or a word of one
 * (`sort=lastName`, `order=name,id`), and which way (`-lastName` runs down); undefined
 * when it does not.
 */
function sortedBy(target: string, name: string): "up" | "down" | undefined {
  for (const value of templateOf(target).values) {
    for (const word of value.split(/[\s,+]+/)) {
      if (word === name) return "up";
      if (word === `-${name}`) return "down";
    }
  }
  return undefined;
}

/**
 * The fields by which a page's rows could be shifted by a write: those the write gives a
 * span for and the page's rows are ordered by (see `shifts`), as `shifted by $name` patterns.
 */
function shiftedBy(template: string, target: string, write: Write, copies: Copies): string[] {
  if (!write.fields || write.fields.size === 0) return [];
  const rows = copies.rows(target);
  if (!rows || rows.length === 0) return [];
  const orders = ordersOf(rows);
  const out = new Set<string>();
  for (const key of write.fields.keys()) {
    const name = key.startsWith("before.") ? key.slice("before.".length) : key;
    if (!orders.has(name) || out.has(name) || !FIELD_NAME.test(name)) continue;
    const span = spanOf(write, name);
    if (span && shifts(rows, name, span, target)) out.add(name);
  }
  return [...out].map((name) => `${template}${SHIFTED}${name}`);
}

/** Fields bound at most, per write (the first found, in document order). */
const MAX_FIELDS = 64;

/**
 * A write's fields (see `Write.fields`): the scalars of its JSON answer by name (`userId`,
 * nested ones by path, `team.id`), and of the written resource's copy before it under
 * `before.`. Arrays are left out: an element's position is no name to bind by.
 *
 * @example
 * writeFields({ id: 7, team: { id: 3 } }, { id: 7, team: { id: 2 } })
 * // Map { "id" => "7", "team.id" => "3", "before.id" => "7", "before.team.id" => "2" }
 */
export function writeFields(answer: unknown, before?: unknown): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (value: unknown, path: string, depth: number) => {
    if (out.size >= MAX_FIELDS) return;
    if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") {
      if (path !== "" && value !== "") out.set(path, String(value));
    } else if (value !== null && typeof value === "object" && !Array.isArray(value) && depth < 3) {
      for (const [k, v] of Object.entries(value)) {
        if (FIELD_NAME.test(k)) walk(v, path === "" ? k : `${path}.${k}`, depth + 1);
      }
    }
  };
  walk(answer, "", 0);
  walk(before, "before", 0);
  return out;
}

/** A rule's read side with its bindings as the placeholders they stand for. */
function unbound(read: string): string {
  const q = read.indexOf("?");
  const path = q < 0 ? read : read.slice(0, q);
  const query = q < 0 ? "" : read.slice(q).replace(BINDING, "*");
  return path.replace(BINDING, ":id") + query;
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
