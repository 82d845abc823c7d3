import type { Cache, EntryInit } from "../../core/cache/index.ts";
import type { LogPosition } from "../../core/change-log/contract.ts";
import {
  type Freshness,
  type HeaderRecord,
  type PolicyClass,
  variantSuffixAsync,
} from "../http-caching/rules.ts";
import { baseKey } from "./routes.ts";
import {
  type Ctx,
  isVaryRecord,
  type Loaded,
  type ResponseMeta,
  URL_TAG,
  USER_TAG,
  VARY_RECORD,
  type VaryMeta,
} from "./types.ts";

/**
 * How long an entry with a validator is kept after it went stale, so the next request
 * revalidates it (a cheap 304) instead of fetching it whole. Never served unvalidated.
 */
const REVALIDATE_KEEP_MS = 3_600_000;

/** A response to store, with what its policy says of it. */
export interface StoreInit {
  body: Uint8Array;
  status: number;
  headers: HeaderRecord;
  etag: string;
  tags: string[];
  policy: InstanceType<PolicyClass>;
  fresh: Freshness;
  vary: string[] | undefined;
  /** Edgecache-Cache-Control, if the origin sent one. */
  targeted: string | undefined;
  originStatus: number;
}

/**
 * Stores a response under its variant's key (and the URL's Vary record), fence-checked:
 * `since` is the log position at which its origin request began.
 */
export async function store(
  cache: Cache,
  now: () => number,
  ctx: Ctx,
  since: LogPosition,
  s: StoreInit,
): Promise<Loaded & { kind: "entry" }> {
  const base = baseKey(ctx.target, ctx.host);
  const key = s.vary ? base + (await variantSuffixAsync(s.vary, (n) => ctx.headers.get(n))) : base;
  const keep = Math.max(s.fresh.swr, s.fresh.sie, s.fresh.validators ? REVALIDATE_KEEP_MS : 0);
  const meta: ResponseMeta = {
    policy: s.policy.toObject(),
    swr: s.fresh.swr,
    sie: s.fresh.sie,
    ...(s.vary && { vary: s.vary }),
    ...(s.targeted !== undefined && { targeted: s.targeted }),
  };
  const init: EntryInit = {
    body: s.body,
    status: s.status,
    headers: s.headers,
    etag: s.etag,
    tags: s.tags,
    meta,
    ttl: s.fresh.fresh,
    staleWhileRevalidate: keep,
    age: s.fresh.age,
  };
  const { entry, stored, unstored } = await cache.storeLoaded(key, init, since);
  if (stored && s.vary) {
    // The URL's key now says which request headers select its variants.
    const until = entry.staleUntil - now();
    const record = await cache.getEntry(base, { count: false });
    const held = record && isVaryRecord(record) ? record : undefined;
    const recordUntil = held ? held.staleUntil - now() : 0;
    // The record carries its variants' purge tags too, so a tag purge takes it with them
    // rather than leaving it to point at variants that are gone.
    const tags = new Set([URL_TAG + ctx.target, VARY_RECORD, ...(held?.tags ?? [])]);
    for (const tag of s.tags) if (tag.startsWith(USER_TAG)) tags.add(tag);
    await cache.storeLoaded(
      base,
      {
        body: new Uint8Array(),
        etag: "",
        tags: [...tags],
        meta: { varyRecord: s.vary } satisfies VaryMeta,
        ttl: Math.max(until, recordUntil),
        staleWhileRevalidate: 0,
      },
      since,
    );
  }
  return { kind: "entry", entry, key, stored, unstored, originStatus: s.originStatus };
}
