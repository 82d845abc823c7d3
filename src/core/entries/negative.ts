/** Statuses that say "nothing here": any made-up URL gets one. */
const NEGATIVE = new Set([404, 410]);

export function isNegative(status: number): boolean {
  return NEGATIVE.has(status);
}

/**
 * The keys of cached negative results (404, 410), least recently used first, at most `max`.
 * A quota rather than a short TTL: a TTL bounds how long a 404 stays, not how many arrive
 * meanwhile, so a flood of made-up ids would still push real entries out of every tier. The
 * quota caps them at any rate, and LRU keeps the 404s that are asked for again (a polled id
 * that does not exist yet) over the flood's, each of which is asked for once.
 *
 * @example
 * const quota = new NegativeQuota(2);
 * quota.admit("a"); quota.admit("b");
 * quota.admit("c"); // "a": the least recently used, to be dropped from the tiers
 */
export class NegativeQuota {
  readonly max: number;
  /** Insertion order is use order: a use moves the key to the end. */
  #keys = new Set<string>();
  #evictions = 0;

  constructor(max: number) {
    this.max = max;
  }

  get size(): number {
    return this.#keys.size;
  }

  get evictions(): number {
    return this.#evictions;
  }

  /** Counts `key` as a cached negative result; returns the key that must go to make room. */
  admit(key: string): string | undefined {
    this.#keys.delete(key);
    this.#keys.add(key);
    if (this.#keys.size <= this.max) return undefined;
    const oldest = this.#keys.values().next().value!;
    this.#keys.delete(oldest);
    this.#evictions++;
    return oldest;
  }

  /** A read of `key`: if it is a negative result, it becomes the most recently used. */
  touch(key: string): void {
    if (this.#keys.size > 0 && this.#keys.delete(key)) this.#keys.add(key);
  }

  /** `key` is gone from the cache, or holds a result that is not negative. */
  forget(key: string): void {
    this.#keys.delete(key);
  }
}
