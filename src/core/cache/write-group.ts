import type { WriteTurn } from "../change-log/contract.ts";
import type { WriteEvent } from "../deps/planner.ts";
import type { AppliedWrite } from "./types.ts";

/** Hands a write's events to the log; resolves once their record is applied. */
type RecordEvents = (events: readonly WriteEvent[]) => Promise<AppliedWrite>;

/**
 * One write of a group: it makes its statement, then hands its events to `record`, which
 * resolves once the group's record is applied (as `Cache.write`'s record does). It calls
 * `record` at most once, after its statement committed, or not at all (no change).
 */
export type GroupedWrite<T> = (record: RecordEvents) => Promise<T>;

/** Takes a write turn (`Cache.writeTurn`); undefined when the log cannot give one. */
type TakeTurn = () => Promise<WriteTurn | undefined>;

/** What `Cache.write` gives a group: its turn, and one record for the group's events. */
export type GroupWrite = <T>(
  make: GroupedWrite<T>,
  options: {
    placed?: (next?: WriteTurn) => void;
    turn?: WriteTurn;
    wantsTurn?: () => boolean;
    /** The writes the group holds (counted as requests in stats). */
    writes?: number;
  },
) => Promise<T>;

/** What a waiting write is told when its time comes. */
type Signal =
  /** Lead the group (this write first): take the turn, run each write, append the record. */
  | { lead: Waiting[]; turn: WriteTurn | undefined }
  /**
   * Run: make the statement, then record through `record`; `done` once it recorded or
   * ended. Answer only once `after` settles (the group's record applied, or the group
   * ended): a write that changed nothing, or failed, may owe that to an earlier write of
   * its group, which a read after its answer must already see.
   */
  | { record: RecordEvents; done: () => void; after: Promise<void> };

interface Waiting {
  /** Hands the write its signal; what follows runs in the caller's own context. */
  signal(s: Signal): void;
  /** Fails the write before it ran (its group was refused). */
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
 * order. A node far from the log then pays its round trips per group, not per write, and
 * where the log hands over the next turn with a group's append (the Redis log), the next
 * group takes none of its own: one round trip a group.
 *
 * Each write is acknowledged when the group's record is applied, as a write alone is; one
 * that fails (its statement, or no change) leaves the others alone. The exactness rules are
 * the log's: with the turn held the record is ordered and patches, else it invalidates.
 * A group is the one record of a transaction of several statements would be.
 */
export class WriteGroups {
  readonly #write: GroupWrite;
  readonly #max: number;
  readonly #takeTurn: TakeTurn | undefined;
  #queue: Waiting[] = [];
  #running = false;
  /** The group in flight sent its record without asking for the next group's turn. */
  #sentWithoutTurn = false;
  /** The next group's turn, asked for while the group in flight is on its way. */
  #ahead: Promise<WriteTurn | undefined> | undefined;

  /**
   * `takeTurn`: takes a write turn for the next group (`Cache.writeTurn`), asked for once
   * a write waits and the group in flight has sent its record without asking for one.
   */
  constructor(write: GroupWrite, max = MAX_GROUP, takeTurn?: TakeTurn) {
    this.#write = write;
    this.#max = max;
    this.#takeTurn = takeTurn;
  }

