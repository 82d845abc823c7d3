import type { DependencyLookup, ListDependency } from "./planner.ts";

interface Registration {
  tags: readonly string[];
  lists: readonly ListDependency[];
  /** When the entry has expired from every tier and the registration can go. */
  expiresAt: number;
  /** Reads served since the entry was stored; rehydration refetches hot entries. */
  hits: number;
}

/**
 * The dependency index: which cached keys hold which tags, and which keys are lists
 * over which table. It covers every tier, so an entry evicted from memory but still in
 * SQLite is still invalidated.
 */
export class DependencyIndex implements DependencyLookup {
  #byKey = new Map<string, Registration>();
  #byTag = new Map<string, Set<string>>();
  #listsByTable = new Map<string, Map<string, ListDependency>>();

  get size(): number {
    return this.#byKey.size;
  }

  add(
    key: string,
    tags: readonly string[],
    lists: readonly ListDependency[],
    expiresAt: number,
  ): void {
    const hits = this.#byKey.get(key)?.hits ?? 0;
    this.remove(key);
    this.#byKey.set(key, { tags, lists, expiresAt, hits });
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
