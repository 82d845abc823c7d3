import type { rateLimited } from "../report.ts";

/**
 * Work off the request's path (rehydration, stale-while-revalidate refreshes, deletes of
 * refused copies), handed to one scheduling hook: a Worker passes `ctx.waitUntil`. Without
 * one, the work is tracked so that `idle()` can wait for it. Failures are swallowed here:
 * the work reports its own.
 */
export class Background {
  readonly #schedule: ((work: Promise<unknown>) => void) | undefined;
  readonly #running = new Set<Promise<unknown>>();

  constructor(schedule: ((work: Promise<unknown>) => void) | undefined) {
    this.#schedule = schedule;
  }

  run(work: Promise<unknown>): void {
    const settled = work.then(
      () => {},
      () => {},
    );
    if (this.#schedule) {
      this.#schedule(settled);
      return;
    }
    this.#running.add(settled);
    void settled.then(() => this.#running.delete(settled));
  }

  /** The work tracked now (none with a scheduling hook). */
  get running(): readonly Promise<unknown>[] {
    return [...this.#running];
  }
}

/**
 * Reloads of invalidated keys (rehydration), `concurrency` at a time behind one another, on
 * the background hook. A failed reload is logged; the key is simply a miss later.
 */
export class ReloadQueue {
  readonly #queue: (() => Promise<void>)[] = [];
  readonly #background: Background;
  readonly #concurrency: number;
  readonly #report: ReturnType<typeof rateLimited>;
  #active = 0;

  constructor(background: Background, concurrency: number, report: ReturnType<typeof rateLimited>) {
    this.#background = background;
    this.#concurrency = concurrency;
    this.#report = report;
  }

  push(job: () => Promise<void>): void {
    this.#queue.push(job);
    this.#pump();
  }

  /** Whether a reload is queued or running. */
  get busy(): boolean {
    return this.#active > 0 || this.#queue.length > 0;
  }

  #pump(): void {
    while (this.#active < this.#concurrency && this.#queue.length > 0) {
      const job = this.#queue.shift()!;
      this.#active++;
      this.#background.run(
        job()
          .catch((err) => this.#report("rehydrate", "[edgecache] [cache] rehydration failed", err))
          .finally(() => {
            this.#active--;
            this.#pump();
          }),
      );
    }
  }
}
