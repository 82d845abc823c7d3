import type { Cache } from "../../core/cache/index.ts";
import type { CacheEntry } from "../../core/entries/entry.ts";
import { type ByteSpan, contentRange, joinSpans } from "../http-caching/ranges.ts";
import {
  type CacheRequest,
  cachingHeaders,
  endToEnd,
  type FreshnessOptions,
  freshness,
  newPolicy,
  OWN_TARGETED_FIELD,
  type PolicyClass,
  responseTags,
  toRecord,
  varyNames,
} from "../http-caching/rules.ts";
import { loadHeaders, PER_CLIENT_REQUEST_HEADERS, storedHeaders } from "./headers.ts";
import { isStrong, originRange } from "./partial.ts";
import { held as holding, revalidated, setConditional } from "./revalidate.ts";
import type { Route } from "./routes.ts";
import { type StoreInit, store } from "./store.ts";
import {
  type Ctx,
  ERROR_STATUSES,
  entryTags,
  type Interim,
  type Loaded,
  originHeadersOf,
  USER_TAG,
} from "./types.ts";

/**
 * Sends a request to an origin. Runtimes pass their own (the Node adapter uses node:http,
 * which keeps bodies as sent: `fetch` would decode Content-Encoding).
 */
export type OriginFetch = (
  url: string,
  init: {
    method: string;
    headers: Headers;
    body: ReadableStream<Uint8Array> | null;
    /** Called with each interim (1xx) response before the final one, where the runtime sees them. */
    onInterim?: Interim;
  },
) => Promise<Response>;

/** What loading needs of the proxy: the cache, the origin, the clock and the limits. */
export interface LoadEnv {
  cache: Cache;
  originFetch: OriginFetch;
  Policy: PolicyClass;
  now: () => number;
  /** Largest body stored, bytes. */
  maxSize: number;
  /** Seconds of grace (stale content when the origin fails). */
  grace: number;
  /**
   * Request headers the operator named (forwardHeaders): sent to the origin, and keyed by
   * as if every answer named them in Vary, so no client's value reaches another's answer.
   */
  forward: readonly string[];
}

export function originUrl(ctx: Ctx): string {
  return ctx.route.originUrl.origin + ctx.target;
}

export function freshOptions(env: LoadEnv, route: Route): FreshnessOptions {
  return { defaultTtl: route.ttl, grace: env.grace };
}

/**
 * One origin request for a GET or HEAD: conditional when a stale entry with validators is
 * held (RFC 9111 4.3.1), stored when RFC 9111 3 allows it and it fits.
 */
