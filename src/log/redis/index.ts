import type {
  ChangeLog,
  ChangeOp,
  LogFollower,
  LogPosition,
  WriteTurn,
} from "../../core/change-log/contract.ts";
import type { Cost } from "../../core/cost.ts";
import { badOption } from "../../core/errors.ts";
import { randomId } from "../../core/random-id.ts";
import type { Warner } from "../../core/report.ts";
import { REDIS_LOG_LEASE } from "../../core/time/lease.ts";
import { connectRedis, type RedisConnectOptions } from "../../redis/connect.ts";
import { RedisFollower } from "./follower.ts";
import { C, Link, type Settings } from "./link.ts";
import { RedisWriter } from "./writer.ts";

export interface RedisChangeLogOptions extends RedisConnectOptions {
  /** Key prefix of the deployment ("edgecache:"); nodes with one prefix share one log. */
  prefix?: string;
  /** How long a node serves from cache after it last heard the log (ms). */
  leaseMs?: number;
  /**
   * Records kept in the stream; a node further behind starts over from a snapshot. The
   * log's history (history.ts) is saved at least every quarter of it.
   */
  retain?: number;
  /** How long a write waits for the log to take its record (ms) before it fails. */
  appendTimeoutMs?: number;
  /** This node's name in the log (random by default). */
  node?: string;
  /**
   * Stamps of the source's files: taken before the node opened them, and when it leaves
   * (after it closed them). A change while no node followed the log invalidates what was
   * cached.
   */
  sourceStamp?: { start: string; current(): string };
  logger?: Warner;
}

/** The default lease (the policy and its reasons: REDIS_LOG_LEASE in core/time/lease.ts). */
export const DEFAULT_LEASE_MS = REDIS_LOG_LEASE.ms;
const DEFAULT_RETAIN = 10_000;
const DEFAULT_APPEND_TIMEOUT_MS = 5000;

/**
 * The change log in Redis: a stream of records under a gap-free counter, appended by one
 * script so the order is global (Redis Cluster too: every key shares one hash slot). Each
 * node reads the stream with a blocking read, applies records in order, and renews a
 * lease; a write is acknowledged once every node holding a lease has applied it. Pub/sub
 * wakes waiting writers and carries each renewal's applied position as Redis records it,
 * so a writer hears its record acknowledged without asking; a message lost costs it a
 * question to Redis, never order: the stream is the truth.
 *
 * @example
 * const log = await redisChangeLog({ url: "redis://127.0.0.1:6379" });
 * const cache = createCache({ tiers: [memoryStore(), await redisStore({ url })], log });
 */
export async function redisChangeLog(options: RedisChangeLogOptions): Promise<RedisChangeLog> {
  if (typeof options !== "object" || options === null)
    badOption(C, "options", "an object", options);
  const prefix = options.prefix ?? "edgecache:";
  if (typeof prefix !== "string") badOption(C, "prefix", "a string", prefix);
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  const minMs = REDIS_LOG_LEASE.minMs!;
  if (!(Number.isFinite(leaseMs) && leaseMs >= minMs)) {
    badOption(C, "leaseMs", `a number of ms >= ${minMs}`, leaseMs);
  }
  const retain = options.retain ?? DEFAULT_RETAIN;
  if (!(Number.isInteger(retain) && retain >= 100)) {
    badOption(C, "retain", "an integer >= 100", retain);
  }
  const appendTimeoutMs = options.appendTimeoutMs ?? DEFAULT_APPEND_TIMEOUT_MS;
  if (!(appendTimeoutMs > 0))
    badOption(C, "appendTimeoutMs", "a positive number of ms", appendTimeoutMs);
  const connection = await connectRedis(C, options);
  return new RedisChangeLog({
    ...connection,
    prefix,
    leaseMs,
    retain,
    appendTimeoutMs,
    node: options.node ?? randomId(),
    sourceStamp: options.sourceStamp,
    logger: options.logger ?? console,
  });
}

/**
 * One node's view of the Redis log: a facade over its writer (claims, turns, appends and
 * their barrier; writer.ts) and its follower (the read loop and the lease; follower.ts),
 * which share one link to Redis (link.ts) and the scripts (scripts.ts).
 */
export class RedisChangeLog implements ChangeLog {
  readonly name = "redis";
  /** Other nodes load from the source too: a response may show a record not applied yet. */
  readonly shared = true;
  readonly node: string;
  #link: Link;
  #follower: RedisFollower;
  #writer: RedisWriter;

  constructor(settings: Settings) {
    this.node = settings.node;
    this.#link = new Link(settings);
    this.#follower = new RedisFollower(this.#link);
    this.#writer = new RedisWriter(this.#link, this.#follower);
  }

  nodes(): number {
    return this.#follower.members;
  }

  claim(name: string, cost?: Cost): Promise<boolean> {
    return this.#link.claim(name, cost);
  }

  claimOrAwait(name: string, ms: number, cost?: Cost): Promise<"won" | "done" | "late"> {
    return this.#link.claimOrAwait(name, ms, cost);
  }

  finished(names: readonly string[], cost?: Cost): void {
    this.#link.finished(names, cost);
  }

  follow(follower: LogFollower, cost?: Cost): void {
    this.#follower.follow(follower, cost);
  }

  trusted(): boolean {
    return this.#follower.trusted();
  }

  get failures(): number {
    return this.#link.failures;
  }

  turn(cost?: Cost): Promise<WriteTurn | undefined> {
    return this.#writer.turn(cost);
  }

  quietSince(position: LogPosition, _tables?: readonly string[], cost?: Cost): Promise<boolean> {
    return this.#writer.quietSince(position, cost);
  }

  append(
    ops: readonly ChangeOp[],
    turn?: WriteTurn,
    placed?: (next?: WriteTurn) => void,
    wantsTurn?: () => boolean,
    cost?: Cost,
  ): Promise<number> {
    return this.#writer.append(ops, turn, placed, wantsTurn, cost);
  }

  async close(): Promise<void> {
    const link = this.#link;
    if (link.closed) return;
    link.close();
    // The loop ends first: a renewal it sent after LEAVE would put this node's lease back,
    // and a restart within that lease would skip the stamp's check (a write made while no
    // node ran would go unnoticed).
    await this.#follower.close();
    // Writers stop waiting for this node at once rather than when its lease runs out.
    const stamp = link.s.sourceStamp?.current() ?? "";
    this.#follower.cost?.add(1);
    await link.client
      .ecLeave(...link.keys, randomId(), this.node, stamp, link.channel)
      .catch(() => {});
    if (link.s.owned) link.s.client.disconnect();
  }
}
