import { badOption } from "../../../core/errors.ts";
import type { StatsFamily } from "../../../core/stats.ts";
import { MANIFEST } from "./parse.ts";

/** What one fetch of a manifest URL through the proxy came to. */
export interface Fetched {
  /** The status the proxy answered with (0: it threw). */
  status: number;
  /** Its Cache-Status (RFC 9211). */
  cacheStatus: string | null;
  /** The stored response that answers the URL now, if any: when it was made and until when it is fresh. */
  stored?: { createdAt: number; freshUntil: number };
  /** What was thrown, if anything. */
  error?: string;
}

/**
 * A URL's state: `pending` (not fetched yet), `cached` (stored and fresh; fetched again
 * before it expires), `failing` (the origin failed or refused; retried with backoff),
 * `uncacheable` (the origin's answer may not be stored, or is stored without freshness, so
 * there is nothing to keep fresh; looked at again after the longest retry delay).
 */
export type UrlState = "pending" | "cached" | "failing" | "uncacheable";

export interface UrlReport {
  url: string;
  state: UrlState;
  /** The last answer's status. */
  status?: number;
  /** Epoch ms: until when the stored response is fresh (cached, or failing with a copy held). */
  freshUntil?: number;
  /** Epoch ms of the last fetch. */
  fetchedAt?: number;
  /** Epoch ms: when it is fetched next (a refresh, or a retry). */
  nextFetch?: number;
  /** Consecutive failures. */
  failures?: number;
  /** Why it is failing or not stored. */
  error?: string;
}

export interface ManifestSummary {
  total: number;
  cached: number;
  failing: number;
  uncacheable: number;
  pending: number;
}

export interface ManifestKeeperOptions {
  /** Absolute URLs. */
  urls: readonly string[];
  /** Fetches one URL through the proxy's cache path; `refresh` asks the origin even if fresh. */
  fetch(url: string, refresh: boolean): Promise<Fetched>;
  /** Fetches at once (4). */
  concurrency?: number;
  /** Retry delays, ms: the first (1000), doubling up to the longest (300000). */
  retry?: { minMs?: number; maxMs?: number };
  now?: () => number;
  /** In [0, 1): the jitter's (Math.random). */
  random?: () => number;
  /**
   * States kept from before (another node's, by URL): a URL with one is fetched when its
   * `nextFetch` comes, not at start, so a node that takes the manifest over fetches only
   * what is due.
   */
  initial?: ReadonlyMap<string, UrlReport>;
  /** Hears each URL's state once its fetch is done (to share or persist it). */
  settled?(slot: UrlReport): unknown;
}

export interface ManifestKeeper {
  /** Fetches every URL now, then keeps each fresh; no-op when already started. */
  start(): void;
  /** Stops scheduling; resolves once the fetches in flight have finished. */
  stop(): Promise<void>;
  summary(): ManifestSummary;
  report(): UrlReport[];
}

const DEFAULT_CONCURRENCY = 4;
const DEFAULT_RETRY_MIN_MS = 1000;
const DEFAULT_RETRY_MAX_MS = 5 * 60_000;
/**
 * A refresh starts this share of the freshness lifetime before expiry, at most
 * MAX_REFRESH_LEAD_MS: early enough that a slow origin answers before clients see a
 * stale entry, late enough not to double the origin's load.
 */
const REFRESH_LEAD_SHARE = 0.1;
const MAX_REFRESH_LEAD_MS = 60_000;
/**
 * Less freshness than this left after a fetch is none to keep (an `Age` as old as its
 * max-age, say): treated as uncacheable, so such a URL is never fetched in a loop.
 */
const MIN_FRESH_MS = 1000;
/** setTimeout fires at once past 2^31 - 1 ms: longer waits are taken in steps. */
const MAX_TIMER_MS = 24 * 3600_000;

interface Slot extends UrlReport {
  timer?: ReturnType<typeof setTimeout>;
  queued: boolean;
}

