import type { CacheEntry } from "../../core/entries/entry.ts";
import {
  mayServeStale,
  type RequestDirectives,
  sharedWithAuthorization,
  variantSuffix,
  variantSuffixAsync,
} from "../http-caching/rules.ts";
import { isVaryRecord, type ResponseMeta, storedCacheControl } from "./types.ts";

/** What a request says that decides whether a stored response may answer it. */
export interface Asking {
  directives: RequestDirectives;
  /** Whether it carries credentials (RFC 9111 3.5). */
  authorization: boolean;
}

/** A request with nothing to say about caching and no credentials: the fast path's. */
export const PLAIN: Asking = {
  directives: { noCache: false, noStore: false, onlyIfCached: false },
  authorization: false,
};

/**
 * Whether a stored response may answer a request, and how: the proxy's one decision, made
 * the same way by the runtime's fast path and by the app.
 * - `hit`: fresh, and the request accepts it;
 * - `stale`: served stale now, with `refresh` when its stale-while-revalidate window asks
 *   for a background refresh (RFC 5861 3), without when the client's max-stale accepts it
 *   (RFC 9111 5.2.1.2);
 * - `forward`: the origin must be asked; `fwd` says why (the client wants a fresher one,
 *   or it is too stale), and `fallback` whether it may still answer should the origin fail
 *   (stale-if-error).
 */
export type Decision =
  | { kind: "hit" }
  | { kind: "stale"; refresh: boolean }
  | { kind: "forward"; fwd: "request" | "stale"; fallback: boolean };

export function decide(entry: CacheEntry, asking: Asking, now: number): Decision {
  if (asking.authorization && !sharedWithAuthorization(storedCacheControl(entry))) {
    // RFC 9111 3.5: only a response the origin marked shareable answers a request that
    // carries credentials.
    return { kind: "forward", fwd: "request", fallback: false };
  }
  const meta = entry.meta as ResponseMeta;
  const d = asking.directives;
  const age = (now - entry.createdAt) / 1000;
  const fallback = now < entry.freshUntil + (meta?.sie ?? 0);
  if (
    d.noCache ||
    (d.maxAge !== undefined && age > d.maxAge) ||
    (d.minFresh !== undefined && (entry.freshUntil - now) / 1000 < d.minFresh)
  ) {
    // RFC 9111 5.2.1: the client asked for a fresher response.
    return { kind: "forward", fwd: "request", fallback };
  }
  if (entry.freshUntil > now) return { kind: "hit" };
  if (now < entry.freshUntil + (meta?.swr ?? 0)) return { kind: "stale", refresh: true };
  if (
    d.maxStale !== undefined &&
    (now - entry.freshUntil) / 1000 <= d.maxStale &&
    mayServeStale(storedCacheControl(entry))
  ) {
    return { kind: "stale", refresh: false };
  }
  return { kind: "forward", fwd: "stale", fallback };
}

type Header = (name: string) => string | null | undefined;

/**
 * The key of the stored response a request selects, given what a URL's key holds (RFC 9111
 * 4.1): the URL's key itself, or, where a Vary record stands there, the key of the variant
 * the request's headers name; undefined when that key needs a digest (a secret or a long
 * header value), which takes an await.
 */
function variantKey(base: string, found: CacheEntry | undefined, header: Header) {
  if (!found || !isVaryRecord(found)) return base;
  const suffix = variantSuffix(found.meta.varyRecord, header);
  return suffix === undefined ? undefined : base + suffix;
}

/**
 * The stored response a request selects under a URL's key (see variantKey), read with
 * `lookup`; `vary` is the Vary record's names where one stood there (a miss is then a
 * `vary-miss`).
 */
export async function selectVariant(
  base: string,
  header: Header,
  lookup: (key: string) => Promise<CacheEntry | undefined>,
): Promise<{ key: string; entry: CacheEntry | undefined; vary: string[] | undefined }> {
  const found = await lookup(base);
  if (!found || !isVaryRecord(found)) return { key: base, entry: found, vary: undefined };
  const key =
    variantKey(base, found, header) ??
    base + (await variantSuffixAsync(found.meta.varyRecord, header));
  return { key, entry: await lookup(key), vary: found.meta.varyRecord };
}

/**
 * `selectVariant` for the synchronous fast path, over `peek`: undefined where the variant's
 * key needs a digest, which only the app computes.
 */
export function selectVariantNow(
  base: string,
  header: Header,
  peek: (key: string) => CacheEntry | undefined,
): { key: string; entry: CacheEntry | undefined } | undefined {
  const found = peek(base);
  const key = variantKey(base, found, header);
  if (key === undefined) return undefined;
  return { key, entry: key === base ? found : peek(key) };
}
