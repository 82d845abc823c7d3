/**
 * Background work of one isolate (rehydration, stale-while-revalidate refreshes, warming).
 * A Worker's `ctx` belongs to one request while the cache outlives it, so the cache hands
 * work here and every request ends with `ctx.waitUntil(background.idle())`: the runtime
 * keeps the isolate until the work, including work it started in turn, has settled.
 */
export class Background {
  #pending = new Set<Promise<unknown>>();
  /** Where failures go: the isolate's logger once it has one (isolateLogger). */
  report: (message: string, error: unknown) => void = console.warn;

  add(work: Promise<unknown>): void {
    const settled = work.then(
      () => {},
      (error) => this.report("[edgecache] [worker] background work failed", error),
    );
    this.#pending.add(settled);
    void settled.then(() => this.#pending.delete(settled));
  }

  /** Resolves once nothing is pending, including work added while waiting. */
  async idle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending);
  }
}
