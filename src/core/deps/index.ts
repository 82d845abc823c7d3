import type { DependencyLookup, ListDependency } from "./planner.ts";

/** What a registration counts: reads served since its entry was stored. */
export interface HitCount {
  hits: number;
}

export interface Registration extends HitCount {
  tags: readonly string[];
  lists: readonly ListDependency[];
  /** When the entry has expired from every tier and the registration can go. */
  expiresAt: number;
  /** Tiers (bit i for tier i) that may hold the entry; the registration goes with the last. */
  held: number;
}

/**
 * The dependency index: which cached keys hold which tags, and which keys are lists
 * over which table. A registration stays while a tier that reports its evictions may still
 * hold the entry (`release`), so an entry evicted from memory but still in SQLite is still
 * invalidated, and the index is bounded by those tiers' own bounds.
 */
export class DependencyIndex implements DependencyLookup {
  #byKey = new Map<string, Registration>();
  #byTag = new Map<string, Set<string>>();
  #listsByTable = new Map<string, Map<string, ListDependency>>();

  get size(): number {
    return this.#byKey.size;
  }

  /**
   * Registers `key` as held by the tiers in `held` (a bit per tier; the first by default),
   * added to the tiers that may still hold an earlier entry under it.
   */
  add(
    key: string,
    tags: readonly string[],
    lists: readonly ListDependency[],
    expiresAt: number,
    held = 1,
  ): HitCount {
    const before = this.#byKey.get(key);
    const hits = before?.hits ?? 0;
    this.remove(key);
    const reg = { tags, lists, expiresAt, hits, held: held | (before?.held ?? 0) };
    this.#byKey.set(key, reg);
    for (const tag of tags) {
      const keys = this.#byTag.get(tag);
      if (keys) keys.add(key);
      else this.#byTag.set(tag, new Set([key]));
    }
    for (const list of lists) {
      const byKey = this.#listsByTable.get(list.table);
      if (byKey) byKey.set(key, list);
      else this.#listsByTable.set(list.table, new Map([[key, list]]));
    }
    return reg;
  }

  has(key: string): boolean {
    return this.#byKey.has(key);
  }

  get(key: string): Readonly<Registration> | undefined {
    return this.#byKey.get(key);
  }

  remove(key: string): void {
    const reg = this.#byKey.get(key);
    if (!reg) return;
    this.#byKey.delete(key);
    for (const tag of reg.tags) {
      const keys = this.#byTag.get(tag);
      keys?.delete(key);
      if (keys?.size === 0) this.#byTag.delete(tag);
    }
    for (const list of reg.lists) {
      const byKey = this.#listsByTable.get(list.table);
      byKey?.delete(key);
      if (byKey?.size === 0) this.#listsByTable.delete(list.table);
    }
  }

  /** Records that the tiers in `held` hold the registered entry too (a read back-filled them). */
  hold(key: string, held: number): HitCount | undefined {
    const reg = this.#byKey.get(key);
    if (reg) reg.held |= held;
    return reg;
  }

  /**
   * A tier dropped the entry (evicted it): once no tier in `held` may hold it, the
   * registration goes. Returns whether it went.
   */
  release(key: string, tier: number): boolean {
    const reg = this.#byKey.get(key);
    if (!reg) return false;
    reg.held &= ~tier;
    if (reg.held !== 0) return false;
    this.remove(key);
    return true;
  }

  /** Counts a read of `key`; returns the new count. */
  touch(key: string): number {
    const reg = this.#byKey.get(key);
    if (!reg) return 0;
    return ++reg.hits;
  }

  keysForTag(tag: string): Iterable<string> {
    return this.#byTag.get(tag) ?? [];
  }

  *listsOn(table: string): Iterable<readonly [string, ListDependency]> {
    const byKey = this.#listsByTable.get(table);
    if (byKey) yield* byKey;
  }

  *keys(prefix = ""): Iterable<string> {
    for (const key of this.#byKey.keys()) if (key.startsWith(prefix)) yield key;
  }

  /** Drops registrations of entries that have expired everywhere; returns how many. */
  sweep(now: number): number {
    let n = 0;
    for (const [key, reg] of this.#byKey) {
      if (reg.expiresAt <= now) {
        this.remove(key);
        n++;
      }
    }
    return n;
  }
}
