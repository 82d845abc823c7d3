import { CONTAINING, type Condition, FIELD_NAME, SHIFTED, type Write } from "./rules.ts";
import { templateOf } from "./template.ts";

/**
 * What a rule's read side may ask of a read's cached copy besides its template, and whether
 * a copy meets it: that it holds one of the write's values (`containing $k`), or that its
 * rows are in the order of a field the write moved its row in, where the row moved
 * (`shifted by $name`).
 */

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

/**
 * `/api/users?team=* containing $1`: the pattern of reads of `template` whose cached copy
 * holds the write's first URL value, when `target`'s does; undefined when it holds none.
 */
export function containing(
  template: string,
  target: string,
  values: readonly string[],
  copies: Copies,
): string | undefined {
  const k = values.findIndex((v) => v !== "" && copies.holds(target, v));
  return k < 0 ? undefined : `${template}${CONTAINING}${k + 1}`;
}

/** Whether a read's copy meets a rule's condition, for a write with these URL values. */
export function meets(
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
export function shiftedBy(
  template: string,
  target: string,
  write: Write,
  copies: Copies,
): string[] {
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