  /**
   * Runs `write` in the next group; resolves with its result once its group is applied.
   * The write runs in the caller's own promise chain, told when its time comes: a group's
   * first write leads it (its turn, its append), and resolves only once the group is done,
   * so the caller that started the group's I/O waits for all of it.
   */
  run<T>(write: GroupedWrite<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let signal!: (s: Signal) => void;
      const told = new Promise<Signal>((r) => {
        signal = r;
      });
      this.#queue.push({ signal, reject });
      if (!this.#running) {
        this.#running = true;
        this.#next(undefined);
      } else if (this.#sentWithoutTurn && !this.#ahead && this.#takeTurn) {
        // The record in flight was sent before this write came, without the next turn. The
        // turn is asked for now, behind that record (the log takes a node's requests in
        // order), so it is taken at the record's place, as a turn handed over would be: the
        // next group waits for one round trip from now, not for the record and then a turn.
        this.#ahead = this.#takeTurn().catch(() => undefined);
      }
      told.then(async (s) => {
        if ("lead" in s) {
          const own = this.#group(s.lead, s.turn, write);
          const group = own.group.then(noop, noop);
          // Settled after the group: a failed leader's request still holds the group's I/O.
          own.result.then(
            async (value) => {
              await group;
              resolve(value as T);
            },
            async (err: unknown) => {
              await group;
              reject(err);
            },
          );
          return;
        }
        runWrite(write, s.record, s.done).then(
          async (value) => {
            await s.after;
            resolve(value as T);
          },
          async (err: unknown) => {
            await s.after;
            reject(err);
          },
        );
      });
    });
  }

  /**
   * Hands the next group to its first write, with the turn the last append handed over, or
   * else the one asked for ahead (once it is taken).
   */
  #next(turn: WriteTurn | undefined): void {
    const ahead = this.#ahead;
    this.#ahead = undefined;
    this.#sentWithoutTurn = false;
    if (ahead && !turn) {
      void ahead.then((t) => this.#start(t));
      return;
    }
    void ahead?.then((t) => t?.release());
    this.#start(turn);
  }

  #start(turn: WriteTurn | undefined): void {
    const group = this.#queue.splice(0, this.#max);
    if (group.length === 0) {
      // Nobody waits: a turn handed over is not needed.
      turn?.release();
      this.#running = false;
      return;
    }
    group[0]!.signal({ lead: group, turn });
  }

  /**
   * The leader's part: its own write first, then each other write of the group in turn,
   * under one `Cache.write` (the turn, one record). The next group is handed on once this
   * one's record has its place (or the group ended without one).
   */
  #group(
    group: Waiting[],
    turn: WriteTurn | undefined,
    own: GroupedWrite<unknown>,
  ): { result: Promise<unknown>; group: Promise<void> } {
    // Settles as the leader's own write does, once it is started (or refused).
    let ownStarted!: (p: Promise<unknown>) => void;
    const result = new Promise<unknown>((r) => {
      ownStarted = r;
    });
    let handedOn = false;
    const handOn = (next?: WriteTurn) => {
      if (handedOn) return next?.release();
      handedOn = true;
      this.#next(next);
    };
    let ran = 0;
    let ended!: () => void;
    const after = new Promise<void>((resolve) => {
      ended = resolve;
    });
    const done = (async () => {
      try {
        await this.#write(
          async (record) => {
            const events: WriteEvent[] = [];
            const recorded: { resolve(a: AppliedWrite): void; reject(e: unknown): void }[] = [];
            const recordOnce = (): {
              record: RecordEvents;
              handed: Promise<void>;
              done: () => void;
            } => {
              let handed!: () => void;
              const handedOver = new Promise<void>((r) => {
                handed = r;
              });
              let once = false;
              return {
                handed: handedOver,
                done: handed,
                record: (own) => {
                  if (once) throw new Error("[edgecache] a grouped write records once");
                  once = true;
                  events.push(...own);
                  const applied = new Promise<AppliedWrite>((resolve, reject) => {
                    recorded.push({ resolve, reject });
                  });
                  handed();
                  return applied;
                },
              };
            };
            for (const [i, w] of group.entries()) {
              ran++;
              // Each runs until it records (its statement committed) or ends; only then does
              // the next one start, so the events are in the database's order.
              const slot = recordOnce();
              if (i === 0) ownStarted(runWrite(own, slot.record, slot.done));
              else w.signal({ record: slot.record, done: slot.done, after });
              await slot.handed;
            }
            if (recorded.length === 0) return;
            try {
              const applied = await record(events);
              for (const r of recorded) r.resolve(applied);
            } catch (err) {
              for (const r of recorded) r.reject(err);
            }
          },
          {
            placed: handOn,
            ...(turn && { turn }),
            wantsTurn: () => {
              const wants = this.#queue.length > 0;
              if (!wants) this.#sentWithoutTurn = true;
              return wants;
            },
            writes: group.length,
          },
        );
      } catch (err) {
        // Before any statement (the log out of reach): the writes not run fail with it.
        if (ran === 0) ownStarted(Promise.reject(err));
        for (const w of group.slice(Math.max(ran, 1))) w.reject(err);
      } finally {
        handOn();
        ended();
      }
    })();
    return { result, group: done };
  }
}

/**
 * A node's writes one after another, each started once the last one's record has its place
 * in the log: what an isolate on Workers does. There a group would hand one request's
 * write to another request's promise, and workerd cancels a request that waits on a
 * promise only another request resolves (as hung); here each write waits on the chain of
 * the writes before it, which their I/O settles.
 */
export class WriteChain {
  readonly #write: GroupWrite;
  /** Settles once the last write's record has its place (or the write ended). */
  #turn: Promise<unknown> = Promise.resolve();

  constructor(write: GroupWrite) {
    this.#write = write;
  }

  run<T>(write: GroupedWrite<T>): Promise<T> {
    let placed!: () => void;
    const free = new Promise<void>((resolve) => {
      placed = resolve;
    });
    // No `wantsTurn`: the log hands over no turn, so `placed` gets none to release.
    const work = () => this.#write(write, { placed });
    const run = this.#turn.then(work, work);
    this.#turn = Promise.race([free, run.catch(() => {})]);
    return run;
  }
}

/** Runs a write with its record; `done` once it ends (whether or not it recorded). */
function runWrite(
  write: GroupedWrite<unknown>,
  record: RecordEvents,
  done: () => void,
): Promise<unknown> {
  const run = Promise.resolve().then(() => write(record));
  run.then(done, done);
  return run;
}

function noop(): void {}