export async function load(
  env: LoadEnv,
  ctx: Ctx,
  heldEntry: CacheEntry | undefined,
  retry?: readonly string[],
): Promise<Loaded> {
  const { cache } = env;
  const since = cache.position;
  const h = holding(env.Policy, heldEntry);
  // Beside the operator's, the headers the origin said it keys this URL's answers by: safe
  // to send, since every answer stored for it is keyed by them too (checked below).
  const varied = [...(ctx.varied ?? []), ...(h?.meta.vary ?? []), ...(retry ?? [])];
  const headers = loadHeaders(ctx, [...env.forward, ...varied]);
  for (const name of PER_CLIENT_REQUEST_HEADERS) headers.delete(name);
  const asking = originRange(ctx.method, ctx.headers, heldEntry, env.maxSize);
  if (asking.range !== undefined) headers.set("range", asking.range);
  if (asking.ifRange !== undefined) headers.set("if-range", asking.ifRange);
  const request: CacheRequest = { method: "GET", target: ctx.target, headers: ctx.headers };
  if (h && asking.conditional) setConditional(headers, h, ctx.target);
  let response: Response;
  try {
    // A HEAD is fetched as a GET, so the entry it stores serves GETs too.
    response = await cache.measureLoad(() =>
      env.originFetch(originUrl(ctx), {
        method: "GET",
        headers,
        body: null,
        // RFC 9110 15.2: interim responses go to the client that asked, and are never
        // stored; their fields are not the final response's.
        ...(ctx.interim && { onInterim: ctx.interim }),
      }),
    );
  } catch (error) {
    return { kind: "down", error };
  }
  const originStatus = response.status;
  const kept = async (init: StoreInit): Promise<Loaded> => ({
    ...(await store(cache, env.now, ctx, since, init)),
    clientRange: asking.clientRange,
  });
  if (asking.completes && heldEntry && response.status === 206) {
    const whole = await completed(env, heldEntry, asking.completes, response);
    if ("error" in whole) return { kind: "down", error: whole.error };
    // RFC 9111 3.4: joined only under one strong validator; else asked as if none were held.
    if (!whole.response) return load(env, ctx, undefined, retry);
    response = whole.response;
  }
  const resHeaders = endToEnd(response.headers);
  const record = toRecord(resHeaders);

  if (response.status === 304 && h && asking.conditional) {
    void response.body?.cancel().catch(() => {});
    const init = revalidated(h, ctx.target, record, freshOptions(env, ctx.route));
    // RFC 9111 4.3.4: a 304 whose validator is not the stored one's selects nothing for
    // update: ask again, unconditionally.
    if (!init) return load(env, ctx, undefined);
    return kept(init);
  }

  const originVary = varyNames(record.vary);
  const vary = keyedBy(originVary, env.forward);
  if (Array.isArray(originVary) && retry === undefined) {
    // The origin keys by a header the client sent but this request did not carry: its
    // answer is not the one the client asked for. Asked again once, with it.
    const unsent = originVary.filter((n) => ctx.headers.has(n) && !headers.has(n));
    if (unsent.length > 0) {
      void response.body?.cancel().catch(() => {});
      return load(env, ctx, heldEntry, unsent);
    }
  }
  // A 206 of one range of a known length is stored as a piece, "as if it were an incomplete
  // 200" (RFC 9111 3.3): the policy judges it as one (http-cache-semantics knows no 206).
  const piece = response.status === 206 ? contentRange(record["content-range"]) : undefined;
  // RFC 9213 2.1: a targeted field (CDN-Cache-Control...) decides in place of Cache-Control.
  const caching = { status: piece ? 200 : response.status, headers: cachingHeaders(record) };
  const policy = newPolicy(env.Policy, request, caching);
  const fresh = freshness(policy, caching, freshOptions(env, ctx.route));
  const declared = Number(record["content-length"] ?? Number.NaN);
  let reason: string | undefined;
  if (!fresh.storable) reason = fresh.reason;
  else if (response.status === 206 && !piece) {
    // Several ranges (multipart/byteranges), or an unknown complete length.
    reason = "partial-content";
  } else if (varied.some((n) => !vary?.includes(n) && headers.has(n))) {
    // Sent because the origin keyed by it before, no longer in its Vary: stored, the
    // answer would be keyed without a header it may have been built from.
    reason = "vary-changed";
  } else if (ctx.directives.noStore) reason = "no-store-request";
  else if (fresh.fresh === 0 && !fresh.validators) reason = "not-fresh";
  else if (declared > env.maxSize) reason = "too-large";
  else if (
    h &&
    ERROR_STATUSES.has(response.status) &&
    env.now() < h.entry.freshUntil + h.meta.sie
  ) {
    // A storable error (one with explicit freshness) must not replace what stale-if-error
    // will serve in its place (RFC 5861 4).
    reason = "stale-if-error";
  }
  const storeInit = (body: Uint8Array): StoreInit => ({
    body,
    status: response.status,
    headers: storedHeaders(resHeaders),
    etag: record.etag ?? "",
    tags: entryTags(ctx.target, responseTags(record)),
    policy,
    fresh,
    vary: vary === "*" ? undefined : vary,
    targeted: record[OWN_TARGETED_FIELD],
    originStatus,
  });
  /** Passed on, not stored: as it came, or with the body already (partly) read. */
  const passed = (detail: string, body?: ReadableStream<Uint8Array> | Uint8Array): Loaded => ({
    kind: "pass",
    response:
      body === undefined
        ? response
        : new Response(body, { status: response.status, headers: resHeaders }),
    detail,
    clientRange: asking.clientRange,
  });
  if (reason !== undefined || !response.body) {
    // No body at all (a 204, say): stored with an empty one.
    if (reason === undefined) return kept(storeInit(new Uint8Array()));
    return passed(reason);
  }
  const read = await readUpTo(response.body, env.maxSize).catch((error: unknown) => ({ error }));
  if ("error" in read) return { kind: "down", error: read.error };
  if ("stream" in read) return passed("too-large", read.stream);
  if (piece && read.bytes.byteLength !== piece.end - piece.start + 1) {
    // Not the bytes its Content-Range names: passed on as it came, never stored.
    return passed("partial-content", read.bytes);
  }
  return kept(storeInit(read.bytes));
}

