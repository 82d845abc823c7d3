import type { ChangeLog, LogHistory } from "../change-log/contract.ts";
import { decodeLogStart, encodeLogStart, localChangeLog } from "../change-log/in-process.ts";
import type { rateLimited } from "../report.ts";
import { isLogKeeping, type LogKeepingStore, type Store } from "../store.ts";

/**
 * The default change log of a cache made without one: resumed from the first tier that
 * keeps a log's state (a cache file), and left there again at close, so the next process
 * judges the file's entries by it (see CacheOptions.log).
 */
export class KeptLog {
  readonly log: ChangeLog;
  readonly #keeper: { store: LogKeepingStore; log: ReturnType<typeof localChangeLog> } | undefined;

  constructor(tiers: readonly Store[]) {
    const store = tiers.find(isLogKeeping);
    if (!store) {
      this.log = localChangeLog();
      return;
    }
    let state: string | undefined;
    try {
      state = store.takeLogState();
    } catch {
      // A tier that cannot say: a new log, whose position no entry of the file has.
    }
    const log = localChangeLog({ resume: state === undefined ? undefined : decodeLogStart(state) });
    this.#keeper = { store, log };
    this.log = log;
  }

  /** Leaves the log's state and `history` in the tier it was resumed from. */
  leave(history: () => LogHistory, report: ReturnType<typeof rateLimited>): void {
    const keeper = this.#keeper;
    if (!keeper) return;
    try {
      keeper.store.leaveLogState(encodeLogStart({ ...keeper.log.snapshot(), history: history() }));
    } catch (err) {
      report(
        "log-state",
        "[edgecache] [cache] cannot leave the log state: the next start refuses this cache's entries",
        err,
      );
    }
  }
}
