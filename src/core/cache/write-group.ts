import type { WriteEvent } from "../deps/planner.ts";
import type { AppliedWrite } from "./types.ts";

/** What `Cache.write` gives a group: its turn, and one record for the group's events. */
type GroupWrite = <T>(
  make: (record: (events: readonly WriteEvent[]) => Promise<AppliedWrite>) => Promise<T>,
  options: { placed?: () => void },
) => Promise<T>;

/**
 * One write of a group: it makes its statement, then hands its events to `record`, which
 * resolves once the group's record is applied (as `Cache.write`'s record does). It calls
 * `record` at most once, after its statement committed, or not at all (no change).
 */
export type GroupedWrite<T> = (
  record: (events: readonly WriteEvent[]) => Promise<AppliedWrite>,
) => Promise<T>;

interface Waiting {
  write: GroupedWrite<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** Writes of one group at most: a bound on one record's size, and on a group's wait. */
export const MAX_GROUP = 64;

/**
 * Group commit: a node's writes take turns from their statement to their record's place in
 * the log, so that the log holds them in the order the database applied them. Writes that
 * arrive while a group is in flight wait, and go together as the next group once its record
 * has its place: one write turn, their statements one after another in arrival order (each
 * committed before the next starts), and one record holding all their events in that
 * order. A node far from the log then pays its round trips per group, not per write.
 *
 * Each write is acknowledged when the group's record is applied, as a write alone is; one
 * that fails (its statement, or no change) leaves the others alone. The exactness rules are
 * the log's: with the turn held the record is ordered and patches, else it invalidates.
 * A group is the one record of a transaction of several statements would be.
 */
export class WriteGroups {
  readonly #write: GroupWrite;
  readonly #max: number;
  #queue: Waiting[] = [];
  #running = false;

  constructor(write: GroupWrite, max = MAX_GROUP) {
    this.#write = write;
    this.#max = max;
  }

  /** Runs `write` in the next group; resolves with its result once its group is applied. */
  run<T>(write: GroupedWrite<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ write, resolve: resolve as (v: unknown) => void, reject });
      if (!this.#running) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#queue.length > 0) {
        const group = this.#queue.splice(0, this.#max);
        let placed!: () => void;
        const free = new Promise<void>((resolve) => {
          placed = resolve;
        });
        const done = this.#group(group, placed);
        // The next group starts once this one's record has its place in the log, not once
        // every node acknowledged it: a node far from the others would hold its writes up.
        await Promise.race([free, done]);
      }
    } finally {
      this.#running = false;
    }
  }

  /** Runs one group through `Cache.write`; settles every write in it, never rejects. */
  async #group(group: Waiting[], placed: () => void): Promise<void> {
    let started = 0;
    try {
      await this.#write(
        async (record) => {
          const events: WriteEvent[] = [];
          const recorded: { resolve(a: AppliedWrite): void; reject(e: unknown): void }[] = [];
          for (const w of group) {
            started++;
            // The write runs until it records (its statement committed) or ends; only then
            // does the next one start, so the events are in the database's order.
            let handed!: () => void;
            const handedOver = new Promise<void>((resolve) => {
              handed = resolve;
            });
            let once = false;
            const run = Promise.resolve().then(() =>
              w.write((own) => {
                if (once) throw new Error("[edgecache] a grouped write records once");
                once = true;
                events.push(...own);
                const applied = new Promise<AppliedWrite>((resolve, reject) => {
                  recorded.push({ resolve, reject });
                });
                handed();
                return applied;
              }),
            );
            run.then(w.resolve, w.reject);
            await Promise.race([handedOver, run.then(noop, noop)]);
          }
          if (recorded.length === 0) return;
          try {
            const applied = await record(events);
            for (const r of recorded) r.resolve(applied);
          } catch (err) {
            for (const r of recorded) r.reject(err);
          }
        },
        { placed },
      );
    } catch (err) {
      // Before any statement (the log out of reach): the writes not started fail with it.
      for (const w of group.slice(started)) w.reject(err);
    } finally {
      placed();
    }
  }
}

function noop(): void {}
