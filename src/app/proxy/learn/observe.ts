import type { Cache } from "../../../core/cache/index.ts";
import type { CacheEntry as Entry } from "../../../core/entries/entry.ts";
import { badOption } from "../../../core/errors.ts";
import type { StatsFamily } from "../../../core/stats.ts";
import type { PolicyClass } from "../../http-caching/rules.ts";
import { type OriginFetch, readUpTo } from "../load.ts";
import { held, setConditional } from "../revalidate.ts";
import { baseKey, COMPONENT, matchRoute, type Route } from "../routes.ts";
import { type Ctx, URL_TAG, VARY_RECORD } from "../types.ts";
import {
  type Copies,
  checkRule as checkRuleText,
  confidence,
  Learner,
  type Rule,
  ruleId,
  type Write,
  writeFields,
} from "./rules.ts";

const UNCOUNTED = { count: false } as const;

/** Learned invalidation in proxy mode (see the README, "Learned invalidation"). */
export interface LearnOptions {
  /** Share of tests a learned rule must have held to act (0.9). */
  threshold?: number;
  /** Tests a learned rule needs before it acts (3). */
  minTests?: number;
  /** Cached entries revalidated after one write, at most (8). */
  perWrite?: number;
  /** Origin requests spent on learning per second, at most (20). */
  perSecond?: number;
  /**
   * Share of writes on which each acting learned rule is audited (0.25): one target it
   * removes is asked again and compared with the removed copy, so a wrong rule loses
   * confidence. 0 turns audits off.
   */
  audit?: number;
  /**
   * What acting rules do to the entries they match, before the write's answer:
   * `invalidate` (the default) removes them; `revalidate` removes them and then fetches
   * them again (the write's own URL first, at most `revalidatePerWrite`), so the next read
   * is a hit. The write's answer waits for those requests. Entries learning finds changed
   * are fetched again too, after the answer.
   */
  action?: "invalidate" | "revalidate";
  /** Entries fetched again per write when the action is `revalidate`, at most (16). */
  revalidatePerWrite?: number;
  /**
   * Entries fetched again per second when the action is `revalidate`, at most (200): past
   * it what acting rules match is only removed, as with `invalidate`.
   */
  revalidatePerSecond?: number;
  /** Hand-written rules: `{ write: "PATCH /api/users/:id", read: "/api/users/$1/profile" }`. */
  rules?: { write: string; read: string }[];
  /** Rules from an earlier run or another node, merged in at start. */
  initial?: Rule[];
  /** Told whenever rules change (to persist or share them). */
  onChange?: (rules: Rule[]) => void;
  /**
   * Awaited after an operator's decision (the admin API), before it is answered: a runtime
   * that shares rules stores it there first, and throws when it cannot.
   */
  onDecision?: (rules: Rule[]) => Promise<void>;
  /**
   * Awaited before a successful write's rules are applied (started with its origin
   * request) and before the admin API lists them: a runtime that shares rules brings them
   * up to date here. Never rejects.
   */
  current?: () => Promise<void>;
}

/** What learning has done, for the admin stats and metrics. */
export interface LearnStats {
  /** Cached entries removed by learned (or hand-written) rules on writes. */
  learnedInvalidations: number;
  /** Origin requests made to learn (revalidations of sampled entries). */
  learningRequests: number;
  /** Sampled entries found changed (and removed, being stale). */
  learningChanged: number;
  /** Acting rules' removals checked again at the origin (part of learningRequests). */
  audits: number;
  /** Audits that found the removed entry unchanged: the rule was wrong that time. */
  auditsFailed: number;
  /** Entries fetched again because of writes (the `revalidate` action). */
  revalidations: number;
}

/** The learning counters as metrics: the stat, its metric's name (no prefix), its help. */
export const LEARN_COUNTERS: [keyof LearnStats, string, string][] = [
  [
    "learnedInvalidations",
    "learned_invalidations_total",
    "Cached entries removed by learned or hand-written rules on writes (proxy mode).",
  ],
  [
    "learningRequests",
    "learning_requests_total",
    "Origin requests spent on learning: sampled entries and audits asked again.",
  ],
  ["learningChanged", "learning_changed_total", "Sampled entries found changed by a write."],
  ["audits", "learning_audits_total", "Acting learned rules' removals checked again."],
  [
    "auditsFailed",
    "learning_audits_failed_total",
    "Audits that found the removed entry unchanged (the rule was wrong that time).",
  ],
  [
    "revalidations",
    "learning_revalidations_total",
    "Entries fetched again after writes (the revalidate action).",
  ],
];

/** The learning counters as metric families, for `toPrometheus` (a runtime without a metrics client). */
export function learnFamilies(stats: LearnStats): StatsFamily[] {
  return LEARN_COUNTERS.map(([key, name, help]) => ({
    name,
    type: "counter" as const,
    help,
    samples: [{ value: stats[key] }],
  }));
}

