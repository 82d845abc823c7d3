import { NUMBER_BYTES, OBJECT_BYTES, SLOT_BYTES, STRING_BYTES } from "../entries/heap-size.ts";

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

function walk(value: unknown, depth: number, size: JsonSize | undefined): boolean {
  switch (typeof value) {
    case "string":
      if (size) {
        size.json += value.length + 2;
        size.heap += STRING_BYTES + 2 * value.length;
      }
      return true;
    case "boolean":
      if (size) size.json += 5;
      return true;
    case "number":
      if (!Number.isFinite(value) || Object.is(value, -0)) return false;
      if (size) {
        size.json += NUMBER_CHARS;
        size.heap += NUMBER_BYTES;
      }
      return true;
    case "object":
      break;
    default:
      return false;
  }
  if (value === null) {
    if (size) size.json += 4;
    return true;
  }
  if (depth >= PLAIN_DEPTH) return false;
  if (size) {
    size.json += 2;
    size.heap += OBJECT_BYTES;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (!walk(value[i], depth + 1, size)) return false;
    }
    if (size) {
      size.json += value.length;
      size.heap += SLOT_BYTES * value.length;
    }
    return true;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  for (const key in value) {
    if (!walk((value as Record<string, unknown>)[key], depth + 1, size)) return false;
    if (size) {
      size.json += key.length + 4;
      size.heap += SLOT_BYTES + STRING_BYTES + 2 * key.length;
    }
  }
  return true;
}
