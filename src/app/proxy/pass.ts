import type { Cache } from "../../core/cache/index.ts";
import type { Forward } from "../http.ts";
import type { PolicyClass } from "../http-caching/rules.ts";
import { clientHeaders, passHeaders } from "./headers.ts";
import { cachedJson, writeOf } from "./learn/bodies.ts";
import type { LearnEnv } from "./learn/env.ts";
import { applyRules, cachedTargets, observeWrite } from "./learn/observe.ts";
import { type OriginFetch, originUrl } from "./load.ts";
import { downReply } from "./replies.ts";
import { baseKey } from "./routes.ts";
import { type Ctx, URL_TAG } from "./types.ts";

/** RFC 9110 9.2.1: everything else is unsafe and invalidates (RFC 9111 4.4). */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);
/** RFC 9110 9.3.1, 9.3.2, 9.3.8: a body on these has no meaning; it is never forwarded. */
const BODILESS_METHODS = new Set(["GET", "HEAD", "TRACE"]);

/** Unsafe and other methods (and uncacheable targets): straight to the origin. */
export async function passThrough(
  env: {
    cache: Cache;
    originFetch: OriginFetch;
    reportDown(error: unknown): void;
    Policy: PolicyClass;
    now: () => number;
    learn?: LearnEnv;
    /** Loads in flight, by cache key (learned rules must reach those too). */
    inflight?: ReadonlyMap<string, unknown>;
    /** Request headers the operator named (forwardHeaders). */
    forward: readonly string[];
  },
  ctx: Ctx,
  body: ReadableStream<Uint8Array> | null,
  fwd: Forward = "method",
  /** Why it is not stored (RFC 9211 detail): by default, its method. */
  detail = "method",
): Promise<Response> {
  const unsafe = !SAFE_METHODS.has(ctx.method);
  // Shared rules brought up to date (where a runtime shares them) beside the origin request.
  const current = unsafe ? env.learn?.current?.() : undefined;
  // Learning binds rules to the written resource as it was: its copy, read before the write.
  const before = env.learn && unsafe ? await cachedJson(env.cache, ctx) : undefined;
  const sent = BODILESS_METHODS.has(ctx.method) ? null : body;
  const sentAt = env.now();
  let response: Response;
  try {
    response = await env.originFetch(originUrl(ctx), {
      method: ctx.method,
      headers: passHeaders(ctx, sent !== null, env.forward),
      body: sent,
      ...(ctx.interim && { onInterim: ctx.interim }),
    });
  } catch (error) {
    env.reportDown(error);
    return downReply(error, fwd);
  }
  if (unsafe && response.status < 400) {
    // RFC 9111 4.4: a non-error response to an unsafe method invalidates the target URI
    // and same-origin Location / Content-Location, every variant, before it is answered.
    const targets = [ctx.target];
    for (const name of ["location", "content-location"]) {
      const value = response.headers.get(name);
      const resolved = value === null ? undefined : sameOrigin(value, ctx);
      if (resolved) targets.push(resolved);
    }
    const own = new Set(targets);
    const cached = env.learn
      ? cachedTargets(env.cache, env.learn.routes, ctx, env.inflight?.keys())
      : [];
    await env.cache.invalidate({ tags: targets.map((t) => URL_TAG + t) });
    if (env.learn) {
      // What learned rules say the write changed goes before the response too; then a
      // sample of what they do not cover is asked again, off the client's path.
      const candidates = cached.filter((t) => !own.has(t));
      const answered = await writeOf(ctx, response, before);
      response = answered.response;
      const { write } = answered;
      await current;
      const { targets: removed, audits } = await applyRules(
        env.learn,
        env.cache,
        ctx,
        write,
        candidates,
        // With the revalidate action, the write's own URL is fetched again like the rest.
        cached.filter((t) => own.has(t)),
      );
      const applied = new Set(removed);
      // Learning asks about what is stored, not what is on its way.
      const rest = candidates.filter(
        (t) => !applied.has(t) && env.cache.registration(baseKey(t, ctx.host)) !== undefined,
      );
      env.cache.background(observeWrite(env.learn, env, ctx, write, rest, audits, sentAt));
    }
  }
  const headers = clientHeaders(response.headers);
  headers.set("cache-status", `edgecache; fwd=${fwd}; detail=${detail}`);
  return new Response(response.body, { status: response.status, headers });
}

function sameOrigin(value: string, ctx: Ctx): string | undefined {
  let resolved: URL;
  try {
    resolved = new URL(value, ctx.url);
  } catch {
    return undefined;
  }
  const ok =
    resolved.host === ctx.url.host ||
    resolved.host === ctx.forwardedHost ||
    resolved.host === ctx.route.originUrl.host;
  return ok ? resolved.pathname + resolved.search : undefined;
}
