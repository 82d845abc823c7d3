import type { ChangeOp, ChangeRecord, LogFollower } from "../../core/change-log/contract.ts";
import type { Cost } from "../../core/cost.ts";
import { EdgecacheError } from "../../core/errors.ts";
import { randomId } from "../../core/random-id.ts";
import { REDIS_LOG_LEASE, renewAfterMs, trustedUntil } from "../../core/time/lease.ts";
import { settledWithin } from "../../core/time/settled-within.ts";
import { duplicateClient, type RedisClient } from "../../redis/connect.ts";
import { HistoryKeeper } from "./history.ts";
import { C, type Link, RETRY_MS, sleep } from "./link.ts";
import { BELL_LEASES, bellKey, scriptSha } from "./scripts.ts";

/** Records fetched per read. */
const READ_COUNT = 1000;
/**
 * How long a node waits at least for records' patches to be stored before it reports them
 * applied; longer where its round trips to Redis took longer lately (see Link.patience).
 */
const APPLY_WAIT_MS = 100;
/** Payloads of applied records kept, to tell this node's own record from another's. */
const RECENT_PAYLOADS = 4096;

/** A record as XRANGE and XREAD give it: its id, and its fields and values. */
export type StreamEntry = [id: string, fields: string[]];

/** XREAD's answer: the stream's records, or null when the block ended without any. */
type XReadReply = [string, StreamEntry[]][] | null;

/** EVALSHA queued on a pipeline, its reply handed to `done` as it comes. */
type EvalshaCall = {
  evalsha(
    ...args: [...(string | number)[], done: (err: Error | null, reply?: unknown) => void]
  ): unknown;
};

/** RENEW's SHA1: sent by hand on the reader's pipelines (see scriptSha). */
const RENEW_SHA = scriptSha("ecRenew");

/** RENEW's answer (BARRIER's begins with it). */
export type RenewReply = [log: string, head: number, granted: number, members: number];

/**
 * A record as the stream holds it; `payload` is its ops' JSON, as appended, `mark` its own
 * mark and `prev` the mark of the record before it (both absent where a record was
 * appended without them).
 */
export type Delivered = ChangeRecord & { payload: string; mark?: string; prev?: string };

/**
 * One node following the Redis log: its reader waits for records (on the stream, or on its
 * bell while it is alone: see #read), applies them in order, and renews the node's lease,
 * which says what it applied, after any that other nodes wait for and at least every
 * quarter lease. A gap, a new log or a log that went back starts it over from the log's
 * snapshot.
 */
export class RedisFollower {
  #link: Link;
  #reader: RedisClient;
  /** This node's bell (bellKey), where its reader waits while it is alone on the log. */
  #bell: string;
  #follower: LogFollower | undefined;
  /** Where following's requests count: reads, renewals, starts (see ChangeLog.follow). */
  cost: Cost | undefined;
  /** The log this node follows ("" until it first reached Redis) and the last record applied. */
  #log = "";
  #applied = 0;
  /** The mark of the record applied last ("" when unknown): what the next one must name. */
  #mark = "";
  /** A reseal under way: the restart waits for it, so it starts on the new log. */
  #resealing: Promise<unknown> = Promise.resolve();
  #leaseUntil = Number.NEGATIVE_INFINITY;
  #restart = true;
  #started = false;
  #loop: Promise<void> | undefined;
  /** The payloads of the records applied last, by seq: is the record under a seq ours? */
  #payloads = new Map<number, string>();
  /** A record is overdue (its write was answered without it): no lease until it is in. */
  #overdue = false;
  /** Nodes holding a lease, as last heard (this one included once it holds one). */
  #members = 0;
  /** The renewal in flight, if any, and when the last one was sent. */
  #renewing: Promise<void> = Promise.resolve();
  #renewedAt = Number.NEGATIVE_INFINITY;
  /** When this node last applied another node's record: it then waits on the stream (#read). */
  #heardAt = Number.NEGATIVE_INFINITY;
  /** The log's history in Redis: read at each start, saved now and then. */
  #history: HistoryKeeper;

  constructor(link: Link) {
    this.#link = link;
    this.#history = new HistoryKeeper(link, () => this.cost);
    // A blocking read holds its connection: the reader has its own, with room for the block.
    this.#reader = duplicateClient(link.client, this.#blockMs() + link.s.commandTimeout);
    this.#bell = bellKey(link.keys, link.node);
  }

  /** The log this node follows ("" until it first reached Redis). */
  get log(): string {
    return this.#log;
  }

  /** The last position this node applied, in the log it follows. */
  get applied(): number {
    return this.#applied;
  }