export interface LearnEnv {
  learner: Learner;
  /** The proxy's routes: learning asks only the origin of the write's own route. */
  routes: readonly Route[];
  stats: LearnStats;
  perWrite: number;
  perSecond: number;
  audit: number;
  action: "invalidate" | "revalidate";
  revalidatePerWrite: number;
  /** Refetches per second (see `revalidatePerSecond`), and the budget left this second. */
  refetches: Budget;
  /**
   * Requests targets through the proxy itself, as a client without headers would (so a
   * write's invalidation while one is on its way keeps it from being stored); set by the
   * proxy.
   */
  refetch?: (targets: string[], base: string) => Promise<unknown>;
  /** Random in [0, 1): which writes are audited (Math.random; fixed in tests). */
  random: () => number;
  onChange: ((rules: Rule[]) => void) | undefined;
  onDecision: ((rules: Rule[]) => Promise<void>) | undefined;
  current: (() => Promise<void>) | undefined;
  /** Learning requests per second (`perSecond`), and the budget left this second. */
  learning: Budget;
  /** The clock the budgets count seconds by (the proxy's). */
  now: () => number;
}

/** Requests allowed per second, and what is left of them in the current second. */
interface Budget {
  perSecond: number;
  tokens: number;
  second: number;
}

/** Takes up to `wanted` requests from `budget` at time `now` (ms); answers how many. */
function take(budget: Budget, wanted: number, now: number): number {
  const second = Math.floor(now / 1000);
  if (second !== budget.second) {
    budget.second = second;
    budget.tokens = budget.perSecond;
  }
  const granted = Math.max(0, Math.min(wanted, budget.tokens));
  budget.tokens -= granted;
  return granted;
}

export function learnEnv(
  options: LearnOptions,
  routes: readonly Route[],
  now: () => number = Date.now,
): LearnEnv {
  const num = (name: keyof LearnOptions, v: unknown, d: number, min: number, max = Infinity) => {
    if (v === undefined) return d;
    if (typeof v !== "number" || !(v >= min && v <= max)) {
      badOption(COMPONENT, `learn.${name}`, `a number from ${min} to ${max}`, v);
    }
    return v;
  };
  const action = actionOf(options.action);
  const perSecond = num("perSecond", options.perSecond, 20, 0);
  const learner = new Learner({
    threshold: num("threshold", options.threshold, 0.9, 0, 1),
    minTests: num("minTests", options.minTests, 3, 1),
  });
  if (options.initial) learner.merge(options.initial);
  for (const [i, r] of (options.rules ?? []).entries()) {
    const problem = checkHandWritten(r);
    if (problem) badOption(COMPONENT, `learn.rules[${i}]`, problem, r);
    learner.decide(r.write, r.read, "manual");
  }
  return {
    learner,
    routes,
    stats: {
      learnedInvalidations: 0,
      learningRequests: 0,
      learningChanged: 0,
      audits: 0,
      auditsFailed: 0,
      revalidations: 0,
    },
    perWrite: num("perWrite", options.perWrite, 8, 0),
    perSecond,
    audit: num("audit", options.audit, 0.25, 0, 1),
    action,
    revalidatePerWrite: num("revalidatePerWrite", options.revalidatePerWrite, 16, 0),
    refetches: {
      perSecond: num("revalidatePerSecond", options.revalidatePerSecond, 200, 0),
      tokens: 0,
      second: -1,
    },
    random: Math.random,
    onChange: options.onChange,
    onDecision: options.onDecision,
    current: options.current,
    learning: { perSecond, tokens: 0, second: -1 },
    now,
  };
}

function actionOf(action: unknown): "invalidate" | "revalidate" {
  if (action === undefined || action === "invalidate" || action === "revalidate") {
    return action ?? "invalidate";
  }
  return badOption(COMPONENT, "learn.action", '"invalidate" or "revalidate"', action);
}

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

