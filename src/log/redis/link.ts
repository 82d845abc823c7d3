import type { Cost } from "../../core/cost.ts";
import { rateLimited, type Warner } from "../../core/report.ts";
import { RecentTimes } from "../../core/time/recent-times.ts";
import { duplicateClient, type RedisClient, sentAtOnce } from "../../redis/connect.ts";
import {
  claimGroup,
  claimKey,
  logKeys,
  parseAck,
  parseFinished,
  SCRIPTS,
  wakeChannel,
  withScripts,
} from "./scripts.ts";

export const C = "redis-log";
export const RETRY_MS = 50;

export interface Settings {
  sourceStamp?: { start: string; current(): string };
  client: RedisClient;
  owned: boolean;
  commandTimeout: number;
  prefix: string;
  leaseMs: number;
  retain: number;
  appendTimeoutMs: number;
  node: string;
  logger: Warner;
}

/** Nodes whose last acknowledgement a node keeps (those that left long ago go first). */
const ACKS_KEPT = 1024;

/**
 * What the writer and the follower of one node share: the client with the log's scripts,
 * the log's keys, the wake-ups and acknowledgements heard on its channel, and the count of
 * failed requests.
 */
export class Link {
  readonly s: Settings;
  readonly client: ReturnType<typeof withScripts>;
  readonly keys: string[];
  readonly channel: string;
  readonly node: string;
  readonly report: ReturnType<typeof rateLimited>;
  failures = 0;
  closed = false;
  /** What this node's requests to the log took lately, each a round trip (and its queue). */
  readonly trips = new RecentTimes();
  /** Each node's last applied position heard, in the log it follows (see `acked`). */
  #acks = new Map<string, { log: string; seq: number; mark: number }>();
  /** Messages heard so far: an acknowledgement counts for a record only if heard after it was sent. */
  heard = 0;
  #waiting = new Set<() => void>();
  /** What each claim this node awaits (claimOrAwait) calls when its winner is done. */
  #awaiting = new Map<string, Set<() => void>>();
  #subscriber: RedisClient;
  /**
   * Claims asked for in this turn of the event loop and not sent yet, by group (see
   * claimKey) and by where they count: each group goes in one command (see #claim).
   */
  #batches = new Map<Cost | undefined, Map<string, Claiming[]>>();

  constructor(settings: Settings) {
    this.s = settings;
    this.node = settings.node;
    ({ keys: this.keys, channel: this.channel } = logKeys(settings.prefix));
    this.report = rateLimited(settings.logger, () => performance.now());
    this.client = withScripts(settings.client, this.keys.length);
    // Not queued behind a batch of the tiers sharing the client (see sentAtOnce): across a
    // 40 ms link a write's append would wait behind a tier's reads, its barrier behind the
    // append's deletes.
    sentAtOnce(settings.client, [...SCRIPTS, "xrange"]);
    this.#subscriber = duplicateClient(settings.client, undefined);
    this.#subscriber.on("message", (_channel: string, message: string) => this.#heard(message));
    // Resubscribes on reconnect.
    this.#subscriber.subscribe(this.channel, wakeChannel(this.channel, this.node)).catch(() => {});
  }

  /**
   * The last position `node` was heard to have applied in `log` (-1 if none), if heard after
   * `after` (a value of `heard`): once it is past a record, that node serves nothing the
   * record changed. A node acknowledges a record only after the record was appended, so
   * only messages heard after the append was sent count: one heard before (from before a
   * rollback that reused the seq, or a departure of a node since back under the same name)
   * says nothing of it.
   */
  acked(node: string, log: string, after: number): number {
    const ack = this.#acks.get(node);
    return ack?.log === log && ack.mark > after ? ack.seq : -1;
  }