  /** Whether this node follows `log` and is not about to start over. */
  follows(log: string): boolean {
    return log === this.#log && !this.#restart;
  }

  get members(): number {
    return this.#members;
  }

  follow(follower: LogFollower, cost?: Cost): void {
    if (this.#follower) {
      throw new EdgecacheError(
        "E_BAD_OPTION",
        C,
        "a Redis change log serves one cache; make one per cache",
      );
    }
    this.#follower = follower;
    this.cost = cost;
    this.#loop = this.#run();
  }

  trusted(): boolean {
    return performance.now() < this.#leaseUntil;
  }

  /** A write was answered without its record: no lease until the outbox is empty. */
  overdue(): void {
    this.#overdue = true;
    this.#leaseUntil = Number.NEGATIVE_INFINITY;
  }

  /** The outbox is empty: renewals may renew again. */
  recorded(): void {
    this.#overdue = false;
  }

  /**
   * This node's own record is in the log under `log`: it applies it, and any before it it
   * has not read yet (the reader may have applied them already): `missed`, those the
   * append's reply brought, then any others it reads. Should that fail, the reader applies
   * them, and the barrier waits for this node like any other.
   */
  async appended(
    log: string,
    own: Delivered,
    missed: readonly StreamEntry[],
    cost?: Cost,
  ): Promise<void> {
    if (log !== this.#log) {
      this.#restart = true; // a new log: this node starts over from its snapshot
    } else if (own.seq <= this.#applied && this.#payloads.get(own.seq) !== own.payload) {
      // This node applied another record under that seq: the log went back.
      await this.#wentBack();
    } else {
      // Checked as the reader's are (in order, each after the one applied last).
      if (missed.length > 0) this.#deliver(missed.map((r) => parseRecord(r, this.#link.node)));
      await this.#catchUp(own.seq, own, cost).catch(() => {});
    }
    // What is left is the reader's: it starts over, or reads the records. A reader waiting
    // on its bell would otherwise not know before its next renewal, with this write's
    // barrier waiting for it.
    if (this.#restart || this.#applied < own.seq) this.#ring();
  }

  /**
   * Wakes this node's reader where it waits on its bell, as APPEND rings it (one element,
   * the same expiry); nothing waits for the answer.
   */
  #ring(): void {
    const bell = this.#bell;
    this.cost?.add(3, 0);
    this.#link.client
      .pipeline()
      .lpush(bell, "0")
      .ltrim(bell, 0, 0)
      .pexpire(bell, BELL_LEASES * this.#link.s.leaseMs)
      .exec()
      .catch(() => {});
  }

  /** Stops following: the lease ends now, and the read loop has ended when this resolves. */
  async close(): Promise<void> {
    this.#leaseUntil = Number.NEGATIVE_INFINITY;
    this.#reader.disconnect();
    await this.#loop;
    await this.#renewing;
  }

  /** The log went back (it lost records this node applied): make it a new log, start over. */
  #wentBack(): Promise<unknown> {
    const { client, keys } = this.#link;
    this.#leaseUntil = Number.NEGATIVE_INFINITY;
    this.#restart = true;
    this.cost?.add(1);
    this.#resealing = client.ecReseal(...keys, randomId(), this.#log).catch(() => {});
    return this.#resealing;
  }

  #blockMs(): number {
    // Each read returns at least this often, and each return renews the lease.
    return Math.floor(renewAfterMs(REDIS_LOG_LEASE, this.#link.s.leaseMs));
  }

  async #run(): Promise<void> {
    const link = this.#link;
    // Whether the next read carries a renewal (this node's acknowledgement).
    let renew = false;
    while (!link.closed) {
      try {
        if (this.#restart) {
          await this.#start();
          renew = false;
        }
        const reply = await this.#read(renew);
        renew = false;
        const before = this.#applied;
        const records = reply?.[0]?.[1].map((r) => parseRecord(r, link.node)) ?? [];
        // Tell writers only once the records' patches are in, so the first read after
        // the ack is a hit; not much later, should a large invalidation take its time.
        await settledWithin(this.#deliver(records), link.patience(APPLY_WAIT_MS, link.trips));
        // A read that brought only this node's own records (applied as it appended them, or
        // here when the read beat the append's reply) acknowledges nothing anyone waits
        // for: it renews only when the lease wants it, sparing a writer a round trip a write.
        const applied = this.#applied;
        const fresh =
          records.length === 0 || records.some((r) => !r.own && r.seq > before && r.seq <= applied);
        renew = fresh || performance.now() - this.#renewedAt >= this.#blockMs();
      } catch (err) {
        if (link.closed) return;
        this.#failed(err);
        await sleep(RETRY_MS * 4);
      }
    }
  }

  /**
   * The next records, waiting for them where there are none yet. A node with others on the
   * log waits on the stream (XREAD's BLOCK), as does one that applied another node's record
   * in the last quarter lease. A node alone on the log (its last renewal counted no other
   * member, and it heard from none lately) reads what the stream holds without waiting,
   * and then waits on its bell, which only another node's append rings (see bellKey): its
   * own appends, applied as their replies come, no longer wake its reader, and it sends no
   * read after each. That wake-up and that read cost a lone node about a tenth of a write's
   * CPU. A record from another node (one that joins, or a writer without a lease) is read a
   * round trip later, the bell's; the node then waits on the stream for the next ones.
   */
  async #read(renew: boolean): Promise<XReadReply> {
    const alone = () => this.#members <= 1 && performance.now() - this.#heardAt >= this.#blockMs();
    const wait = alone() ? undefined : this.#blockMs();
    const records = await this.#readStream(renew, wait);
    if (wait !== undefined || records || !alone()) return records;
    this.cost?.add(1);
    const rung = await this.#reader.blpop(this.#bell, this.#blockMs() / 1000);
    return rung ? this.#readStream(false, undefined) : null;
  }