function checkHandWritten(r: unknown): string | undefined {
  if (typeof r !== "object" || r === null) return "an object {write, read}";
  const { write, read } = r as { write?: unknown; read?: unknown };
  return checkRuleText(write, read);
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

/** Largest write answer read for its fields (JSON of one resource is far smaller). */
const MAX_ANSWER_BYTES = 64 * 1024;

/**
 * What rules may bind of a write (see `Write.fields`): the fields of its JSON answer, read
 * here up to a small size (the client gets the same bytes, whether read whole or not), and
 * of `before`, the written resource's copy cached before the write (see `cachedJson`).
 */
export async function writeOf(
  ctx: Ctx,
  response: Response,
  before: unknown,
): Promise<{ write: Write; response: Response }> {
  let answer: unknown;
  const length = Number(response.headers.get("content-length") ?? 0);
  if (
    response.body !== null &&
    length <= MAX_ANSWER_BYTES &&
    isJson(response.headers.get("content-type")) &&
    !response.headers.has("content-encoding")
  ) {
    const read = await readUpTo(response.body, MAX_ANSWER_BYTES);
    const body = "bytes" in read ? read.bytes : read.stream;
    if ("bytes" in read) answer = parseJson(new TextDecoder().decode(read.bytes));
    response = new Response(body, { status: response.status, headers: response.headers });
  }
  const fields = writeFields(answer, before);
  return { write: { method: ctx.method, target: ctx.target, fields }, response };
}

/**
 * What learning looks at in cached reads' stored bodies (JSON up to 64 KiB; each decoded
 * once while its entry lives):
 * - whether one holds a value: as a JSON string (`"7-bch"`) or, for a number, as the value
 *   of a key named `id` or ending in `Id`, `_id` or `ID` (`"userId": 7`);
 * - the rows of a list page: the objects of the body when it is an array, or of its first
 *   property that is one (`{"data": [...]}`).
 */
export function cachedCopies(cache: Cache, ctx: Ctx): Copies {
  // A write asks about its few values for many entries: each value's forms are made once.
  const forms = new Map<string, { quoted: string; underId: RegExp | undefined }>();
  const entryOf = (target: string) => cache.peek(baseKey(target, ctx.host), UNCOUNTED);
  return {
    has: (target) => entryOf(target) !== undefined,
    holds(target, value) {
      const entry = entryOf(target);
      const text = entry && textOf(entry);
      if (!text) return false;
      let form = forms.get(value);
      if (!form) {
        // A number alone says little (`"team":1` is no user 1): only under an id's name.
        const number = /^-?\d+(?:\.\d+)?$/.test(value);
        const underId = number
          ? new RegExp(
              `"(?:id|[A-Za-z0-9_]*(?:Id|_id|ID))"\\s*:\\s*${value.replace(".", "\\.")}(?![\\d.])`,
            )
          : undefined;
        form = { quoted: JSON.stringify(value), underId };
        forms.set(value, form);
      }
      return text.includes(form.quoted) || (form.underId?.test(text) ?? false);
    },
    rows(target) {
      const entry = entryOf(target);
      return entry && rowsOf(entry);
    },
  };
}

type Rows = readonly Readonly<Record<string, unknown>>[];
const ROWS = new WeakMap<Entry, Rows | null>();

function rowsOf(entry: Entry): Rows | undefined {
  let rows = ROWS.get(entry);
  if (rows === undefined) {
    const text = textOf(entry);
    rows = (text !== undefined && listIn(parseJson(text))) || null;
    ROWS.set(entry, rows);
  }
  return rows ?? undefined;
}

/** The rows of a list body: an array of objects, or the first property that is one. */
function listIn(body: unknown): Rows | undefined {
  const isRows = (v: unknown): v is Rows =>
    Array.isArray(v) &&
    v.every((row) => row !== null && typeof row === "object" && !Array.isArray(row));
  if (isRows(body)) return body;
  if (body === null || typeof body !== "object") return undefined;
  return Object.values(body).find(isRows);
}

const TEXTS = new WeakMap<Entry, string>();

function textOf(entry: Entry): string | undefined {
  // A stored piece (a 206) is not the document.
  if (entry.status === 206) return undefined;
  if (entry.headers["content-encoding"] || !isJson(entry.headers["content-type"])) return undefined;
  if (entry.body.byteLength > MAX_ANSWER_BYTES) return undefined;
  let text = TEXTS.get(entry);
  if (text === undefined) {
    text = new TextDecoder().decode(entry.body);
    TEXTS.set(entry, text);
  }
  return text;
}

/** The written resource's cached copy (its own URL's entry), parsed when it is JSON. */
export async function cachedJson(cache: Cache, ctx: Ctx): Promise<unknown> {
  const entry = await cache.getEntry(baseKey(ctx.target, ctx.host), { count: false });
  const text = entry && textOf(entry);
  return text === undefined ? undefined : parseJson(text);
}

function isJson(type: string | null | undefined): boolean {
  return type != null && /[/+]json\b/i.test(type);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
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

/** After an operator's decision: told as any change, and stored where rules are shared. */
export async function decided(env: LearnEnv): Promise<void> {
  const rules = env.learner.toJSON();
  env.onChange?.(rules);
  await env.onDecision?.(rules);
}

/** One rule as the admin API shows it: its evidence, confidence and whether it acts. */
export function describeRule(env: LearnEnv, rule: Rule) {
  return {
    id: ruleId(rule),
    write: rule.write,
    read: rule.read,
    state: rule.state,
    acts: env.learner.acts(rule),
    confidence: Math.round(confidence(rule) * 1000) / 1000,
    held: rule.held,
    tested: rule.tested,
    lastSeen: rule.lastSeen === 0 ? null : new Date(rule.lastSeen).toISOString(),
  };
}

/** GET /_edgecache/rules: the learner's settings, counts and every rule. */
export function rulesReport(env: LearnEnv) {
  return {
    threshold: env.learner.threshold,
    minTests: env.learner.minTests,
    perWrite: env.perWrite,
    perSecond: env.perSecond,
    action: env.action,
    revalidatePerWrite: env.revalidatePerWrite,
    revalidatePerSecond: env.refetches.perSecond,
    stats: { ...env.stats },
    rules: env.learner.rules().map((r) => describeRule(env, r)),
  };
}
