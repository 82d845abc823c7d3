import { NUMBER_BYTES, OBJECT_BYTES, SLOT_BYTES, STRING_BYTES } from "./heap-size.ts";

/**
 * Whether JSON.parse(JSON.stringify(value)) is a value equal to `value`: text, booleans,
 * null, finite numbers but -0, and arrays and plain objects of those. Not a Date (a
 * string once parsed), a Buffer, undefined (left out) or NaN (null).
 */
export function plainJson(value: unknown): boolean {
  return walk(value, 0, undefined);
}

/** What a plain JSON value takes (see plainJsonSize). */
export interface JsonSize {
  /**
   * Its JSON's length, roughly: text as it is written (escapes and UTF-8 widths left out),
   * a number as 8 characters.
   */
  json: number;
  /** The heap it takes, as `heapBytes` counts it but with all text at two bytes a character. */
  heap: number;
}

/**
 * What `value` takes as JSON and in the heap, if plainJson holds for it, else undefined:
 * one walk for both.
 */
export function plainJsonSize(value: unknown): JsonSize | undefined {
  const size = { json: 0, heap: 0 };
  return walk(value, 0, size) ? size : undefined;
}

/** A row, a view's joined rows and their values: deeper is not checked, only parsed. */
const PLAIN_DEPTH = 8;
/** A number's JSON, counted: an id, an amount, a time in ms. */
const NUMBER_CHARS = 8;

/**
 * What `walk` found of an object it walked whole (a row, most often): its size, and the
 * depth of its deepest object below it (0: it holds no object). A patched page keeps the
 * rows it did not change as the same objects, so sizing it again walks the changed ones
 * only. A value is never changed once made (the data API's rows, parsed or the source's).
 */
interface Walked {
  json: number;
  heap: number;
  height: number;
}
const walked = new WeakMap<object, Walked>();

function walk(value: unknown, depth: number, size: JsonSize | undefined): boolean {
  return height(value, depth, size ?? { json: 0, heap: 0 }) !== NOT_PLAIN;
}

/**
 * Adds `value`'s size to `size`, and returns the depth of its deepest object below it (-1
 * for a primitive), or NOT_PLAIN.
 */
function height(value: unknown, depth: number, size: JsonSize): number {
  switch (typeof value) {
    case "string":
      size.json += value.length + 2;
      size.heap += STRING_BYTES + 2 * value.length;
      return -1;
    case "boolean":
      size.json += 5;
      return -1;
    case "number":
      if (!Number.isFinite(value) || Object.is(value, -0)) return NOT_PLAIN;
      size.json += NUMBER_CHARS;
      size.heap += NUMBER_BYTES;
      return -1;
    case "object":
      break;
    default:
      return NOT_PLAIN;
  }
  if (value === null) {
    size.json += 4;
    return -1;
  }
  if (depth >= PLAIN_DEPTH) return NOT_PLAIN;
  const known = walked.get(value);
  if (known) {
    if (depth + known.height >= PLAIN_DEPTH) return NOT_PLAIN;
    size.json += known.json;
    size.heap += known.heap;
    return known.height;
  }
  const own: Walked = { json: 2, heap: OBJECT_BYTES, height: 0 };
  let below = -1;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const h = height(value[i], depth + 1, own);
      if (h === NOT_PLAIN) return NOT_PLAIN;
      if (h > below) below = h;
    }
    own.json += value.length;
    own.heap += SLOT_BYTES * value.length;
  } else {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) return NOT_PLAIN;
    for (const key in value) {
      const h = height((value as Record<string, unknown>)[key], depth + 1, own);
      if (h === NOT_PLAIN) return NOT_PLAIN;
      if (h > below) below = h;
      own.json += key.length + 4;
      own.heap += SLOT_BYTES + STRING_BYTES + 2 * key.length;
    }
  }
  // What is made anew around kept rows (a page's value, its data array) is not remembered.
  own.height = below + 1;
  if (depth > 0 && !Array.isArray(value)) walked.set(value, own);
  size.json += own.json;
  size.heap += own.heap;
  return below + 1;
}

const NOT_PLAIN = -2;
