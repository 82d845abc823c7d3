import type { LogPosition } from "../../core/change-log/contract.ts";
import type { CacheEntry } from "../../core/entries/entry.ts";
import { EdgecacheError } from "../../core/errors.ts";
import type { Forward } from "../http.ts";
import { variantSuffixAsync } from "../http-caching/rules.ts";
import { decide, selectVariant } from "./decide.ts";
import { clientHeaders } from "./headers.ts";
import { type LoadEnv, load } from "./load.ts";
import { answers } from "./partial.ts";
import { passThrough } from "./pass.ts";
import { downReply, errorReply, missOutcome, reply } from "./replies.ts";
import { baseKey, COMPONENT } from "./routes.ts";
import { type Ctx, ERROR_STATUSES, type Loaded, type ResponseMeta } from "./types.ts";

/** What serving needs besides loading: the origin requests in flight, and where to report. */
export interface ServeEnv extends LoadEnv {
  inflight: Map<string, { promise: Promise<Loaded>; since: LogPosition }>;
  reportDown(error: unknown): void;
}

/** GET and HEAD: from the cache when it may, else through one shared origin request. */
export async function cached(env: ServeEnv, ctx: Ctx): Promise<Response> {
  const { cache, now } = env;
  const count = (key: string, kind: "hit" | "stale" | "miss") => {
    if (!ctx.background) cache.countRead(key, kind);
  };
  const selected = await selectVariant(
    baseKey(ctx.target, ctx.host),
    (n) => ctx.headers.get(n),
    (k) => cache.getEntry(k, { count: false }),
  );
  const { key, entry: found } = selected;
  let fwd: Forward = selected.vary && !found ? "vary-miss" : "uri-miss";
  // The origin keys this URL's answers by these: its request may carry them (load.ts).
  if (selected.vary) ctx.varied = selected.vary;
  // What may be served if the origin fails (stale-if-error, grace).
  let fallback: CacheEntry | undefined;
  if (found && !answers(found, ctx.method, ctx.headers)) {
    // RFC 9211 2.2: a stored piece holds less than this request asks for; it is completed.
    fwd = "partial";
  } else if (found) {
    const decision = decide(
      found,
      { directives: ctx.directives, authorization: ctx.headers.has("authorization") },
      now(),
    );
    if (decision.kind === "hit") {
      count(key, "hit");
      return reply(ctx, found, { kind: "hit" }, now());
    }
    if (decision.kind === "stale") {
      count(key, "stale");
      if (decision.refresh) {
        // RFC 5861 3: serve it now, refresh it in the background (one request for all).
        const refresh = coalesced(env, ctx, key, found);
        if (refresh.leader) void refresh.promise.then(discard, () => {});
      }
      return reply(ctx, found, { kind: "stale" }, now());
    }
    fwd = decision.fwd;
    if (decision.fallback) fallback = found;
  }
  if (ctx.directives.onlyIfCached) {
    // RFC 9111 5.2.1.7
    count(key, "miss");
    return errorReply(
      new EdgecacheError("E_NOT_FOUND", COMPONENT, "only-if-cached: not in the cache"),
      "bypass",
      504,
    );
  }
  const shared = coalesced(env, ctx, key, found);
  let loaded = await shared.promise;
  let own = shared.leader;
  if (!own) {
    const usable = await sharedResult(ctx, loaded);
    if (usable) loaded = usable;
    else if (!(fallback && failed(loaded)) && loaded.kind !== "down") {
      // Not shareable (not storable, too large, another variant): ask on our own.
      loaded = await load(env, ctx, found);
      own = true;
    }
  }
  if (fallback && failed(loaded)) {
    if (own && loaded.kind === "pass") void loaded.response.body?.cancel().catch(() => {});
    count(key, "stale");
    const fwdStatus = loaded.kind === "pass" ? loaded.response.status : undefined;
    return reply(ctx, fallback, { kind: "stale-if-error", fwdStatus }, now());
  }
  count(key, "miss");
  if (loaded.kind === "down") {
    env.reportDown(loaded.error);
    return downReply(loaded.error, fwd);
  }
  if (loaded.kind === "entry") {
    // A piece that does not hold what was asked is still the origin's answer when it was
    // asked the client's own Range (it chose another, RFC 9110 14.2): sent as it came.
    if (answers(loaded.entry, ctx.method, ctx.headers) || (own && loaded.clientRange)) {
      return reply(ctx, loaded.entry, missOutcome(loaded, fwd), now());
    }
    // Else (an If-Range naming another representation, or a 206 nobody asked for) the
    // origin answers this request as it is.
    return passThrough(env, ctx, null, fwd, "partial");
  }
  if (
    own &&
    !loaded.clientRange &&
    ctx.method === "GET" &&
    ctx.headers.has("range") &&
    loaded.response.status === 200
  ) {
    // Not stored (too large, say), and asked without the client's Range (several ranges,
    // or to complete a piece), so the origin answers the Range itself (RFC 9110 14.2);
    // this body is dropped unread.
    void loaded.response.body?.cancel().catch(() => {});
    return passThrough(env, ctx, null, fwd, loaded.detail);
  }
  const headers = clientHeaders(loaded.response.headers);
  headers.set("cache-status", `edgecache; fwd=${fwd}; detail=${loaded.detail}`);
  if (ctx.method === "HEAD") {
    void loaded.response.body?.cancel().catch(() => {});
    return new Response(null, { status: loaded.response.status, headers });
  }
  return new Response(loaded.response.body, { status: loaded.response.status, headers });
}

/**
 * The origin request for `key`: the one in flight, unless an invalidation happened since
 * it began (it may carry pre-write data), or a new one. Requests with credentials or
 * no-store always get their own.
 */
function coalesced(
  env: ServeEnv,
  ctx: Ctx,
  key: string,
  held: CacheEntry | undefined,
): { promise: Promise<Loaded>; leader: boolean } {
  const { cache, inflight } = env;
  const alone = ctx.headers.has("authorization") || ctx.directives.noStore;
  if (alone) return { promise: load(env, ctx, held), leader: true };
  const running = inflight.get(key);
  if (running && running.since === cache.position) {
    return { promise: running.promise, leader: false };
  }
  const promise = load(env, ctx, held);
  inflight.set(key, { promise, since: cache.position });
  promise
    .finally(() => {
      if (inflight.get(key)?.promise === promise) inflight.delete(key);
    })
    .catch(() => {});
  return { promise, leader: true };
}

/**
 * A coalesced load's result, if this request may use it: stored, its own variant, and
 * holding what it asks for.
 */
async function sharedResult(
  ctx: Ctx,
  shared: Loaded,
): Promise<(Loaded & { kind: "entry" }) | undefined> {
  if (shared.kind !== "entry" || !shared.stored) return undefined;
  // Another request's piece, which may not hold this one's range.
  if (!answers(shared.entry, ctx.method, ctx.headers)) return undefined;
  const vary = (shared.entry.meta as ResponseMeta).vary;
  if (!vary) return shared;
  const own =
    baseKey(ctx.target, ctx.host) + (await variantSuffixAsync(vary, (n) => ctx.headers.get(n)));
  return own === shared.key ? shared : undefined;
}

/** Whether the origin failed in a way stale-if-error covers (RFC 5861 4). */
function failed(loaded: Loaded): boolean {
  return (
    loaded.kind === "down" || (loaded.kind === "pass" && ERROR_STATUSES.has(loaded.response.status))
  );
}

function discard(loaded: Loaded): void {
  if (loaded.kind === "pass") void loaded.response.body?.cancel().catch(() => {});
}
