/** A seeded pseudo-random generator (mulberry32): the same seed, the same sequence. */
export class Random {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick: no items");
    return items[this.int(items.length)]!;
  }

  /** Up to `n` distinct items. */
  sample<T>(items: readonly T[], n: number): T[] {
    const copy = [...items];
    const out: T[] = [];
    while (out.length < n && copy.length > 0) out.push(copy.splice(this.int(copy.length), 1)[0]!);
    return out;
  }

  /** A few words from a small vocabulary. */
  words(n: number): string {
    return Array.from({ length: n }, () => this.pick(WORDS)).join(" ");
  }
}

const WORDS = [
  "cache",
  "edge",
  "query",
  "row",
  "table",
  "index",
  "join",
  "write",
  "read",
  "latency",
  "drizzle",
  "hono",
  "sqlite",
  "trigger",
  "cascade",
  "feed",
  "tag",
  "favorite",
  "follow",
  "comment",
  "article",
  "profile",
  "token",
  "stale",
  "fresh",
  "exact",
  "predicate",
  "page",
];
