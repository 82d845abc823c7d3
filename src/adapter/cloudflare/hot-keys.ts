import { callObject, type DurableObjectNamespaceLike } from "../../durable/rpc.ts";

/**
 * The hottest keys across isolates, for the cron trigger to warm. Each isolate counts the
 * reads it answers (`HotKeyCounter`) and now and then adds its counts to one Durable
 * Object (`HotKeysReporter`), which keeps the totals, halved every `HALF_LIFE_MS` so
 * yesterday's favourites fade. Only a hint: an object that restarts starts counting again.
 */

/** Keys an isolate or the object counts at most; past it the least read half goes. */
export const MAX_COUNTED_KEYS = 2000;
/** How often an isolate sends its counts, at most. */
export const REPORT_EVERY_MS = 10_000;
/** Counts halve this often. */
export const HALF_LIFE_MS = 10 * 60_000;
/** Keys one `top` answer holds at most. */
export const MAX_TOP = 500;
/** The object's name in the change log's namespace (`ChangeLogObject` hosts it). */
export const HOT_KEYS_OBJECT = "edgecache:hot-keys";

/** Counts per key, bounded: past `MAX_COUNTED_KEYS`, the less read half is dropped. */
export class HotKeyCounter {
  #counts = new Map<string, number>();

  add(key: string, n = 1): void {
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + n);
    if (this.#counts.size > MAX_COUNTED_KEYS) this.#trim();
  }

  get size(): number {
    return this.#counts.size;
  }

  /** The `n` most read keys, most read first. */
  top(n: number): string[] {
    return [...this.#counts]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([key]) => key);
  }

  /** Every count, and the counter emptied (what an isolate sends). */
  take(): [string, number][] {
    const all = [...this.#counts];
    this.#counts.clear();
    return all;
  }

  /** Halves every count; keys that fall below one read go. */
  decay(): void {
    for (const [key, n] of this.#counts) {
      if (n < 2) this.#counts.delete(key);
      else this.#counts.set(key, n / 2);
    }
  }

  #trim(): void {
    const keep = this.top(MAX_COUNTED_KEYS / 2);
    const kept = new Map(keep.map((key) => [key, this.#counts.get(key)!]));
    this.#counts = kept;
  }
}

/** The object's side: totals over every isolate's reports. */
export class HotKeyTotals {
  #counter = new HotKeyCounter();
  #decayedAt: number;

  constructor(private readonly now: () => number = Date.now) {
    this.#decayedAt = now();
  }

  report(counts: readonly [string, number][]): void {
    this.#age();
    for (const [key, n] of counts) {
      if (typeof key === "string" && Number.isFinite(n) && n > 0) this.#counter.add(key, n);
    }
  }

  top(n: number): string[] {
    this.#age();
    return this.#counter.top(Math.min(n, MAX_TOP));
  }

  #age(): void {
    const now = this.now();
    while (now - this.#decayedAt >= HALF_LIFE_MS) {
      this.#counter.decay();
      this.#decayedAt += HALF_LIFE_MS;
    }
  }
}

/**
 * The object's side as it answers calls: `report` adds an isolate's counts, `top` names
 * the hottest keys. What `HotKeysReporter` calls (the paths below `hot/`).
 */
export class HotKeysHost {
  #totals: HotKeyTotals;

  constructor(totals = new HotKeyTotals()) {
    this.#totals = totals;
  }

  handle(op: string, body: Record<string, unknown>): Response {
    if (op === "report") {
      this.#totals.report(Array.isArray(body.counts) ? (body.counts as [string, number][]) : []);
      return Response.json({});
    }
    if (op === "top") return Response.json({ keys: this.#totals.top(Number(body.n) || 0) });
    return new Response(`no op hot/${op}`, { status: 404 });
  }
}

/** An isolate's side: counts reads, sends them now and then, asks for the hottest. */
export class HotKeysReporter {
  #counter = new HotKeyCounter();
  #sentAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly namespace: DurableObjectNamespaceLike,
    private readonly everyMs = REPORT_EVERY_MS,
  ) {}

  count(key: string): void {
    this.#counter.add(key);
  }

  /** Sends the counts when `everyMs` has passed since the last report; for `ctx.waitUntil`. */
  async flush(now = Date.now()): Promise<void> {
    if (this.#counter.size === 0 || now - this.#sentAt < this.everyMs) return;
    this.#sentAt = now;
    await this.#call("report", { counts: this.#counter.take() });
  }

  async top(n: number): Promise<string[]> {
    const { keys } = await this.#call<{ keys: string[] }>("top", { n });
    return keys;
  }

  #call<T>(op: string, body: unknown): Promise<T> {
    return callObject<T>(this.namespace, HOT_KEYS_OBJECT, `hot/${op}`, body, {
      component: "hot-keys",
      unavailable: "E_STORE_UNAVAILABLE",
    });
  }
}
