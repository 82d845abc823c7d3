import { type CacheEntry, deferredBody } from "./entry.ts";

/**
 * Heap an entry held in memory costs beside what `heapBytes` counts of its fields: the entry
 * object and its number fields, its body's Uint8Array and ArrayBuffer (and the allocation
 * behind them), the store's slot for it and its place in the store's map and lists. Measured
 * on Node 20 (V8 11): 945 bytes of heap per entry of a two-header, one-tag, 33-byte response
 * held in the memory tier, of which `heapBytes` counts some 380; rounded up.
 */
export const ENTRY_OVERHEAD = 640;

/** Object and array headers, as V8 lays them out (map, properties, elements, length). */
export const OBJECT_BYTES = 32;
export const STRING_BYTES = 16;
/** A property or element slot, plus the key's share of a dictionary or descriptor entry. */
export const SLOT_BYTES = 16;
/** A number not stored as a small integer (a time in ms, a fraction) is a boxed double. */
export const NUMBER_BYTES = 16;
/** A character past Latin-1: a string holding one takes two bytes a character. */
const WIDE = /[^\0-\xff]/;
/** Past this depth a value is not walked (meta is JSON in practice, and never this deep). */
const MAX_DEPTH = 16;

/**
 * The heap a value takes, roughly and on the high side: strings by their length, arrays and
 * objects by their slots and what they hold. Shared values (a headers object many entries
 * point to) are counted for each, so a sum over entries is a bound, not an exact figure.
 *
 * @example
 * heapBytes("users#12") // 24
 * heapBytes({ resource: "users" }) // 32 + 16 + (16 + 8) + (16 + 5) = 93
 */
export function heapBytes(value: unknown, depth = 0): number {
  switch (typeof value) {
    case "string":
      // One byte a character for Latin-1 text, two for the rest: counted as two past 0xff.
      return STRING_BYTES + (WIDE.test(value) ? value.length * 2 : value.length);
    case "number":
      return NUMBER_BYTES;
    case "bigint":
      return NUMBER_BYTES + 8;
    case "object":
      break;
    default:
      return 0; // booleans, undefined, symbols: shared
  }
  if (value === null || depth >= MAX_DEPTH) return 0;
  if (ArrayBuffer.isView(value)) return OBJECT_BYTES * 4 + value.byteLength;
  if (value instanceof ArrayBuffer) return OBJECT_BYTES * 3 + value.byteLength;
  let bytes = OBJECT_BYTES;
  if (Array.isArray(value)) {
    for (const item of value) bytes += SLOT_BYTES + heapBytes(item, depth + 1);
    return bytes;
  }
  for (const key in value) {
    bytes +=
      SLOT_BYTES + heapBytes(key) + heapBytes((value as Record<string, unknown>)[key], depth + 1);
  }
  return bytes;
}

/** A strong ETag (`"` and 24 hex digits and `"`), as heapBytes counts it. */
const ETAG_BYTES = STRING_BYTES + 26;

/**
 * What holding `entry` under `key` costs the heap, roughly and on the high side: the bound a
 * memory tier counts against its `maxBytes`, so that bound is one on the memory it takes.
 * The entry's log position is not counted: one object is shared by every entry loaded
 * between two writes.
 */
export function heldBytes(key: string, entry: CacheEntry): number {
  const deferred = deferredBody(entry);
  return (
    ENTRY_OVERHEAD +
    (deferred ? deferred.heap + ETAG_BYTES : entry.body.byteLength + heapBytes(entry.etag)) +
    heapBytes(key) +
    heapBytes(entry.headers) +
    heapBytes(entry.tags) +
    (entry.lists ? heapBytes(entry.lists) : 0) +
    (entry.meta === undefined ? 0 : heapBytes(entry.meta))
  );
}
