import type { LogPosition } from "../core/change-log/contract.ts";

/**
 * How long after its miss a query's result may still be stored. Longer-running reads are
 * forgotten, and their key refuses one put for each (see `PendingReads`).
 */
export const READ_MAX_AGE_MS = 5 * 60_000;
/** Misses between two sweeps of forgotten reads over every key. */
const SWEEP_EVERY = 4096;

interface KeyReads {
  /** Positions of the reads outstanding, oldest first. */
  since: LogPosition[];
  /** Miss times (ms, monotonic), in the same order. */
  at: number[];
  /** Reads that aged out unanswered: while any remain, puts of this key are refused. */
  forgotten: number;
  /** When the last read was forgotten, so the count itself ages out. */
  forgottenAt: number;
}

/**
 * Drizzle asks the cache `get(key)`, runs the query on a miss, then calls `put(key, rows)`,
 * and nothing ties a put to its get. This remembers, per key, the write fence's position at
 * each miss still outstanding, so a put is stored "as a load that began at" a position no
 * later than its own read's.
 *
 * A put takes the oldest position outstanding and forgets the newest. Whichever read the
 * put belongs to, its own position is among those remembered (removing the newest never
 * removes the minimum while any remain), so the position used is never later than the
 * read's: a put may be refused that could have been stored, never the reverse. A read that
 * ages out is counted as forgotten and its key refuses puts until as many have come, so a
 * late put cannot pair with a newer read. A put that finds nothing remembered is refused.
 * The one assumption: a query's result arrives within twice `READ_MAX_AGE_MS` of its miss.
 */
export class PendingReads {
  #byKey = new Map<string, KeyReads>();
  #now: () => number;
  #begins = 0;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  begin(key: string, since: LogPosition): void {
    const now = this.#now();
    if (++this.#begins % SWEEP_EVERY === 0) this.#sweep(now);
    let reads = this.#byKey.get(key);
    if (!reads) {
      reads = { since: [], at: [], forgotten: 0, forgottenAt: 0 };
      this.#byKey.set(key, reads);
    }
    this.#age(reads, now);
    reads.since.push(since);
    reads.at.push(now);
  }

  /** The position to store a result of `key` at, or undefined when it must not be stored. */
  end(key: string): LogPosition | undefined {
    const reads = this.#byKey.get(key);
    if (!reads) return undefined;
    this.#age(reads, this.#now());
    let position: LogPosition | undefined;
    if (reads.forgotten > 0) {
      if (reads.since.length === 0) reads.forgotten--;
    } else position = reads.since[0];
    reads.since.pop();
    reads.at.pop();
    if (reads.since.length === 0 && reads.forgotten === 0) this.#byKey.delete(key);
    return position;
  }

  /** Keys with reads outstanding or forgotten. */
  get size(): number {
    return this.#byKey.size;
  }

  #age(reads: KeyReads, now: number): void {
    let n = 0;
    while (n < reads.at.length && now - reads.at[n]! > READ_MAX_AGE_MS) n++;
    if (n > 0) {
      reads.since.splice(0, n);
      reads.at.splice(0, n);
      reads.forgotten += n;
      reads.forgottenAt = now;
    }
    if (reads.forgotten > 0 && now - reads.forgottenAt > READ_MAX_AGE_MS) reads.forgotten = 0;
  }

  #sweep(now: number): void {
    for (const [key, reads] of this.#byKey) {
      this.#age(reads, now);
      if (reads.since.length === 0 && reads.forgotten === 0) this.#byKey.delete(key);
    }
  }
}
