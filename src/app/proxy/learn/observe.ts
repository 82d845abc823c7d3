import type { Cache } from "../../../core/cache/index.ts";
import type { CacheEntry as Entry } from "../../../core/entries/entry.ts";
import type { PolicyClass } from "../../http-caching/rules.ts";
import type { OriginFetch } from "../load.ts";
import { held, setConditional } from "../revalidate.ts";
import { baseKey, matchRoute, type Route } from "../routes.ts";
import { type Ctx, URL_TAG, VARY_RECORD } from "../types.ts";
import { cachedCopies } from "./bodies.ts";
import { type LearnEnv, take } from "./env.ts";
import type { Write } from "./rules.ts";

/**
 * The observation of writes: what acting rules remove before a write's answer, and the
 * cached reads asked again at the origin after it, whose answers are the rules' evidence.
 */

/**
 * The `revalidate` action: fetches removed targets again through the proxy, at most
 * `revalidatePerWrite`, so their next reads are hits. They are removed first: that moves
 * the cache's write fence past them, so a load begun before the write (which may carry
 * what the write changed) can no longer be stored over what is fetched now.
 */
async function refetch(env: LearnEnv, ctx: Ctx, targets: readonly string[]) {
  if (env.action !== "revalidate" || !env.refetch || targets.length === 0) return;
  const allowed = take(env.refetches, Math.min(targets.length, env.revalidatePerWrite), env.now());
  if (allowed === 0) return;
  const some = targets.slice(0, allowed);
  env.stats.revalidations += some.length;
  await env.refetch(some, `${ctx.url.protocol}//${ctx.url.host}`);
}

/**
 * The cached responses a write's rules may apply to: targets of unvaried entries of the
 * same host and route, and of those being loaded (`loading`, the proxy's loads in flight:
 * one that began before the write may bring back what it changed, and only an invalidation
 * of its URL keeps it from being stored). Vary'd entries (those stored per Authorization,
 * Cookie or any other request header) are left out: a learning request could only ask for
 * them without the client's headers, which would compare another response.
 */
export function cachedTargets(
  cache: Cache,
  routes: readonly Route[],
  ctx: Ctx,
  loading: Iterable<string> = [],
): string[] {
  const out = new Set<string>();
  const suffix = ` ${ctx.host}`;
  // Many targets share a path (a list's pages): each path's route is found once.
  const sameRoute = new Map<string, boolean>();
  const consider = (key: string) => {
    if (!key.endsWith(suffix)) return;
    const target = key.slice(0, -suffix.length);
    if (target.includes(" ") || !target.startsWith("/")) return;
    if (cache.registration(key)?.tags.includes(VARY_RECORD)) return;
    const q = target.indexOf("?");
    const path = q < 0 ? target : target.slice(0, q);
    let same = sameRoute.get(path);
    if (same === undefined) {
      same = matchRoute(routes, ctx.url.host, path) === ctx.route;
      sameRoute.set(path, same);
    }
    if (same) out.add(target);
  };
  for (const key of cache.keys()) consider(key);
  for (const key of loading) consider(key);
  return [...out];
}

/** A target an acting learned rule removed, with the copy removed, to check again. */
export interface Audit {
  rule: string;
  target: string;
  entry: Entry;
}

/**
 * Before a successful write's response is sent: removes what acting rules say it changed;
 * with the `revalidate` action, fetches that (the most read first) and `own` (the write's
 * own cached targets, removed already) again. Returns the targets acting rules matched,
 * and the audits to run after the response (see `audit`): copies are taken before the
 * removal, so nothing stale is ever served for them.
 */
export async function applyRules(
  env: LearnEnv,
  cache: Cache,
  ctx: Ctx,
  write: Write,
  candidates: readonly string[],
  own: readonly string[] = [],
): Promise<{ targets: string[]; audits: Audit[] }> {
  const plan = env.learner.plan(write, candidates, cachedCopies(cache, ctx));
  // Reads a rule names outright, cached here or not: their removal goes through the log to
  // every node's copy. Only removed: fetching again what this node never held is not asked.
  const planned = new Set(plan.targets);
  const named = env.learner.named(write).filter((t) => !planned.has(t) && !own.includes(t));
  if (plan.targets.length === 0 && own.length === 0 && named.length === 0) {
    return { targets: [], audits: [] };
  }
  const audits: Audit[] = [];
  for (const [rule, targets] of plan.byRule) {
    if (env.learner.get(rule)?.state !== "learned" || !(env.random() < env.audit)) continue;
    const target = targets[Math.floor(env.random() * targets.length)] as string;
    const entry = await cache.getEntry(baseKey(target, ctx.host), { count: false });
    if (entry) audits.push({ rule, target, entry });
  }
  // Past `revalidatePerWrite`, what is not fetched again is a miss: the most read go first
  // (read before the removal, which forgets their counts).
  const reads = (t: string) => cache.registration(baseKey(t, ctx.host))?.hits ?? 0;
  const again =
    env.action === "revalidate"
      ? [...plan.targets].sort((a, b) => reads(b) - reads(a))
      : plan.targets;
  const removed = await cache.invalidate({
    tags: [...plan.targets, ...named].map((t) => URL_TAG + t),
  });
  env.stats.learnedInvalidations += removed;
  await refetch(env, ctx, [...own, ...again]);
  return { targets: [...plan.targets, ...named], audits };
}

