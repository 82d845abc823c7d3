import { EdgecacheError } from "../../core/errors.ts";
import { randomId } from "../../core/random-id.ts";
import { type ChangeOp, changedTables, type LogPosition, type WriteTurn } from "../contract.ts";
import type { RedisFollower, RenewReply } from "./follower.ts";
import { C, type Link, RETRY_MS, sleep } from "./link.ts";

/** How often a writer waiting for the write turn asks again without a wake-up. */
const TURN_POLL_MS = 10;

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
  /** Where claims go (see claim): outside the log's hash slot, since they are many. */
  #claims: string;

  constructor(link: Link, follower: RedisFollower) {
    this.#link = link;
    this.#follower = follower;
    this.#claims = `${link.s.prefix}claim:`;
  }

  async claim(name: string): Promise<boolean> {
    const link = this.#link;
    try {
      const taken = await link.client.set(
        this.#claims + name,
        link.node,
        "PX",
        link.s.leaseMs,
        "NX",
      );
      return taken === "OK";
    } catch (err) {
      link.failures++;
      link.report("claim", `[edgecache] [${C}] cannot claim work; leaving it to another node`, err);
      return false;
    }
  }

  /**
   * The write turn is a key in Redis, set if absent with the lease's time to live: a node
   * that stops (or pauses) holding it delays other writers for a lease at most, and a
   * record appended after its turn lapsed is unordered (it invalidates, never patches).
   * Waits a lease for it at most; then, or when Redis cannot be reached, the write goes
   * without it.
   */
  async turn(): Promise<WriteTurn | undefined> {
    const link = this.#link;
    const token = `${link.node}:${randomId()}`;
    const until = performance.now() + link.s.leaseMs;
    while (!link.closed) {
      const wakes = link.wakes;
      try {
        const taken = await link.client.set(link.keys[6]!, token, "PX", link.s.leaseMs, "NX");
        if (taken === "OK") return new RedisTurn(token, () => this.#release(token));
      } catch (err) {
        link.failures++;
        link.report(
          "turn",
          `[edgecache] [${C}] cannot take the write turn; writing unordered`,
          err,
        );
        return undefined;
      }
      if (performance.now() >= until) return undefined;
      // The holder publishes when it gives the turn back; the timer covers a lost message.
      if (link.wakes === wakes) await link.woken(TURN_POLL_MS);
    }
    return undefined;
  }

  #release(token: string): void {
    const link = this.#link;
    link.client.ecRelease(...link.keys, token, link.channel).catch((err: unknown) => {
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
  async quietSince(position: LogPosition): Promise<boolean> {
    const link = this.#link;
    if (position.log !== this.#follower.log) return false;
    try {
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

  async append(ops: readonly ChangeOp[], turn?: WriteTurn): Promise<number> {
    const link = this.#link;
    const deadline = performance.now() + link.s.appendTimeoutMs;
    let sent!: (reply: AppendReply) => void;
    const token = turn instanceof RedisTurn ? turn.token : "";
    const outgoing: Outgoing = {
      args: [
        JSON.stringify(ops),
        String(link.s.retain),
        token,
        link.channel,
        link.node,
        ...changedTables(ops),
      ],
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
      // It stays in the outbox; until it is in, this node serves nothing from cache.
      this.#follower.overdue();
      throw new EdgecacheError(
        "E_LOG_UNAVAILABLE",
        C,
        "the write was made, but the change log could not be reached to record it; it is recorded once Redis answers again",
      );
    }
    const [log, seq, ordered] = reply;
    const payload = outgoing.args[0]!;
    await this.#follower.appended(log, { seq, ops, ordered, own: true, payload });
    await this.#barrier(log, seq, deadline);
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
        try {
          const reply = (await link.client.ecAppend(...link.keys, randomId(), ...next.args)) as [
            string,
            number,
            string,
          ];
          this.#outbox.shift();
          next.sent([reply[0], Number(reply[1]), reply[2] === "1"]);
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
   * Waits until the record may be acknowledged (see BARRIER), renewing this node's lease
   * with each ask: it tells the others, and its own membership, that it applied the record.
   */
  async #barrier(log: string, seq: number, deadline: number): Promise<void> {
    const link = this.#link;
    for (;;) {
      let behind: number;
      let wait: number;
      const wakes = link.wakes;
      const sent = performance.now();
      try {
        const args = this.#follower.renewArgs();
        const reply = (await link.client.ecBarrier(...args, seq, log)) as [
          ...RenewReply,
          number,
          number,
        ];
        this.#follower.renewed(sent, [reply[0], reply[1], reply[2], reply[3]]);
        [behind, wait] = [Number(reply[4]), Number(reply[5])];
      } catch (err) {
        link.failures++;
        // Nodes that cannot reach Redis either lose their lease or have applied the record.
        if (link.closed || performance.now() > deadline + link.s.leaseMs) {
          throw unconfirmed(err);
        }
        await sleep(RETRY_MS);
        continue;
      }
      if (behind === 0 && wait <= 0) return;
      if (link.closed) throw unconfirmed(new Error("closed"));
      if (behind > 0 && link.wakes !== wakes) continue; // a node applied meanwhile: ask again
      await link.woken(behind === 0 ? wait : Math.min(wait, 100));
    }
  }
}

/** A write turn this node holds in Redis, named by its token. */
class RedisTurn implements WriteTurn {
  constructor(
    readonly token: string,
    readonly release: () => void,
  ) {}
}

/** APPEND's answer: the log, the record's seq, and whether it is ordered. */
type AppendReply = [log: string, seq: number, ordered: boolean];

/** A record on its way into the log, and the append waiting for its seq. */
interface Outgoing {
  args: string[];
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