/** A joining 206's fields that describe its own part, not the whole. */
const NOT_JOINED = new Set(["content-length", "content-range", "age"]);

/**
 * A held piece completed by the origin's 206 for what it lacked (RFC 9111 3.4): the whole
 * response, its header fields the stored ones updated by the new (as RFC 9111 3.2 says for
 * a 304); `response` undefined when the two cannot be joined: no common strong validator
 * (RFC 9110 15.3.7.3), or spans that do not make the whole.
 */
async function completed(
  env: LoadEnv,
  heldEntry: CacheEntry,
  held: ByteSpan,
  response: Response,
): Promise<{ response?: Response } | { error: unknown }> {
  const etag = response.headers.get("etag") ?? undefined;
  const span = contentRange(response.headers.get("content-range"));
  if (!span || !response.body || !isStrong(etag) || etag !== heldEntry.etag) {
    void response.body?.cancel().catch(() => {});
    return {};
  }
  const read = await readUpTo(response.body, env.maxSize).catch((error: unknown) => ({ error }));
  if ("error" in read) return read;
  if ("stream" in read) {
    void read.stream.cancel().catch(() => {});
    return {};
  }
  const body = joinSpans({ span: held, body: heldEntry.body }, { span, body: read.bytes });
  if (!body) return {};
  const headers = new Headers(originHeadersOf(heldEntry));
  // Ours (Via, a Date stamped on receipt) went with the old response: the new one's count.
  headers.delete("via");
  for (const [name, value] of endToEnd(response.headers)) {
    if (!NOT_JOINED.has(name)) headers.set(name, value);
  }
  headers.delete("content-range");
  // The purge tags it was stored with, unless the new response names its own.
  if (!headers.has("cache-tag") && !headers.has("surrogate-key")) {
    const tags = heldEntry.tags.filter((t) => t.startsWith(USER_TAG));
    if (tags.length > 0) {
      headers.set("cache-tag", tags.map((t) => t.slice(USER_TAG.length)).join(","));
    }
  }
  return { response: new Response(body, { status: 200, headers }) };
}

/** The origin's Vary names and the named forwarded headers: what selects a stored answer. */
function keyedBy(vary: string[] | "*" | undefined, forward: readonly string[]) {
  if (vary === "*" || forward.length === 0) return vary;
  return [...new Set([...(vary ?? []), ...forward])].sort();
}

/** Reads a body up to `limit` bytes; past that, a stream of what was read and the rest. */
export async function readUpTo(
  body: ReadableStream<Uint8Array>,
  limit: number,
): Promise<{ bytes: Uint8Array } | { stream: ReadableStream<Uint8Array> }> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      const bytes = new Uint8Array(size);
      let at = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, at);
        at += chunk.byteLength;
      }
      return { bytes };
    }
    chunks.push(value);
    size += value.byteLength;
    if (size > limit) {
      // Too large to store: what was read goes first, the rest streams as it comes.
      return {
        stream: new ReadableStream<Uint8Array>({
          start(controller) {
            for (const chunk of chunks.splice(0)) controller.enqueue(chunk);
          },
          async pull(controller) {
            const next = await reader.read();
            if (next.done) controller.close();
            else controller.enqueue(next.value);
          },
          cancel(reason) {
            return reader.cancel(reason);
          },
        }),
      };
    }
  }
}