/**
 * Keeps a list of URLs cached through the proxy: fetches each at start, `concurrency` at a
 * time, then again shortly before its freshness lifetime ends (taken from the stored
 * entry, so RFC 9111 and the origin's Cache-Control decide). A failure is retried after a
 * delay that doubles from `retry.minMs` up to `retry.maxMs`, with jitter (half to all of
 * it) so that nodes restarted together do not retry together; the origin never sees more
 * than one request per URL per delay. Portable: timers are the only runtime API it uses.
 *
 * @example
 * const keeper = keepManifest({ urls, fetch: (url, refresh) => proxy.keep(url, refresh) });
 * keeper.start();
 * keeper.summary(); // { total: 500, cached: 412, failing: 3, uncacheable: 1, pending: 84 }
 */
export function keepManifest(options: ManifestKeeperOptions): ManifestKeeper {
  const policy = keepPolicy(options);
  const { now, concurrency } = policy;
  const slots: Slot[] = options.urls.map((url) => ({
    ...(options.initial?.get(url) ?? { state: "pending" }),
    url,
    queued: false,
  }));
  const ready: Slot[] = [];
  const running = new Set<Promise<void>>();
  let started = false;
  let stopped = false;

  const pump = () => {
    while (!stopped && running.size < concurrency && ready.length > 0) {
      const slot = ready.shift()!;
      slot.queued = false;
      const run = keepOnce(slot, options.fetch, policy)
        .then(async () => {
          // Heard even when stopped meanwhile: the fetch was made, its state is worth keeping.
          await options.settled?.(report(slot));
          if (!stopped) schedule(slot, slot.nextFetch!);
        })
        .finally(() => {
          running.delete(run);
          pump();
        });
      running.add(run);
    }
  };

  const enqueue = (slot: Slot) => {
    if (slot.queued || stopped) return;
    slot.queued = true;
    ready.push(slot);
    pump();
  };

  const schedule = (slot: Slot, at: number) => {
    if (slot.timer !== undefined) clearTimeout(slot.timer);
    const wait = Math.min(Math.max(0, at - now()), MAX_TIMER_MS);
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      // Early when the wait was cut to MAX_TIMER_MS (or the clock is not the timers').
      if (now() < at) schedule(slot, at);
      else enqueue(slot);
    }, wait);
  };

  return {
    start() {
      if (started) return;
      started = true;
      for (const slot of slots) {
        if (slot.nextFetch === undefined) enqueue(slot);
        else schedule(slot, slot.nextFetch);
      }
    },
    async stop() {
      stopped = true;
      ready.length = 0;
      for (const slot of slots) {
        if (slot.timer !== undefined) clearTimeout(slot.timer);
        slot.timer = undefined;
        slot.queued = false;
      }
      await Promise.allSettled([...running]);
    },
    summary: () => summarize(slots),
    report: () => slots.map(report),
  };
}

/** A slot's state without its scheduling. */
function report({ timer: _t, queued: _q, ...state }: Slot): UrlReport {
  return state;
}

/** The keeper's settings, checked, with their defaults. */
export interface KeepPolicy {
  concurrency: number;
  minMs: number;
  maxMs: number;
  now: () => number;
  random: () => number;
}

/** The settings of `options` (concurrency, retry, clock), checked: E_BAD_OPTION names a bad one. */
export function keepPolicy(
  options: Pick<ManifestKeeperOptions, "concurrency" | "retry" | "now" | "random">,
): KeepPolicy {
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  if (!(Number.isSafeInteger(concurrency) && concurrency > 0)) {
    badOption(MANIFEST, "concurrency", "a positive integer", concurrency);
  }
  const minMs = options.retry?.minMs ?? DEFAULT_RETRY_MIN_MS;
  const maxMs = options.retry?.maxMs ?? DEFAULT_RETRY_MAX_MS;
  if (!(minMs > 0 && maxMs >= minMs)) {
    badOption(MANIFEST, "retry", "0 < minMs <= maxMs", `${minMs}, ${maxMs}`);
  }
  return {
    concurrency,
    minMs,
    maxMs,
    now: options.now ?? Date.now,
    random: options.random ?? Math.random,
  };
}

