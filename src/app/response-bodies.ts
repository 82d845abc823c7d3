import type { EntryInit } from "../core/cache/index.ts";
import { type CacheEntry, type DeferredBody, deferredBody } from "../core/entries/entry.ts";
import { plainJson, plainJsonSize } from "../core/library/plain-json.ts";

/**
 * The data API's response bodies: JSON made once and, for the bodies a write patches,
 * remembered parsed (the last few hundred), or made only when first read.
 */

const decoder = new TextDecoder();
const encoder = new TextEncoder();
/** Bodies parsed lately, by the body's bytes, the oldest first: see parseBody. */
const parsed = new Map<Uint8Array, unknown>();
const PARSED = 512;
/** Bodies past this size are parsed when a write needs them, not remembered when made. */
const REMEMBERED_BYTES = 16 * 1024;

/**
 * A cached body, parsed; never changed by its callers. A write parses each entry it
 * patches, and the pages next to each: the last few hundred are remembered, those this
 * API made (bodyOf) from the start, so an entry patched write after write is not parsed
 * again each time (an entry's body is one object from the store until it is replaced).
 */
export function parseBody(entry: CacheEntry): unknown {
  const deferred = deferredBody(entry);
  if (deferred) return deferred.value;
  let value = parsed.get(entry.body);
  if (value === undefined) {
    value = JSON.parse(decoder.decode(entry.body));
    remember(entry.body, value);
  }
  return value;
}

function remember(body: Uint8Array, value: unknown): void {
  if (parsed.size >= PARSED) parsed.delete(parsed.keys().next().value!);
  parsed.set(body, value);
}

/**
 * The bytes of a response this API stores, remembered with `value` for parseBody when the
 * bytes parse back to exactly it (plainJson): a patch then reads what a parse would give.
 */
export function bodyOf(value: unknown): Uint8Array {
  const body = encoder.encode(JSON.stringify(value));
  if (body.byteLength <= REMEMBERED_BYTES && plainJson(value)) remember(body, value);
  return body;
}

/** bodyOf of a value plainJson holds for. */
function remembered(value: unknown): Uint8Array {
  const body = encoder.encode(JSON.stringify(value));
  if (body.byteLength <= REMEMBERED_BYTES) remember(body, value);
  return body;
}

/**
 * A patched response's body, made when first read (see DeferredBody): a write that patches
 * it again before then takes `value` back (parseBody), which it can only when the bytes
 * parse back to exactly it.
 */
export function patchedBody(value: unknown): Uint8Array | DeferredBody {
  const size = plainJsonSize(value);
  if (!size) return bodyOf(value);
  return { value, encode: () => remembered(value), length: size.json, heap: size.heap };
}

/** `was`'s body and ETag for a response that shows the same: not made again if not made yet. */
export function sameBody(was: CacheEntry): Pick<EntryInit, "body" | "etag"> {
  const later = deferredBody(was);
  return later ? { body: later } : { body: was.body, etag: was.etag };
}
