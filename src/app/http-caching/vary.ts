import { sha256Hex } from "../../core/digest.ts";

/**
 * Vary (RFC 9111 4.1) for the proxy: the request headers a stored response was selected
 * by, and the part of its cache key that tells one variant from another, their values
 * normalized where the origin treats them alike. Portable: no Node.js API.
 */

/** An HTTP token (RFC 9110 5.6.2), lower-cased. */
export const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
/** Vary'd header values longer than this are keyed by a digest, not spelled out. */
const MAX_VARY_VALUE = 256;
/** Request headers keyed by a digest whatever their length: they are secrets. */
const SECRET_HEADERS = new Set(["authorization", "cookie", "proxy-authorization"]);

/**
 * Vary (RFC 9111 4.1): the request header names a stored response was selected by, sorted
 * and lowercased; undefined when there are none; "*" when it can never match (a `*`, or a
 * name that is not a token).
 */
export function varyNames(vary: string | null | undefined): string[] | "*" | undefined {
  if (!vary) return undefined;
  const names = new Set<string>();
  for (const part of vary.split(",")) {
    const name = part.trim().toLowerCase();
    if (name === "") continue;
    if (name === "*" || !TOKEN.test(name)) return "*";
    names.add(name);
  }
  return names.size ? [...names].sort() : undefined;
}

/** RFC 9111 4.1 allows normalizing: whitespace around list commas and runs of spaces. */
function normalizeValue(value: string): string {
  return value
    .split(",")
    .map((v) => v.trim().replace(/\s+/g, " "))
    .join(",");
}

/**
 * A weighted list (RFC 9110 12.4.2): its members lower-cased, without those of q=0, best
 * first; members of equal weight in the order sent.
 */
function weighted(value: string): string[] {
  return weightedGroups(value).flat();
}

/**
 * A weighted list's members (lower-cased, none of q=0, each once at its best weight) in
 * groups of equal weight, best first, each group in the order sent.
 */
function weightedGroups(value: string): string[][] {
  const items: { name: string; q: number; at: number }[] = [];
  for (const [at, part] of value.split(",").entries()) {
    const [name = "", ...params] = part.split(";").map((p) => p.trim());
    if (!name) continue;
    const qParam = params.find((p) => /^q\s*=/i.test(p));
    const q = qParam === undefined ? 1 : Number(qParam.slice(qParam.indexOf("=") + 1).trim());
    items.push({ name: name.toLowerCase(), q: Number.isFinite(q) ? q : 1, at });
  }
  const seen = new Set<string>();
  const groups: string[][] = [];
  let q = Number.NaN;
  for (const item of items.filter((i) => i.q > 0).sort((a, b) => b.q - a.q || a.at - b.at)) {
    if (seen.has(item.name)) continue;
    seen.add(item.name);
    if (item.q !== q) groups.push([]);
    q = item.q;
    groups.at(-1)!.push(item.name);
  }
  return groups;
}

/**
 * The value of a Vary'd request header as the key holds it (RFC 9111 4.1 allows normalizing
 * what the origin treats alike). Accept-Encoding: the set of codings accepted, sorted
 * ("gzip, deflate, br" and "br;q=1.0, gzip;q=0.8, deflate" are one entry; every client of
 * it accepts what the origin chose). Accept-Language: the languages in order of preference,
 * lower-cased, without weights, those of equal weight sorted: RFC 9110 12.5.4 has the
 * weights say the preference, order between equals "cannot be relied upon", so `en, de` and
 * `de, en` ask the same. Others: whitespace normalized.
 */
function normalizeVaried(name: string, value: string): string {
  if (name === "accept-encoding") {
    const codings = weighted(value)
      .map((c) => (c === "x-gzip" ? "gzip" : c))
      .filter((c) => c !== "identity");
    return [...new Set(codings)].sort().join(",");
  }
  if (name === "accept-language") {
    return weightedGroups(value)
      .map((group) => group.sort().join("+"))
      .join(",");
  }
  return normalizeValue(value);
}

type HeaderGetter = (name: string) => string | null | undefined;

/**
 * One Vary'd header's part of a variant key: `name!` when absent, `name=value` (normalized,
 * percent-encoded), or `name#digest` for a secret or a long value; `digest` undefined
 * means the caller cannot digest (synchronously), and the part is undefined.
 */
function varyPart(name: string, get: HeaderGetter, digest?: string): string | undefined {
  const raw = get(name);
  if (raw === null || raw === undefined) return `${name}!;`;
  const value = normalizeVaried(name, raw);
  if (SECRET_HEADERS.has(name) || value.length > MAX_VARY_VALUE) {
    return digest === undefined ? undefined : `${name}#${digest};`;
  }
  return `${name}=${encodeURIComponent(value)};`;
}

/**
 * The suffix that tells one variant of a URL from another: each Vary'd request header
 * with its normalized value. Undefined when a value must be digested (a secret, or a long
 * value) and `digests` lacks it: `variantSuffixAsync` computes them.
 */
export function variantSuffix(
  names: readonly string[],
  get: HeaderGetter,
  digests?: ReadonlyMap<string, string>,
): string | undefined {
  let out = " vary:";
  for (const name of names) {
    const part = varyPart(name, get, digests?.get(name));
    if (part === undefined) return undefined;
    out += part;
  }
  return out;
}

/** `variantSuffix`, digesting secrets and long values with SHA-256. */
export async function variantSuffixAsync(
  names: readonly string[],
  get: HeaderGetter,
): Promise<string> {
  const digests = new Map<string, string>();
  for (const name of names) {
    if (varyPart(name, get) === undefined) {
      digests.set(name, await sha256Hex(normalizeVaried(name, get(name)!)));
    }
  }
  return variantSuffix(names, get, digests)!;
}