/** The manifest's gauge (`edgecache_manifest_urls{state}`), as every runtime exposes it. */
export const MANIFEST_METRIC = {
  name: "manifest_urls",
  help: "The manifest's URLs by state: cached, failing, uncacheable, pending (proxy mode).",
  states: ["cached", "failing", "uncacheable", "pending"],
} as const;

/** The manifest's gauge family of a summary, for `toPrometheus`. */
export function manifestFamily(summary: ManifestSummary): StatsFamily {
  return {
    name: MANIFEST_METRIC.name,
    type: "gauge",
    help: MANIFEST_METRIC.help,
    samples: MANIFEST_METRIC.states.map((state) => ({ labels: { state }, value: summary[state] })),
  };
}

/** How many URLs are in each state. */
export function summarize(reports: readonly Pick<UrlReport, "state">[]): ManifestSummary {
  const summary: ManifestSummary = {
    total: reports.length,
    cached: 0,
    failing: 0,
    uncacheable: 0,
    pending: 0,
  };
  for (const r of reports) summary[r.state]++;
  return summary;
}

/**
 * One fetch of a manifest URL and what it comes to: updates `slot` in place (state, status,
 * freshness, failures) and sets its `nextFetch`, a tenth of the lifetime before expiry when
 * cached, after a backoff delay when failing. The step both runtimes share: Node's timers
 * and the Workers' Durable Object alarm only decide when it runs.
 */
export async function keepOnce(
  slot: UrlReport,
  fetch: ManifestKeeperOptions["fetch"],
  policy: KeepPolicy,
): Promise<void> {
  const { now } = policy;
  // The first fetch may be answered by a copy already fresh (a restart's cache file);
  // later ones are meant to reach the origin (a refresh, or a retry).
  const refresh = slot.state !== "pending";
  let fetched = await attempt(fetch, slot.url, refresh);
  let outcome = classify(fetched, now());
  if (!refresh && outcome.state !== "cached" && cacheParams(fetched.cacheStatus).includes("hit")) {
    // A copy too near its end (or stale, served while it revalidates): the origin's turn.
    fetched = await attempt(fetch, slot.url, true);
    outcome = classify(fetched, now());
  }
  const at = now();
  slot.fetchedAt = at;
  slot.status = fetched.status;
  slot.state = outcome.state;
  slot.freshUntil =
    fetched.stored && fetched.stored.freshUntil > at ? fetched.stored.freshUntil : undefined;
  slot.error = outcome.error;
  let next: number;
  if (outcome.state === "cached") {
    slot.failures = 0;
    const { createdAt, freshUntil } = fetched.stored!;
    const lead = Math.min((freshUntil - createdAt) * REFRESH_LEAD_SHARE, MAX_REFRESH_LEAD_MS);
    next = Math.max(at + MIN_FRESH_MS / 2, freshUntil - lead);
  } else if (outcome.state === "failing") {
    slot.failures = (slot.failures ?? 0) + 1;
    next = at + backoff(policy, slot.failures);
  } else {
    slot.failures = 0;
    next = at + backoff(policy, Number.POSITIVE_INFINITY);
  }
  slot.nextFetch = Math.round(next);
}

/**
 * Fetches the URLs that are due (pending, or `nextFetch` reached), `policy.concurrency` at a
 * time, each through `keepOnce`; `settled` hears each one as it is done (to persist it).
 * Starts no fetch after `until` (epoch ms): the rest stay due for the next run. Resolves with
 * the earliest `nextFetch` of all, or undefined for an empty list. For a runtime that wakes
 * on a schedule rather than holding a timer per URL (a Durable Object's alarm).
 */
