import { compareValues } from "./predicate.ts";

/**
 * Intervals of column values, found by a value they contain: the lists a write's row may
 * sort into, without visiting the others. A treap (a binary search tree kept balanced by
 * random priorities) ordered by each interval's low end, each node knowing the highest
 * high end below it, so a search skips every subtree that ends before the value: a stab
 * costs O(log n + found), an add or a remove O(log n) expected.
 *
 * Values are ordered as the planner compares them (`compareValues`: SQLite's order of
 * NULL, numbers, text, the rest); `BELOW` and `ABOVE` are the ends of an open side.
 */

export const BELOW: unique symbol = Symbol("below every value");
export const ABOVE: unique symbol = Symbol("above every value");
export type Bound = unknown;

/** compareValues, with BELOW and ABOVE at the ends. */
export function compareBounds(a: Bound, b: Bound): number {
  if (a === b) return 0;
  if (a === BELOW || b === ABOVE) return -1;
  if (a === ABOVE || b === BELOW) return 1;
  return compareValues(a, b);
}

interface Node<T> {
  readonly low: Bound;
  readonly high: Bound;
  readonly item: T;
  /** Ties between equal low ends: the order of adding. */
  readonly order: number;
  readonly priority: number;
  /** Still in the index (a handle removed twice is removed once). */
  live: boolean;
  left: Node<T> | undefined;
  right: Node<T> | undefined;
  /** The highest high end in this subtree. */
  max: Bound;
}

/** What `add` returns, for `remove`. */
export type IntervalHandle = object;

export class IntervalIndex<T> {
  #root: Node<T> | undefined;
  #added = 0;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Files `item` under [low, high] (both ends inclusive). */
  add(low: Bound, high: Bound, item: T): IntervalHandle {
    const node: Node<T> = {
      low,
      high,
      item,
      order: this.#added++,
      priority: Math.random(),
      live: true,
      left: undefined,
      right: undefined,
      max: high,
    };
    this.#root = insert(this.#root, node);
    this.#size++;
    return node;
  }

  remove(handle: IntervalHandle): void {
    const node = handle as Node<T>;
    if (!node.live) return;
    node.live = false;
    this.#root = remove(this.#root, node);
    this.#size--;
  }

  /** Adds each item whose interval holds `value` to `into` (the planner's list gathers them). */
  stabInto(value: unknown, into: T[]): void {
    const stack: Node<T>[] = [];
    let node = this.#root;
    while (node || stack.length > 0) {
      if (node) {
        if (compareBounds(node.max, value) < 0) {
          node = undefined; // everything here ends before the value
          continue;
        }
        stack.push(node);
        node = node.left;
        continue;
      }
      const top = stack.pop()!;
      // What is left (this node, its right subtree, the nodes on the stack and theirs) comes
      // after it in order: all start past the value.
      if (compareBounds(top.low, value) > 0) return;
      if (compareBounds(top.high, value) >= 0) into.push(top.item);
      node = top.right;
    }
  }
}

function precedes<T>(a: Node<T>, b: Node<T>): boolean {
  const c = compareBounds(a.low, b.low);
  return c < 0 || (c === 0 && a.order < b.order);
}

function update<T>(node: Node<T>): Node<T> {
  let max = node.high;
  if (node.left && compareBounds(node.left.max, max) > 0) max = node.left.max;
  if (node.right && compareBounds(node.right.max, max) > 0) max = node.right.max;
  node.max = max;
  return node;
}

function insert<T>(root: Node<T> | undefined, node: Node<T>): Node<T> {
  if (!root) return node;
  if (precedes(node, root)) {
    root.left = insert(root.left, node);
    if (root.left.priority > root.priority) return rotateRight(root);
  } else {
    root.right = insert(root.right, node);
    if (root.right.priority > root.priority) return rotateLeft(root);
  }
  return update(root);
}

function remove<T>(root: Node<T> | undefined, node: Node<T>): Node<T> | undefined {
  if (!root) return undefined;
  if (root === node) return merge(root.left, root.right);
  if (precedes(node, root)) root.left = remove(root.left, node);
  else root.right = remove(root.right, node);
  return update(root);
}

/** Joins two treaps, every node of `a` before every node of `b`. */
function merge<T>(a: Node<T> | undefined, b: Node<T> | undefined): Node<T> | undefined {
  if (!a) return b;
  if (!b) return a;
  if (a.priority > b.priority) {
    a.right = merge(a.right, b);
    return update(a);
  }
  b.left = merge(a, b.left);
  return update(b);
}

function rotateRight<T>(root: Node<T>): Node<T> {
  const left = root.left!;
  root.left = left.right;
  left.right = update(root);
  return update(left);
}

function rotateLeft<T>(root: Node<T>): Node<T> {
  const right = root.right!;
  root.right = right.left;
  right.left = update(root);
  return update(right);
}
