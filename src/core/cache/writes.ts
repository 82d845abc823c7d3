import type { ChangeOp, WriteTurn } from "../change-log/contract.ts";
import type { WriteEvent } from "../deps/planner.ts";
import { extend } from "../entries/extend.ts";
import { EdgecacheError } from "../errors.ts";
import type { AppendOptions } from "./apply.ts";
import type { Parts } from "./parts.ts";
import type { AppliedWrite, InvalidateRequest } from "./types.ts";

/** How long a write waits for the change log to be reachable before it is refused. */
const WRITE_WAIT_MS = 5000;

/** What a write may ask of `Writes.write` (see `Cache.write`). */
export interface WriteOptions {
  placed?: (next?: WriteTurn) => void;
  turn?: WriteTurn;
  wantsTurn?: () => boolean;
  /** The writes `make` makes, where it makes several (a group): counted as requests. */
  writes?: number;
}

/**
 * The cache's writes: what reaches the change log from this node (invalidations, a source's
 * committed writes, the data API's ordered writes) and the write turn and lease they wait
 * for. The facade's `invalidate`, `applyWrite`, `write`, `writeTurn` and `writable` are these.
 */
export class Writes {
  readonly #e: Parts;

  constructor(parts: Parts) {
    this.#e = parts;
  }

  /** Appends one write's ops: a write request, its cost counted as a write's. */
  append(ops: readonly ChangeOp[], options: AppendOptions = {}) {
    this.#e.written.count++;
    return this.#e.applier.append(ops, extend(options, { cost: this.#e.costs.write }));
  }

  async invalidate(request: InvalidateRequest): Promise<number> {
    const ops: ChangeOp[] = [];
    if (request.keys?.length) ops.push({ keys: [...request.keys] });
    if (request.tags?.length) ops.push({ tags: [...request.tags] });
    if (request.prefix !== undefined) ops.push({ prefix: request.prefix });
    for (const pattern of request.patterns ?? []) ops.push({ pattern });
    if (ops.length === 0) return 0;
    return (await this.append(ops, { settled: true })).removed;
  }

  async applyWrite(
    events: WriteEvent | readonly WriteEvent[],
    options: { captured?: true } = {},
  ): Promise<AppliedWrite> {
    const list: readonly WriteEvent[] = Array.isArray(events) ? events : [events as WriteEvent];
    const { captured } = options;
    const { keys, fallback, patched } = await this.append(
      list.map((event) => (captured ? { event, captured } : { event })),
    );
    return { keys, fallback, patched };
  }

  async write<T>(
    make: (record: (events: readonly WriteEvent[]) => Promise<AppliedWrite>) => Promise<T>,
    options: WriteOptions = {},
  ): Promise<T> {
    let placed = options.placed;
    const place = (next?: WriteTurn) => {
      if (placed) placed(next);
      else next?.release();
      placed = undefined;
    };
    try {
      try {
        await this.writable();
      } catch (err) {
        options.turn?.release();
        throw err;
      }
      const cost = this.#e.costs.write;
      this.#e.written.count += options.writes ?? 1;
      const turn = options.turn ?? (await this.#e.log.turn(cost));
      let used = false;
      try {
        return await make(async (events) => {
          // A second record of one write has no turn left: it is appended unordered.
          const given = used ? undefined : turn;
          used = true;
          const ops = events.map((event) => ({ event }));
          const applied = await this.#e.applier.append(ops, {
            turn: given,
            placed: place,
            wantsTurn: options.wantsTurn,
            cost,
          });
          return { keys: applied.keys, fallback: applied.fallback, patched: applied.patched };
        });
      } finally {
        if (!used) turn?.release();
      }
    } finally {
      place();
    }
  }

  writeTurn(): Promise<WriteTurn | undefined> {
    return this.#e.log.turn(this.#e.costs.write);
  }

  async writable(waitMs = WRITE_WAIT_MS): Promise<void> {
    const until = performance.now() + waitMs;
    while (!this.#e.log.trusted()) {
      if (performance.now() >= until) {
        throw new EdgecacheError(
          "E_LOG_UNAVAILABLE",
          "cache",
          `the change log (${this.#e.log.name}) cannot be reached; the write was not made`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