export async function keepDue(
  slots: readonly UrlReport[],
  fetch: ManifestKeeperOptions["fetch"],
  policy: KeepPolicy,
  settled: (slot: UrlReport) => unknown = () => {},
  until = Number.POSITIVE_INFINITY,
): Promise<number | undefined> {
  const due = slots.filter((s) => isDue(s, policy.now()));
  let next = 0;
  const worker = async () => {
    while (next < due.length && policy.now() < until) {
      const slot = due[next++]!;
      await keepOnce(slot, fetch, policy);
      await settled(slot);
    }
  };
  await Promise.all(Array.from({ length: Math.min(policy.concurrency, due.length) }, worker));
  return nextDue(slots);
}

/** Whether a URL's fetch is due at `now`. */
export function isDue(slot: UrlReport, now: number): boolean {
  return slot.nextFetch === undefined || slot.nextFetch <= now;
}

/** The earliest time a URL is due (now for one never fetched); undefined for none. */
export function nextDue(slots: readonly UrlReport[]): number | undefined {
  let next: number | undefined;
  for (const s of slots) {
    const at = s.nextFetch ?? 0;
    if (next === undefined || at < next) next = at;
  }
  return next;
}

/** A delay doubling with each failure, capped, then jittered to between half and all of it. */
function backoff(policy: KeepPolicy, failures: number): number {
  const full = Math.min(policy.maxMs, policy.minMs * 2 ** Math.min(failures - 1, 52));
  return full / 2 + (policy.random() * full) / 2;
}

async function attempt(
  fetch: ManifestKeeperOptions["fetch"],
  url: string,
  refresh: boolean,
): Promise<Fetched> {
  try {
    return await fetch(url, refresh);
  } catch (err) {
    return { status: 0, cacheStatus: null, error: String(err) };
  }
}

/**
 * What a fetch came to, from its Cache-Status (RFC 9211): `hit` or `stored` with freshness
 * left is cached (a 404 too: the origin's answer); a stale copy served for a failed origin
 * (stale-if-error), a 5xx (stored or not), another error status not stored, or a throw is
 * failing; any other answer not stored is uncacheable, with the
 * proxy's reason (`no-store`, `private`, `too-large`...).
 */
export function classify(fetched: Fetched, now: number): { state: UrlState; error?: string } {
  if (fetched.error !== undefined) return { state: "failing", error: fetched.error };
  const params = cacheParams(fetched.cacheStatus);
  const param = (name: string) =>
    params.find((p) => p.startsWith(`${name}=`))?.slice(name.length + 1);
  const detail = param("detail");
  if (detail === "stale-if-error") {
    const status = param("fwd-status");
    return {
      state: "failing",
      error: `${status ? `origin answered ${status}` : "origin unreachable"}; a stale copy was served`,
    };
  }
  const stored = params.includes("hit") || params.includes("stored");
  if (stored && fetched.stored) {
    if (fetched.status >= 500) {
      // Stored as the origin asked (explicit freshness), but not content worth keeping:
      // retried with backoff, so a recovered origin's answer replaces it.
      return {
        state: "failing",
        error: `HTTP ${fetched.status} (stored by the origin's Cache-Control)`,
      };
    }
    if (fetched.stored.freshUntil - now >= MIN_FRESH_MS) return { state: "cached" };
    return { state: "uncacheable", error: "stored without freshness: every request revalidates" };
  }
  if (fetched.status >= 400) {
    return { state: "failing", error: `HTTP ${fetched.status}${detail ? ` (${detail})` : ""}` };
  }
  return { state: "uncacheable", error: `not stored (${detail ?? "no Cache-Status"})` };
}

/** A Cache-Status's items and parameters: `["edgecache", "hit", "ttl=12"]`. */
function cacheParams(cacheStatus: string | null): string[] {
  return (cacheStatus ?? "").split(";").map((p) => p.trim());
}
