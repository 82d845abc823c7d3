import type { ChangeRecord, LogFollower, LogHistory } from "../../core/change-log/contract.ts";
import type { Cost } from "../../core/cost.ts";
import { C, type Link } from "./link.ts";

/**
 * Where the log's history lives in Redis, so that a node that starts (or starts over after
 * missing records) judges the shared tier's entries as a node running all along would (see
 * LogStart.history): beside the stream, under the log's `history` key, one node's folded
 * summary (WriteFence.history: marks hashed into a fixed number of buckets, no rows) and
 * the seq it ends at. The stream itself holds the records after it: START reads both in
 * one step, and the records that follow the summary, up to the head, go to the fence as
 * they are. Where one is missing (trimmed), or the summary is another log's, the node gets
 * no history and judges by table: never a guess.
 *
 * A node saves its summary each time the log crosses a multiple of `saveEvery` records, and
 * once at start when Redis holds none for this log; of the nodes that cross it, the one
 * that claims it (a claim per multiple) does. The script keeps a summary only if it is
 * later than the one kept, so a slow saver never puts an older one back.
 */
export class HistoryKeeper {
  readonly #link: Link;
  /** Where saving counts (following's cost). */
  readonly #cost: () => Cost | undefined;
  readonly #every: number;
  #log = "";
  /** The seq of the last summary saved (or due and left to another node); -1: none. */
  #saved = -1;
  #saving = false;

  constructor(link: Link, cost: () => Cost | undefined) {
    this.#link = link;
    this.#cost = cost;
    this.#every = saveEvery(link.s.retain);
  }

  /**
   * The history a start brings, from START's reply: the summary kept (`saved`: its log, the
   * seq it ends at and its text, or nothing) and the records after it up to `head`.
   */
  started(
    log: string,
    head: number,
    saved: [log?: string, from?: string, text?: string],
    records: readonly ChangeRecord[],
  ): LogHistory | undefined {
    this.#log = log;
    this.#saved = saved[0] === log ? Number(saved[1]) : -1;
    return historyOf(log, head, saved, records);
  }

  /** `follower` applied the log up to `seq`: its summary is saved when due (see above). */
  applied(seq: number, follower: LogFollower): void {
    if (this.#saving || !follower.history || this.#link.closed) return;
    const window = Math.floor(seq / this.#every);
    if (this.#saved >= 0 && window <= Math.floor(this.#saved / this.#every)) return;
    // Due once per multiple: a node that loses the claim leaves it to the one that won.
    this.#saved = seq;
    this.#saving = true;
    void this.#save(window, follower).finally(() => {
      this.#saving = false;
    });
  }

  async #save(window: number, follower: LogFollower): Promise<void> {
    const link = this.#link;
    const log = this.#log;
    if (!(await link.claim(`history:${log}:${window}`, this.#cost()))) return;
    try {
      // Taken after the claim: the summary up to what this node has applied by now.
      const history = follower.history?.();
      if (history?.log !== log) return;
      // The records after `from`, if the follower gave any, are in the stream: not kept twice.
      const text = JSON.stringify({ floor: history.floor, summary: history.summary });
      this.#cost()?.add(1);
      await link.client.ecKeepHistory(...link.keys, log, history.from, text);
    } catch (err) {
      link.failures++;
      link.report(
        "history",
        `[edgecache] [${C}] cannot save the log's history; nodes that start later judge what they missed by table`,
        err,
      );
    }
  }
}

/**
 * Records between two saves of the summary: 1,000, or a quarter of what the stream retains
 * if less. A node that starts reads the records after the summary kept, in START's reply:
 * about a thousand at most (a write's rows each, a few hundred KB), read once. Saving costs
 * one node a pass over its fence and a summary's bytes in Redis (16,384 buckets: about
 * 200 KB of JSON when every one was raised) per thousand records, next to the thousand
 * records themselves. At a quarter of the retention the records after a kept summary are
 * still in the stream though three saves in a row were missed.
 */
export function saveEvery(retain: number): number {
  return Math.max(1, Math.min(1000, Math.floor(retain / 4)));
}

/** The summary kept and the records after it as a LogHistory ending at `head`, if nothing is missing. */
function historyOf(
  log: string,
  head: number,
  [savedLog, from, text]: [log?: string, from?: string, text?: string],
  records: readonly ChangeRecord[],
): LogHistory | undefined {
  if (savedLog !== log || from === undefined || text === undefined) return undefined;
  const after = Number(from);
  // Every record after the summary, none trimmed: seqs are gap-free.
  if (!(after <= head) || records.length !== head - after) return undefined;
  if (records.some((r, i) => r.seq !== after + 1 + i)) return undefined;
  let saved: { floor?: unknown; summary?: unknown };
  try {
    saved = JSON.parse(text) as typeof saved;
  } catch {
    return undefined;
  }
  if (typeof saved.floor !== "number") return undefined;
  return {
    log,
    floor: saved.floor,
    from: after,
    summary: saved.summary,
    records: records.map(({ seq, ops, ordered }) => ({ seq, ops, ordered })),
  };
}
