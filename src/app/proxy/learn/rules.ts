import { arity, isTemplate, templateOf } from "./template.ts";

/**
 * The learner's rules: between a write's route template and the reads it changes, counted
 * from what the origin answered when cached reads were asked again after writes. How a rule
 * reads, which reads it matches, and how a hand-written one is checked. Pure and portable:
 * no I/O, no clock (times are passed in), so it can be tested alone and run on any runtime.
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
export const RULE_HOLE = new RegExp(`:id|\\*|${BINDING.source}`, "g");
const NO_FIELDS: ReadonlyMap<string, string> = new Map();
/** A read pattern that binds one of the write's URL values (`$1`). */
export const URL_BOUND = /\$\d/;

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

export const CONTAINING = " containing $";
/** A field a rule can name (`$lastName`): what `writeFields` binds at the top level. */
export const FIELD_NAME = /^[A-Za-z_]\w*$/;
export const SHIFTED = " shifted by $";

/** What a rule's read side asks of a read's copy besides its template: nothing, or a condition. */
export type Condition =
  | { kind: "none" }
  | { kind: "containing"; k: number }
  | { kind: "shifted"; name: string };

/** A rule's read side: its template (with bindings) and its condition on the copy. */
export function splitCondition(read: string): [string, Condition] {
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
export function unbound(read: string): string {
  const q = read.indexOf("?");
  const path = q < 0 ? read : read.slice(0, q);
  const query = q < 0 ? "" : read.slice(q).replace(BINDING, "*");
  return path.replace(BINDING, ":id") + query;
}
