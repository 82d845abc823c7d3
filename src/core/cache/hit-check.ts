import type { ChangeLog } from "../change-log/contract.ts";
import type { CacheEntry } from "../entries/entry.ts";
import type { PendingRemovals } from "../entries/removal.ts";
import type { TierStack } from "./tiers.ts";

/** What the hit check looks at. */
export interface HitCheckDeps {
  /** false: caching is off (CacheOptions.enabled), so no tier is read. */
  readonly enabled: boolean;
  readonly log: Pick<ChangeLog, "trusted">;
  /** Keys a removal in progress has yet to delete everywhere. */
  readonly pending: Pick<PendingRemovals, "has">;
  readonly tiers: Pick<TierStack, "skips">;
}

/**
 * The one check both hit paths make (`Cache.peek`, synchronously on the first tier, and
 * `Reads.lookup` through the tiers), so they cannot drift apart: a key is read from the
 * tiers only while caching is on, the lease on the log holds and no removal of it is in
 * progress (`open`, asked once per read); a tier is asked only where no delete of the key
 * failed (`asks`); and what it answers is served only while live (`live`).
 */
export class HitCheck {
  readonly #d: HitCheckDeps;

  constructor(deps: HitCheckDeps) {
    this.#d = deps;
  }

  /** Whether `key` may be read from this node's tiers now. */
  open(key: string): boolean {
    return this.#d.enabled && !this.#d.pending.has(key) && this.#d.log.trusted();
  }

  /** Whether tier `i` may be asked for `key`: not where a delete of it failed (see TierStack). */
  asks(i: number, key: string): boolean {
    return !this.#d.tiers.skips(i, key);
  }

  /**
   * Whether `entry` may be served at `now`: while fresh, or with `until: "stale"` while
   * inside its stale window too (stale-while-revalidate, stale-if-error).
   */
  live(entry: CacheEntry | undefined, now: number, until: "fresh" | "stale"): entry is CacheEntry {
    return entry !== undefined && (until === "fresh" ? entry.freshUntil : entry.staleUntil) > now;
  }
}
