import {
  type ChangeOp,
  changedTables,
  type LogPosition,
  type WriteTurn,
} from "../../core/change-log/contract.ts";
import type { Cost } from "../../core/cost.ts";
import { EdgecacheError } from "../../core/errors.ts";
import { randomId } from "../../core/random-id.ts";
import { RecentTimes } from "../../core/time/recent-times.ts";
import type { RedisFollower, RenewReply, StreamEntry } from "./follower.ts";
import { C, type Link, RETRY_MS, sleep } from "./link.ts";

/**
 * How long a writer waits for acknowledgements at least before it asks Redis who it still
 * waits for: what a lost wake-up (the subscriber reconnecting) costs at least. It waits
 * longer where acknowledgements or round trips took longer lately (see Link.patience), at
 * most a lease.
 */
const ASK_AGAIN_MS = 100;

/**
 * One node writing to the Redis log: claims, the write turn, appends through an outbox
 * that keeps the source's commit order, and the barrier that holds an append's answer
 * until every node holding a lease has applied it.
 */
export class RedisWriter {
  #link: Link;
  #follower: RedisFollower;
  /**
   * Records the source committed, waiting for the log to take them: one sender sends them
   * in order, retrying until each is in (or the log is closed).
   */
  #outbox: Outgoing[] = [];
  #sending = false;
  /** How long the last appends waited for their acknowledgements, where those ended it. */
  readonly #acks = new RecentTimes();

  constructor(link: Link, follower: RedisFollower) {
    this.#link = link;
    this.#follower = follower;
  }

  /**
   * A write turn is a member of a set in Redis with the lease's time to live, taken in one
   * round trip: turns do not exclude each other, so no writer waits for another (one far
   * from Redis would hold every other writer up by its round trip). While a turn is held
   * the log is not quiet. Its record is ordered if no record changed one of its tables
   * since the turn was taken (scripts.ts, APPEND); otherwise, or if the turn lapsed (its
   * holder was paused past a lease), it is unordered: it invalidates, never patches. When
   * Redis cannot be reached the write goes without a turn.
   */
  async turn(cost?: Cost): Promise<WriteTurn | undefined> {
    const link = this.#link;
    const token = this.#token();
    try {
      cost?.add(1);
      const sent = performance.now();
      const [, turn] = (await link.client.ecTurn(
        ...link.keys,
        randomId(),
        token,
        link.s.leaseMs,
      )) as [string, string];
      link.trips.add(performance.now() - sent);
      return new RedisTurn(turn, () => this.#release(turn, cost));
    } catch (err) {
      link.failures++;
      link.report("turn", `[edgecache] [${C}] cannot take a write turn; writing unordered`, err);
      return undefined;
    }
  }

  #token(): string {
    return `${this.#link.node}:${randomId()}`;
  }