  /**
   * A read of the stream, blocking for `blockMs` if given; with `renew`, this node's
   * renewal goes ahead of it on the reader's connection, in the same send: a record
   * appended meanwhile is read one round trip sooner than after the renewal's reply, and
   * the node pays one send for both where two cost it twice the CPU (each send is a system
   * call and a wake-up of Redis). The renewal's reply is handled as it comes, before the
   * read returns.
   */
  async #readStream(renew: boolean, blockMs: number | undefined): Promise<XReadReply> {
    const stream = this.#link.keys[1]!;
    const from = `${this.#applied}-0`;
    this.cost?.add(1);
    if (!renew) {
      const read =
        blockMs === undefined
          ? this.#reader.xread("COUNT", READ_COUNT, "STREAMS", stream, from)
          : this.#reader.xread("COUNT", READ_COUNT, "BLOCK", blockMs, "STREAMS", stream, from);
      return (await read) as XReadReply;
    }
    const pipeline = this.#reader.pipeline() as ReturnType<RedisClient["pipeline"]> & EvalshaCall;
    this.cost?.add(1, 0);
    const sent = performance.now();
    this.#renewedAt = sent;
    const keys = this.#link.keys.length;
    this.#renewing = new Promise<void>((resolve) => {
      pipeline.evalsha(RENEW_SHA, keys, ...this.renewArgs(), (err, reply) => {
        if (err?.message.includes("NOSCRIPT")) {
          // Redis lost its scripts (it restarted): the client's script loads it again.
          resolve(this.#renew().catch((e: unknown) => this.#failed(e)));
          return;
        }
        if (err) this.#failed(err);
        else {
          this.#link.trips.add(performance.now() - sent);
          this.renewed(sent, reply as RenewReply);
        }
        resolve();
      });
    });
    if (blockMs === undefined) pipeline.xread("COUNT", READ_COUNT, "STREAMS", stream, from);
    else pipeline.xread("COUNT", READ_COUNT, "BLOCK", blockMs, "STREAMS", stream, from);
    const [, [err, reply] = [null, null]] = (await pipeline.exec()) ?? [];
    if (err) throw err;
    return reply as XReadReply;
  }

  #failed(err: unknown): void {
    if (this.#link.closed) return;
    this.#link.failures++;
    this.#link.report(
      "read",
      `[edgecache] [${C}] cannot read the log; serving from the source`,
      err,
    );
  }

  /**
   * (Re)starts from the log's snapshot: its head, each table's last change, and the history
   * kept in Redis (history.ts), whether this is the node's first start or it missed records.
   */
  async #start(): Promise<void> {
    const { client, keys, node, s } = this.#link;
    // Only the first start compares: later ones follow a log this node was part of.
    const stamp = this.#started ? "" : (s.sourceStamp?.start ?? "");
    await this.#resealing;
    this.cost?.add(1);
    const [log, head, tables, mark, saved, records] = (await client.ecStart(
      ...keys,
      randomId(),
      stamp,
      s.retain,
    )) as [string, string, string[], string, [string?, string?, string?], [string, string[]][]];
    const lastChanges = new Map<string, number>();
    for (let i = 0; i + 1 < tables.length; i += 2)
      lastChanges.set(tables[i]!, Number(tables[i + 1]));
    this.#log = log;
    this.#applied = Number(head);
    this.#mark = mark;
    this.#payloads.clear();
    this.#restart = false;
    this.#started = true;
    const past = records.map((r) => parseRecord(r, node));
    const history = this.#history.started(log, this.#applied, saved, past);
    if (this.#follower) {
      this.#follower.reset({ position: { log, seq: this.#applied }, lastChanges, history });
      this.#history.applied(this.#applied, this.#follower);
    }
    await this.#renew();
  }

  async #renew(): Promise<void> {
    const sent = performance.now();
    this.#renewedAt = sent;
    this.cost?.add(1);
    const reply = (await this.#link.client.ecRenew(...this.renewArgs())) as RenewReply;
    this.#link.trips.add(performance.now() - sent);
    this.renewed(sent, reply);
  }

  /** RENEW's arguments; while a record is overdue, none that renews (see `overdue`). */
  renewArgs(): (string | number)[] {
    const { keys, node, channel, s } = this.#link;
    const log = this.#overdue ? "" : this.#log;
    return [...keys, randomId(), node, this.#applied, s.leaseMs, log, channel, this.#mark];
  }

  /** What a renewal sent at `sent` says: the lease, or that the log is not this node's. */
  renewed(sent: number, [log, , granted, members]: RenewReply): void {
    this.#members = Number(members);
    if (this.#overdue) {
      this.#leaseUntil = Number.NEGATIVE_INFINITY; // it did not renew (see renewArgs)
    } else if (log !== this.#log) {
      // Redis lost the log (restarted empty): what this node holds cannot be checked.
      this.#leaseUntil = Number.NEGATIVE_INFINITY;
      this.#restart = true;
    } else if (Number(granted) === 1 && !this.#link.closed && !this.#restart) {
      // A renewal in flight when the log closed gives no lease back: closed is untrusted.
      // Nor while a restart is pending: a renewal sent before the node noticed that the log
      // went back says nothing of what it holds.
      this.#leaseUntil = trustedUntil(REDIS_LOG_LEASE, sent, this.#link.s.leaseMs);
    }
  }

  /** Applies records in order; a gap (records trimmed before this node read them) restarts it. */
  #deliver(records: Delivered[]): Promise<unknown>[] {
    const applying: Promise<unknown>[] = [];
    for (const delivered of records) {
      if (delivered.seq <= this.#applied) continue;
      const { payload, mark, prev, ...record } = delivered;
      if (record.seq !== this.#applied + 1) {
        this.#leaseUntil = Number.NEGATIVE_INFINITY;
        this.#restart = true;
        break;
      }
      if (prev !== undefined && this.#mark !== "" && prev !== this.#mark) {
        // It follows another record than the one this node applied last: the log lost
        // that one (and maybe more) and reused its seq.
        void this.#wentBack();
        break;
      }
      this.#applied = record.seq;
      if (!record.own) this.#heardAt = performance.now();
      this.#mark = mark ?? "";
      this.#payloads.set(record.seq, payload);
      this.#payloads.delete(record.seq - RECENT_PAYLOADS);
      if (this.#follower) applying.push(this.#follower.apply(record));
    }
    if (this.#follower && applying.length > 0) this.#history.applied(this.#applied, this.#follower);
    return applying;
  }

  /** Applies every record up to `seq` (this node's own append), fetching any it has not read. */
  async #catchUp(seq: number, own: Delivered, cost: Cost | undefined): Promise<void> {
    const { client, keys, node } = this.#link;
    while (this.#applied < seq && !this.#restart) {
      if (this.#applied + 1 === seq) {
        this.#deliver([own]);
        break;
      }
      cost?.add(1);
      const entries = (await client.xrange(
        keys[1]!,
        `(${this.#applied}-0`,
        `${seq}-0`,
      )) as StreamEntry[];
      // The reader may have applied some meanwhile (#deliver skips those); none at all
      // means they were trimmed, and a gap within them restarts the node in #deliver.
      if (entries.length === 0) this.#restart = true;
      else this.#deliver(entries.map((r) => parseRecord(r, node)));
    }
  }
}

function parseRecord([id, fields]: StreamEntry, node: string): Delivered {
  const seq = Number(id.slice(0, id.indexOf("-")));
  const field = (name: string) => {
    const at = fields.indexOf(name);
    return at >= 0 ? fields[at + 1] : undefined;
  };
  const payload = field("ops") ?? "[]";
  const mark = field("mark");
  const prev = field("prev");
  // Parsed when applied: a node reads its own records back, mostly applied already.
  let ops: ChangeOp[] | undefined;
  return {
    seq,
    get ops() {
      ops ??= JSON.parse(payload) as ChangeOp[];
      return ops;
    },
    ordered: field("ordered") === "1",
    own: field("node") === node,
    payload,
    ...(mark !== undefined && { mark }),
    ...(prev !== undefined && { prev }),
  };
}