  /** Whether this node is the first to claim `name` within a lease (see ChangeLog.claim). */
  async claim(name: string, cost?: Cost): Promise<boolean> {
    return (await this.#claim(name, false, cost)) === 1;
  }

  /**
   * ChangeLog.claimOrAwait: a node that loses is registered in the claim, in the same
   * command, and the winner's `finished` publishes to it (scripts.ts, CLAIM and FINISH).
   */
  async claimOrAwait(name: string, ms: number, cost?: Cost): Promise<"won" | "done" | "late"> {
    let heard!: () => void;
    const told = new Promise<void>((resolve) => {
      heard = resolve;
    });
    // Listening before the claim is sent: the winner may finish before its reply is read.
    const listeners = this.#awaiting.get(name) ?? new Set();
    this.#awaiting.set(name, listeners.add(heard));
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const claimed = await this.#claim(name, true, cost);
      if (claimed === 1) return "won";
      if (claimed === 2) return "done";
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), ms);
      });
      return await Promise.race([told.then(() => "done" as const), late]);
    } finally {
      clearTimeout(timer);
      listeners.delete(heard);
      if (listeners.size === 0 && this.#awaiting.get(name) === listeners) {
        this.#awaiting.delete(name);
      }
    }
  }

  /** ChangeLog.finished: one command per group of claims (a record's), none waited for. */
  finished(names: readonly string[], cost?: Cost): void {
    for (const group of groups(names)) {
      cost?.add(1, 0);
      const keys = group.map((name) => claimKey(this.s.prefix, name));
      this.client.ecFinish(keys.length, ...keys, this.channel, ...group).catch((err: unknown) => {
        this.failures++;
        this.report("claim", `[edgecache] [${C}] cannot report claimed work done`, err);
      });
    }
  }

  /**
   * CLAIM's answer (1 won, 0 lost, 2 lost and done); 0 when Redis cannot be reached. Claims
   * asked for together (a record's patched and hot keys, on every node) go in one command
   * per group: each command costs a node about as much CPU as the work it asks for.
   */
  #claim(name: string, wait: boolean, cost: Cost | undefined): Promise<number> {
    let batches = this.#batches.get(cost);
    if (!batches) {
      batches = new Map();
      this.#batches.set(cost, batches);
      queueMicrotask(() => this.#sendClaims(cost));
    }
    const group = claimGroup(name);
    const batch = batches.get(group) ?? [];
    batches.set(group, batch);
    return new Promise<number>((resolve) => batch.push({ name, wait, resolve }));
  }

  #sendClaims(cost: Cost | undefined): void {
    const batches = this.#batches.get(cost);
    this.#batches.delete(cost);
    for (const batch of batches?.values() ?? []) {
      cost?.add(1);
      const keys = batch.map(({ name }) => claimKey(this.s.prefix, name));
      const waits = batch.map(({ wait }) => (wait ? 1 : 0));
      this.client.ecClaim(keys.length, ...keys, this.node, this.s.leaseMs, ...waits).then(
        (won) => {
          for (const [i, { resolve }] of batch.entries()) resolve(Number((won as number[])[i]));
        },
        (err: unknown) => {
          this.failures++;
          this.report(
            "claim",
            `[edgecache] [${C}] cannot claim work; leaving it to another node`,
            err,
          );
          for (const { resolve } of batch) resolve(0);
        },
      );
    }
  }

  /**
   * How long to wait for what takes about a round trip lately: twice the longest of `times`
   * (the log's round trips, and whatever else the caller waits on), at least `least` ms, at
   * most a lease. A fixed wait would make a node far from Redis, or one that waits on a far
   * node, give up on nearly every wait.
   */
  patience(least: number, ...times: RecentTimes[]): number {
    let longest = 0;
    for (const t of times) longest = Math.max(longest, t.longest());
    return Math.min(this.s.leaseMs, Math.max(least, 2 * longest));
  }

  /** Resolves when a node acknowledges (or leaves), or after `ms`. */
  woken(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const waiting = this.#waiting;
      function done() {
        clearTimeout(timer);
        waiting.delete(done);
        resolve();
      }
      waiting.add(done);
    });
  }

  /** Stops: whoever waits for a wake-up goes on (and finds the log closed). */
  close(): void {
    this.closed = true;
    this.#wake();
    this.#subscriber.disconnect();
  }

  #heard(message: string): void {
    const finished = parseFinished(message);
    if (finished !== undefined) {
      // Not an acknowledgement: writers are not woken for it.
      for (const heard of this.#awaiting.get(finished) ?? []) heard();
      return;
    }
    const ack = parseAck(message);
    this.heard++;
    if (ack) {
      this.#acks.delete(ack.node); // the newest last, so the oldest go first
      this.#acks.set(ack.node, { ...ack, mark: this.heard });
      if (this.#acks.size > ACKS_KEPT) this.#acks.delete(this.#acks.keys().next().value!);
    }
    this.#wake();
  }

  #wake(): void {
    const waiting = [...this.#waiting];
    this.#waiting.clear();
    for (const wake of waiting) wake();
  }
}

/** A claim waiting to be sent with the others of its group (see Link.#claim). */
interface Claiming {
  name: string;
  wait: boolean;
  resolve(claimed: number): void;
}

/** `names` by group (see claimKey), each in the order given. */
function groups(names: readonly string[]): string[][] {
  const by = new Map<string, string[]>();
  for (const name of names) {
    const group = claimGroup(name);
    const list = by.get(group);
    if (list) list.push(name);
    else by.set(group, [name]);
  }
  return [...by.values()];
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