  /** Gives `turn` back; nothing waits for the answer (no round trip in `cost`). */
  #release(turn: string, cost: Cost | undefined): void {
    const link = this.#link;
    cost?.add(1, 0);
    link.client.ecRelease(...link.keys, turn).catch((err: unknown) => {
      link.failures++;
      link.report("turn", `[edgecache] [${C}] cannot give the write turn back`, err);
    });
  }

  /**
   * A write commits while its writer holds the turn and appends before giving it back, so
   * a load that read the source and then finds no record after its position and no turn
   * held saw no write its position lacks. (A writer whose turn lapsed is missed; its
   * record is unordered and invalidates what it concerns when it arrives.)
   */
  async quietSince(position: LogPosition, cost?: Cost): Promise<boolean> {
    const link = this.#link;
    if (position.log !== this.#follower.log) return false;
    try {
      cost?.add(1);
      const [log, head, held] = (await link.client.ecQuiet(...link.keys)) as [
        string,
        string,
        number,
      ];
      return log === position.log && Number(head) === position.seq && Number(held) === 0;
    } catch (err) {
      link.failures++;
      link.report("quiet", `[edgecache] [${C}] cannot read the log's head`, err);
      return false;
    }
  }

  async append(
    ops: readonly ChangeOp[],
    turn?: WriteTurn,
    placed?: (next?: WriteTurn) => void,
    wantsTurn?: () => boolean,
    cost?: Cost,
  ): Promise<number> {
    const link = this.#link;
    const deadline = performance.now() + link.s.appendTimeoutMs;
    let sent!: (reply: AppendReply) => void;
    const token = turn instanceof RedisTurn ? turn.token : "";
    const outgoing: Outgoing = {
      mark: randomId(),
      cost,
      args: [
        JSON.stringify(ops),
        String(link.s.retain),
        token,
        link.channel,
        link.node,
        String(link.s.leaseMs),
        // A writer with writes waiting gets its next turn with this record's place.
        placed && wantsTurn?.() ? this.#token() : "",
      ],
      tables: [...changedTables(ops)],
      reply: new Promise((resolve) => {
        sent = resolve;
      }),
      sent: (reply) => sent(reply),
    };
    this.#outbox.push(outgoing);
    this.#send();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const reply = await Promise.race([
      outgoing.reply,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), link.s.appendTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!reply) {
      // It stays in the outbox; until it is in, this node serves nothing from cache. The
      // turn its append takes for a next write, nobody waits for: given back when it lands.
      outgoing.abandoned = true;
      this.#follower.overdue();
      throw new EdgecacheError(
        "E_LOG_UNAVAILABLE",
        C,
        "the write was made, but the change log could not be reached to record it; it is recorded once Redis answers again",
      );
    }
    const next = reply.next;
    placed?.(next ? new RedisTurn(next, () => this.#release(next, cost)) : undefined);
    const { log, seq, ordered, prev } = reply;
    const payload = outgoing.args[0]!;
    const { mark } = outgoing;
    await this.#follower.appended(
      log,
      { seq, ops, ordered, own: true, payload, mark, prev },
      reply.missed,
      cost,
    );
    // Whom the append's reply named holds only in the log this node follows: one that went
    // back (a restored snapshot) or was replaced made it start over, and Redis is asked.
    const waiting = this.#follower.follows(log) ? reply.waiting : Waiting.unknown();
    await this.#barrier(log, seq, waiting, deadline, reply.heard, cost);
    return seq;
  }

  /**
   * Sends the outbox, oldest first: the log takes records in the order the source
   * committed them. A failed send is retried (a timeout may have added the record anyway:
   * then it is in twice, which costs an invalidation; a shared log patches nothing).
   */
  #send(): void {
    if (this.#sending) return;
    this.#sending = true;
    const link = this.#link;
    void (async () => {
      while (this.#outbox.length > 0 && !link.closed) {
        const next = this.#outbox[0]!;
        // Taken before the append is sent: acknowledgements of it can only come after.
        const heard = link.heard;
        try {
          next.cost?.add(1);
          const sent = performance.now();
          // Where this node's reader is: the append's reply brings the records between.
          const follower = this.#follower;
          const [log, seq, ordered, prev, turn, young, behind, missed] =
            (await link.client.ecAppend(
              ...link.keys,
              next.mark,
              ...next.args,
              follower.log,
              follower.applied,
              ...next.tables,
            )) as [string, number, string, string, string, ...BehindReply, StreamEntry[]];
          link.trips.add(performance.now() - sent);
          this.#outbox.shift();
          if (next.abandoned && turn) this.#release(turn, next.cost);
          next.sent({
            log,
            seq: Number(seq),
            ordered: ordered === "1",
            prev,
            next: turn,
            waiting: new Waiting([young, behind]),
            missed,
            heard,
          });
        } catch (err) {
          link.failures++;
          link.report("append", `[edgecache] [${C}] append failed; retrying`, err);
          await sleep(RETRY_MS);
        }
      }
      if (this.#outbox.length === 0) this.#follower.recorded();
      this.#sending = false;
    })();
  }

  /**
   * Waits until the record may be acknowledged: every node that held a lease when it was
   * appended (`waiting`, from the append's reply) has acknowledged it on the wake-up
   * channel or lost its lease, and the log is a lease old. Nothing is asked while the
   * acknowledgements come: a node near Redis waits one round trip of the farthest node, a
   * node far from it none beyond its append's. Redis is asked (BARRIER, which also renews
   * this node) only when a lease it waits on may have run out (that node may have renewed
   * meanwhile, still behind: it is waited for again), or after a wait without news that
   * outlasts what acknowledgements and round trips took lately (twice the longest of the
   * last 16, see Link.patience); an acknowledgement heard while the answer is on its way
   * ends the wait all the same. A timer that fires late restarts that wait: the event loop
   * stalled (a long task, a GC), and acknowledgements that came meanwhile are still unread,
   * or not sent yet by a node stalled with it. That is no lost wake-up.
   */
  async #barrier(
    log: string,
    seq: number,
    waiting: Waiting,
    deadline: number,
    heard: number,
    cost: Cost | undefined,
  ): Promise<void> {
    const link = this.#link;
    const began = performance.now();
    let asked = began;
    let asking: Promise<void> | undefined;
    let failed: unknown;
    // Whether the wait says nothing of how long acknowledgements take: Redis's answer left
    // nobody to wait for (a lease ran out, say), or the log was too young to acknowledge.
    let unsampled = waiting.young;
    for (;;) {
      // This node counts once its follower has applied the record (appending applies it,
      // unless a catch-up before it failed: then its own renewal says so, as the others').
      waiting.drop((node) =>
        node === link.node && this.#follower.follows(log) && this.#follower.applied >= seq
          ? true
          : link.acked(node, log, heard) >= seq,
      );
      if (waiting.done()) {
        if (!unsampled) this.#acks.add(performance.now() - began);
        return;
      }
      if (link.closed) throw unconfirmed(new Error("closed"));
      const patience = link.patience(ASK_AGAIN_MS, link.trips, this.#acks);
      if (failed !== undefined) {
        // Nodes that cannot reach Redis either lose their lease or have applied the record.
        if (performance.now() > deadline + link.s.leaseMs) throw unconfirmed(failed);
        asked = performance.now() - patience + RETRY_MS;
        failed = undefined;
      }
      const now = performance.now();
      const askAt = Math.min(asked + patience, waiting.until());
      if (!asking && now >= askAt) {
        asked = now;
        asking = this.#ask(log, seq, cost).then(
          (fresh) => {
            waiting = fresh;
            unsampled ||= fresh.done() || fresh.young;
          },
          (err: unknown) => {
            link.failures++;
            failed = err;
          },
        );
        void asking.finally(() => {
          asking = undefined;
        });
      }
      if (asking) {
        await Promise.race([link.woken(patience), asking]);
      } else {
        await link.woken(askAt - now);
        // Woken more than half a wait late: the loop stalled (see above); wait again.
        if (performance.now() - askAt > patience / 2) asked = performance.now();
      }
    }
  }

  /** Who the record's writer still waits for, as Redis says now (BARRIER). */
  async #ask(log: string, seq: number, cost: Cost | undefined): Promise<Waiting> {
    cost?.add(1);
    const sent = performance.now();
    const [l, head, granted, members, ...behind] = (await this.#link.client.ecBarrier(
      ...this.#follower.renewArgs(),
      seq,
      log,
    )) as [...RenewReply, ...BehindReply];
    this.#link.trips.add(performance.now() - sent);
    this.#follower.renewed(sent, [l, head, granted, members]);
    return new Waiting(behind);
  }
}

