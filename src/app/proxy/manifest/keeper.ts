import { badOption } from "../../../core/errors.ts";
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
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  if (!(Number.isSafeInteger(concurrency) && concurrency > 0)) {
    badOption(MANIFEST, "concurrency", "a positive integer", concurrency);
  }
  const minMs = options.retry?.minMs ?? DEFAULT_RETRY_MIN_MS;
  const maxMs = options.retry?.maxMs ?? DEFAULT_RETRY_MAX_MS;
  if (!(minMs > 0 && maxMs >= minMs)) {
    badOption(MANIFEST, "retry", "0 < minMs <= maxMs", `${minMs}, ${maxMs}`);
  }
  const slots: Slot[] = options.urls.map((url) => ({ url, state: "pending", queued: false }));
  const ready: Slot[] = [];
  const running = new Set<Promise<void>>();
  let started = false;
  let stopped = false;

  const pump = () => {
    while (!stopped && running.size < concurrency && ready.length > 0) {
      const slot = ready.shift()!;
      slot.queued = false;
      const run = fetchOne(slot).finally(() => {
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
    slot.nextFetch = Math.round(at);
    if (slot.timer !== undefined) clearTimeout(slot.timer);
    const wait = Math.min(Math.max(0, at - now()), MAX_TIMER_MS);
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      // Early when the wait was cut to MAX_TIMER_MS (or the clock is not the timers').
      if (now() < at) schedule(slot, at);
      else enqueue(slot);
    }, wait);
  };

  /** A delay doubling with each failure, capped, then jittered to between half and all of it. */
  const backoff = (failures: number) => {
    const full = Math.min(maxMs, minMs * 2 ** Math.min(failures - 1, 52));
    return full / 2 + (random() * full) / 2;
  };

  async function fetchOne(slot: Slot): Promise<void> {
    // The first fetch may be answered by a copy already fresh (a restart's cache file);
    // later ones are meant to reach the origin (a refresh, or a retry).
    const refresh = slot.state !== "pending";
    let fetched = await attempt(slot.url, refresh);
    let outcome = classify(fetched, now());
    if (
      !refresh &&
      outcome.state !== "cached" &&
      cacheParams(fetched.cacheStatus).includes("hit")
    ) {
      // A copy too near its end (or stale, served while it revalidates): the origin's turn.
      fetched = await attempt(slot.url, true);
      outcome = classify(fetched, now());
    }
    const at = now();
    slot.fetchedAt = at;
    slot.status = fetched.status;
    slot.state = outcome.state;
    slot.freshUntil =
      fetched.stored && fetched.stored.freshUntil > at ? fetched.stored.freshUntil : undefined;
    slot.error = outcome.error;
    if (stopped) return;
    if (outcome.state === "cached") {
      slot.failures = 0;
      const { createdAt, freshUntil } = fetched.stored!;
      const lead = Math.min((freshUntil - createdAt) * REFRESH_LEAD_SHARE, MAX_REFRESH_LEAD_MS);
      schedule(slot, Math.max(at + MIN_FRESH_MS / 2, freshUntil - lead));
    } else if (outcome.state === "failing") {
      slot.failures = (slot.failures ?? 0) + 1;
      schedule(slot, at + backoff(slot.failures));
    } else {
      slot.failures = 0;
      schedule(slot, at + backoff(Number.POSITIVE_INFINITY));
    }
  }

  async function attempt(url: string, refresh: boolean): Promise<Fetched> {
    try {
      return await options.fetch(url, refresh);
    } catch (err) {
      return { status: 0, cacheStatus: null, error: String(err) };
    }
  }

  return {
    start() {
      if (started) return;
      started = true;
      for (const slot of slots) enqueue(slot);
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
    summary() {
      const summary: ManifestSummary = {
        total: slots.length,
        cached: 0,
        failing: 0,
        uncacheable: 0,
        pending: 0,
      };
      for (const slot of slots) summary[slot.state]++;
      return summary;
    },
    report: () => slots.map(({ timer: _t, queued: _q, ...report }) => report),
  };
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
