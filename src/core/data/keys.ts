import { describeValue, EdgecacheError } from "../errors.ts";

/**
 * The cache key of a GET request: method, path and the query parameters sorted, so that
 * `?b=2&a=1` and `?a=1&b=2` share an entry. The host is not part of it (one data API).
 */
export function requestKey(pathname: string, search: string): string {
  if (search.length <= 1) return `GET ${pathname}`;
  const params = new URLSearchParams(search);
  params.sort();
  const query = params.toString();
  return query ? `GET ${pathname}?${query}` : `GET ${pathname}`;
}

/** The path and query a key was made from (for refetching it). */
export function keyPath(key: string): string | undefined {
  return key.startsWith("GET ") ? key.slice(4) : undefined;
}

/** What `Cache.key` and `Namespace.key` join: a string, or a number as `String` writes it. */
export type KeyPart = string | number | bigint;

/**
 * Joins parts with ":", so that two different lists of parts never make one key.
 *
 * Parts are usually data (slugs, emails, URLs), so a ":" in one is encoded, not refused:
 * refusing would make every caller escape by hand, and a caller that escapes differently
 * when invalidating misses the entry. Only "%" (as %25) and ":" (as %3A) are encoded, so
 * keys stay readable and a part without them is written as is. `*` and `?` are kept:
 * `key("feed", "*", id)` builds a pattern for `invalidate({ patterns })`.
 *
 * Refused, with E_BAD_OPTION: no parts, an empty string (a missing id, most likely),
 * NaN or an infinite number, and any other type (`undefined`, `null`, objects), whose
 * `String` would silently name one entry for many values.
 *
 * @example
 * buildKey(["content", "post", 123]); // "content:post:123"
 * buildKey(["page", "https://x.dev/a"]); // "page:https%3A//x.dev/a"
 */
export function buildKey(parts: readonly unknown[]): string {
  if (parts.length === 0) refuse("parts", "at least one part", "none");
  let key = "";
  for (const [i, part] of parts.entries()) {
    if (i > 0) key += ":";
    key += keyPart(part, i);
  }
  return key;
}

function keyPart(part: unknown, i: number): string {
  if (typeof part === "string" && part !== "") {
    return /[%:]/.test(part) ? part.replace(/%/g, "%25").replace(/:/g, "%3A") : part;
  }
  if ((typeof part === "number" && Number.isFinite(part)) || typeof part === "bigint") {
    return String(part);
  }
  refuse(`parts[${i}]`, "a non-empty string, a finite number or a bigint", describeValue(part));
}

function refuse(name: string, expected: string, got: string): never {
  throw new EdgecacheError("E_BAD_OPTION", "key", `${name}: expected ${expected}, got ${got}`);
}