/** BEHIND's reply (scripts.ts): ms until the log is a lease old, and {node, ms of lease left, ...}. */
type BehindReply = [young: number, behind: (string | number)[]];

/**
 * The nodes a record's writer still waits for, each until its lease runs out (as Redis
 * last said), and until when the log is too young to acknowledge anything.
 */
class Waiting {
  #young: number;
  #nodes = new Map<string, number>();

  constructor([young, behind]: BehindReply) {
    const now = performance.now();
    this.#young = Number(young) > 0 ? now + Number(young) : 0;
    for (let i = 0; i + 1 < behind.length; i += 2) {
      this.#nodes.set(String(behind[i]), now + Number(behind[i + 1]));
    }
  }

  /** Nothing known: Redis is asked at once. */
  static unknown(): Waiting {
    const waiting = new Waiting([0, []]);
    waiting.#young = performance.now();
    return waiting;
  }

  drop(acknowledged: (node: string) => boolean): void {
    for (const node of this.#nodes.keys()) if (acknowledged(node)) this.#nodes.delete(node);
  }

  /**
   * Nobody left to wait for. A young log is asked about again once it is a lease old,
   * rather than trusted to be: it may have been replaced meanwhile.
   */
  done(): boolean {
    return this.#nodes.size === 0 && this.#young === 0;
  }

  /** Whether the log was too young to acknowledge anything. */
  get young(): boolean {
    return this.#young !== 0;
  }

  /** When Redis must be asked again: a lease waited on may have run out, or the log come of age. */
  until(): number {
    let at = this.#young || Number.POSITIVE_INFINITY;
    for (const expiry of this.#nodes.values()) at = Math.min(at, expiry);
    return at;
  }
}

/** A write turn this node holds in Redis, named by its token. */
class RedisTurn implements WriteTurn {
  constructor(
    readonly token: string,
    readonly release: () => void,
  ) {}
}

/** APPEND's answer: the log, the record's seq, whether it is ordered, and whom to wait for. */
interface AppendReply {
  log: string;
  seq: number;
  ordered: boolean;
  /** The mark of the record before it. */
  prev: string;
  /** The writer's next turn, taken at this record ("" when not asked for). */
  next: string;
  /** The records between the last one this node had applied and this one, where few. */
  missed: StreamEntry[];
  waiting: Waiting;
  /** `Link.heard` when the append was sent. */
  heard: number;
}

/** A record on its way into the log, and the append waiting for its seq. */
interface Outgoing {
  /** The record's mark (scripts.ts, APPEND): the same on a retried send. */
  mark: string;
  /** Where its sends count (each retry too). */
  cost: Cost | undefined;
  /** APPEND's arguments up to the tables; then the reader's place, then the tables. */
  args: string[];
  tables: string[];
  /** Its append gave up waiting (timed out): nobody takes the reply's next turn. */
  abandoned?: boolean;
  reply: Promise<AppendReply>;
  sent(reply: AppendReply): void;
}

/** The record is in the log, but not every node was heard to apply it. */
function unconfirmed(cause: unknown): EdgecacheError {
  return new EdgecacheError(
    "E_LOG_UNAVAILABLE",
    C,
    "the write was made and logged, but the change log stopped answering before every node confirmed it",
    { cause },
  );
}
