import { parse, stringify } from "devalue";
import type { CacheEntry } from "../entries/entry.ts";
import { EdgecacheError } from "../errors.ts";

/**
 * Values of the library API (get, set, getOrSet) as entry bodies, and back.
 *
 * Written with devalue, so what plain JSON changes silently comes back as it went in:
 * Dates, BigInts, `undefined` (also as a property), Maps, Sets, RegExps, NaN, the
 * infinities, -0, typed arrays, and repeated or cyclic references. What it cannot restore
 * (a class instance, a function, a symbol) is refused with E_BAD_VALUE, never stored as
 * something else. Entries written as plain JSON (before devalue, or by other code) still
 * read back.
 *
 * Reads share one decoded value per entry: a memory hit neither decodes nor parses. So that
 * no caller can change what others read, a shared value is deep-frozen; a value holding a
 * Map, Set, Date or typed array (whose contents freezing cannot protect) is decoded afresh
 * for each read instead, a copy the caller owns.
 */
export const VALUE_TYPE = "application/x-devalue";

const utf8 = new TextDecoder();
/**
 * Where an entry keeps its decoded value, or COPY when each read must decode its own: a
 * property under a symbol, not a WeakMap, since every hit reads it and a property is the
 * cheaper read. Symbol-keyed, it is not serialized with the entry.
 */
const DECODED = Symbol("decoded");
const COPY = Symbol("copy");
type Memo = CacheEntry & { [DECODED]?: unknown };

/** The body and headers an entry stores for `value`; throws E_BAD_VALUE if it cannot. */
export function encodeValue(
  key: string,
  value: unknown,
): { body: string; headers: Record<string, string> } {
  try {
    return { body: stringify(value), headers: { "content-type": VALUE_TYPE } };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new EdgecacheError(
      "E_BAD_VALUE",
      "cache",
      `the value for "${key}" cannot be cached: ${why} (plain objects, arrays, primitives, Dates, BigInts, Maps, Sets, RegExps and typed arrays can)`,
      { cause: err },
    );
  }
}

/** The value an entry holds: shared and frozen, or a fresh copy (see above). */
export function entryValue<T>(entry: CacheEntry): T {
  const memo = entry as Memo;
  if (DECODED in memo) {
    const value = memo[DECODED];
    return (value === COPY ? decode(entry) : value) as T;
  }
  const value = decode(entry);
  const shared = freezable(value, new Set());
  if (shared) deepFreeze(value);
  Object.defineProperty(memo, DECODED, { value: shared ? value : COPY });
  return value as T;
}

function decode(entry: CacheEntry): unknown {
  const text = utf8.decode(entry.body);
  return entry.headers["content-type"] === VALUE_TYPE ? parse(text) : JSON.parse(text);
}

/** Whether the value holds only primitives, plain objects and arrays: freezing protects it. */
function freezable(value: unknown, seen: Set<object>): boolean {
  if (typeof value !== "object" || value === null || seen.has(value)) return true;
  seen.add(value);
  if (!Array.isArray(value)) {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) return false;
  }
  for (const v of Object.values(value)) if (!freezable(v, seen)) return false;
  return true;
}

function deepFreeze(value: unknown): void {
  if (typeof value !== "object" || value === null || Object.isFrozen(value)) return;
  Object.freeze(value);
  for (const v of Object.values(value)) deepFreeze(v);
}
