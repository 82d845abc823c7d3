/** Samples kept: enough to hold a burst's slowest, few enough to forget a spike soon. */
const SAMPLES = 16;

/**
 * What something took lately: the last 16 durations (ms) of it, in a ring. The least says
 * how far a server is (a loaded machine delays some replies, never one below the
 * distance), the longest how long a wait must be to outlast what came lately, the mean
 * what it costs now. O(16) per answer, nothing allocated per sample.
 *
 * @example
 * const trips = new RecentTimes();
 * trips.add(performance.now() - sent);
 * const wait = Math.max(100, 2 * trips.longest());
 */
export class RecentTimes {
  readonly #samples = new Float64Array(SAMPLES);
  #count = 0;

  add(ms: number): void {
    this.#samples[this.#count % SAMPLES] = ms;
    this.#count++;
  }

  /** Samples held (at most 16). */
  get size(): number {
    return Math.min(this.#count, SAMPLES);
  }

  /** Whether 16 samples are held. */
  get full(): boolean {
    return this.#count >= SAMPLES;
  }

  /** The least sample held; 0 when none. */
  least(): number {
    return this.#fold(Math.min, Number.POSITIVE_INFINITY);
  }

  /** The longest sample held; 0 when none. */
  longest(): number {
    return this.#fold(Math.max, Number.NEGATIVE_INFINITY);
  }

  /** The mean of the samples held; 0 when none. */
  mean(): number {
    const n = this.size;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += this.#samples[i]!;
    return n === 0 ? 0 : sum / n;
  }

  #fold(pick: (a: number, b: number) => number, start: number): number {
    const n = this.size;
    if (n === 0) return 0;
    let out = start;
    for (let i = 0; i < n; i++) out = pick(out, this.#samples[i]!);
    return out;
  }
}
