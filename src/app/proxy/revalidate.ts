import type CachePolicy from "http-cache-semantics";
import type { CacheEntry } from "../../core/entries/entry.ts";
import {
  type FreshnessOptions,
  freshness,
  type HeaderRecord,
  OWN_TARGETED_FIELD,
  type PolicyClass,
  responseTags,
  targetedCacheControl,
} from "../http-caching/rules.ts";
import { INTERNAL_RESPONSE_HEADERS } from "./headers.ts";
import type { StoreInit } from "./store.ts";
import { entryTags, originHeadersOf, type ResponseMeta } from "./types.ts";

/** Stored fields a 304 does not replace: they describe the body it did not send, or are ours. */
const NOT_UPDATED_BY_304 = new Set([
  "content-length",
  "content-encoding",
  "content-range",
  "etag",
  "age",
  "via",
  ...INTERNAL_RESPONSE_HEADERS,
]);

/** A stale entry held while its origin is asked again, with the policy it was stored with. */
export interface Held {
  entry: CacheEntry;
  meta: ResponseMeta;
  policy: CachePolicy;
}

export function held(Policy: PolicyClass, entry: CacheEntry | undefined): Held | undefined {
  const meta = entry?.meta as ResponseMeta | undefined;
  if (!entry || !meta) return undefined;
  return { entry, meta, policy: Policy.fromObject(meta.policy) };
}

/**
 * The request as a stored policy is asked about it (revalidation): the same URL and host
 * it was made with, and no Vary'd values, since the cache key has already matched those.
 */
function policyRequestOf(target: string) {
  return { method: "GET", url: target, headers: { host: "edgecache" } };
}

/** RFC 9111 4.3.1: the validators a conditional request for a held entry carries. */
export function setConditional(headers: Headers, h: Held, target: string): void {
  const conditional = h.policy.revalidationHeaders(policyRequestOf(target));
  for (const name of ["if-none-match", "if-modified-since"]) {
    const v = conditional[name];
    if (typeof v === "string") headers.set(name, v);
  }
}

/**
 * What a 304 makes of a held entry (RFC 9111 4.3.4): its headers and freshness updated, to
 * be stored again; undefined when the 304 names another validator, so the stored body
 * cannot be vouched for.
 */
export function revalidated(
  h: Held,
  target: string,
  record: HeaderRecord,
  options: FreshnessOptions,
): StoreInit | undefined {
  // RFC 9213 2.1 on the updated response: the 304's targeted field, else the stored one,
  // decides in place of Cache-Control (a CDN-style 304 repeats `no-store` for browsers).
  const targeted = targetedCacheControl({ ...originHeadersOf(h.entry), ...record });
  const forPolicy = { ...record };
  // A 304 that names no validator answers the conditional request made from this stored
  // response's own validators (RFC 9110 15.4.5: the condition sent did not hold), so it
  // selects that response; without this, RFC 9111 4.3.4's selection finds none and the
  // origin is asked a second time, unconditionally.
  if (record.etag === undefined && record["last-modified"] === undefined) {
    // The stored ETag is the entry's own field ("" for none); Last-Modified is a header.
    if (h.entry.etag) forPolicy.etag = h.entry.etag;
    const lastModified = h.entry.headers["last-modified"];
    if (lastModified !== undefined) forPolicy["last-modified"] = lastModified;
  }
  if (targeted !== undefined) {
    forPolicy["cache-control"] = targeted;
    delete forPolicy.expires;
  }
  const { policy, matches } = h.policy.revalidatedPolicy(policyRequestOf(target), {
    status: 304,
    headers: forPolicy,
  });
  if (!matches) return undefined;
  const merged = policy.toObject().resh as HeaderRecord;
  // RFC 9111 3.2: the 304's fields replace or add to the stored ones, except those
  // that describe the body it did not send (and ours: Via, Age).
  const updated = { ...h.entry.headers };
  for (const [name, value] of Object.entries(record)) {
    if (!NOT_UPDATED_BY_304.has(name)) updated[name] = value;
  }
  const fresh = freshness(policy, { status: h.entry.status, headers: merged }, options);
  const tags = record["cache-tag"] || record["surrogate-key"] ? responseTags(record) : null;
  return {
    body: h.entry.body,
    status: h.entry.status,
    headers: updated,
    etag: h.entry.etag,
    tags: tags ? entryTags(target, tags) : h.entry.tags,
    policy,
    fresh,
    vary: h.meta.vary,
    targeted: record[OWN_TARGETED_FIELD] ?? h.meta.targeted,
    originStatus: 304,
  };
}