/**
 * After a successful write, off the client's path: asks the origin again for a bounded
 * sample of cached reads (conditionally where they have validators), records which changed,
 * and removes those (they are stale). Learning requests carry no client header, and go only
 * to the route's own origin. Only copies stored by `sentAt` (when the write was sent) are
 * evidence: one loaded since may already show the write, and would count against a rule
 * that holds.
 */
export async function observeWrite(
  env: LearnEnv,
  deps: { cache: Cache; originFetch: OriginFetch; Policy: PolicyClass; now: () => number },
  ctx: Ctx,
  write: Write,
  candidates: readonly string[],
  audits: readonly Audit[] = [],
  sentAt = Number.POSITIVE_INFINITY,
): Promise<void> {
  let limit = take(env.learning, env.perWrite, deps.now());
  if (limit <= 0) return;
  // Choosing the sample looks at every cached read of the route: not before the answer.
  await new Promise((resolve) => setTimeout(resolve, 0));
  const copies = cachedCopies(deps.cache, ctx);
  let observed = false;
  for (const a of audits.slice(0, limit)) {
    limit--;
    const changed = await changedAtOrigin(env, deps, ctx, a.target, a.entry);
    if (changed === undefined) continue;
    env.stats.audits++;
    if (!changed) env.stats.auditsFailed++;
    env.learner.audit(a.rule, changed, deps.now());
    observed = true;
  }
  const sample =
    limit <= 0
      ? []
      : env.learner.sample(
          write,
          some(candidates, SAMPLED_FROM, env.random),
          limit,
          byReads(env, deps.cache, ctx),
          copies,
        );
  // What the sample leaves is not spent (within this second's budget).
  env.learning.tokens = Math.min(
    env.learning.perSecond,
    env.learning.tokens + limit - sample.length,
  );
  const found: string[] = [];
  for (const target of sample) {
    const entry = await deps.cache.getEntry(baseKey(target, ctx.host), { count: false });
    // A stored piece (a 206) cannot be compared with the origin's whole answer.
    if (!entry || entry.createdAt > sentAt || entry.status === 206) continue;
    const changed = await changedAtOrigin(env, deps, ctx, target, entry);
    if (changed === undefined) continue; // The origin is down: no evidence either way.
    env.learner.observe(write, target, changed, deps.now(), copies);
    observed = true;
    if (changed) {
      env.stats.learningChanged++;
      await deps.cache.invalidate({ tags: [URL_TAG + target] });
      found.push(target);
    }
  }
  if (observed) env.onChange?.(env.learner.toJSON());
  await refetch(env, ctx, found);
}

/**
 * Cached reads a write's sample is chosen from, at most: each is looked at (its template,
 * its copy), so a route with tens of thousands cached would cost tens of milliseconds of
 * every write. Past it, a random share of them.
 */
const SAMPLED_FROM = 5000;

/** At most `n` of `list`, chosen at random (all of it, in order, when it is no longer). */
function some<T>(list: readonly T[], n: number, random: () => number): readonly T[] {
  if (list.length <= n) return list;
  const out = [...list];
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(random() * (out.length - i));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out.slice(0, n);
}

/**
 * Picks one of a pattern's targets at random, each as likely as it was read since it was
 * stored, plus one: a popular entry that went stale unseen (before a rule for it was
 * learned, say) is soon asked again, while every entry keeps a chance.
 */
function byReads(env: LearnEnv, cache: Cache, ctx: Ctx): (targets: readonly string[]) => number {
  return (targets) => {
    const weights = targets.map((t) => 1 + (cache.registration(baseKey(t, ctx.host))?.hits ?? 0));
    let at = env.random() * weights.reduce((a, b) => a + b, 0);
    for (const [i, w] of weights.entries()) {
      at -= w;
      if (at < 0) return i;
    }
    return targets.length - 1;
  };
}

/**
 * Asks the route's origin for `target` again, without any client header, and tells whether
 * its answer differs from `entry` (a 304 to its validators, or the same status and bytes,
 * is unchanged); undefined when the origin could not be asked.
 */
async function changedAtOrigin(
  env: LearnEnv,
  deps: { originFetch: OriginFetch; Policy: PolicyClass },
  ctx: Ctx,
  target: string,
  entry: Entry,
): Promise<boolean | undefined> {
  const headers = new Headers({
    via: "1.1 edgecache",
    "x-forwarded-host": ctx.forwardedHost,
    "x-forwarded-proto": ctx.scheme,
    "edgecache-learning": "1",
  });
  // The stored body is as the origin encoded it: ask for the same encoding, to compare.
  const encoding = entry.headers["content-encoding"];
  if (encoding) headers.set("accept-encoding", encoding);
  const h = held(deps.Policy, entry);
  if (h) setConditional(headers, h, target);
  env.stats.learningRequests++;
  try {
    const res = await deps.originFetch(ctx.route.originUrl.origin + target, {
      method: "GET",
      headers,
      body: null,
    });
    if (res.status === 304) {
      await res.body?.cancel();
      return false;
    }
    const body = new Uint8Array(await res.arrayBuffer());
    return res.status !== entry.status || !sameBytes(body, entry.body);
  } catch {
    return undefined;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
