import { badOption, EdgecacheError } from "../../core/errors.ts";
import { randomId } from "../../core/random-id.ts";
import { rateLimited, type Warner } from "../../core/report.ts";
import {
  connectRedis,
  duplicateClient,
  type RedisClient,
  type RedisConnectOptions,
} from "../../stores/redis-connect.ts";
import {
  type ChangeLog,
  type ChangeOp,
  type ChangeRecord,
  changedTables,
  type LogFollower,
  type LogPosition,
  type WriteTurn,
} from "../contract.ts";

export interface RedisChangeLogOptions extends RedisConnectOptions {
  /** Key prefix of the deployment ("edgecache:"); nodes with one prefix share one log. */
  prefix?: string;
  /** How long a node serves from cache after it last heard the log (ms). */
  leaseMs?: number;
  /** Records kept in the stream; a node further behind starts over from a snapshot. */
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

/**
 * The lease. A node that stops hearing the log (Redis down, a partition, a paused process)
 * stops serving from cache within this time, and a write waits at most about this long for
 * a node that stopped applying. 2 s: far above a loopback or in-region round trip (a lease
 * that lapses under normal jitter would cost hit rate for nothing), and short enough that
 * a stuck node delays writes only briefly.
 */
export const DEFAULT_LEASE_MS = 2000;
const DEFAULT_RETAIN = 10_000;
const DEFAULT_APPEND_TIMEOUT_MS = 5000;
/** A lease is trusted this much less than it lasts in Redis: timers and clocks drift. */
const LEASE_MARGIN_MS = 50;
/** Records fetched per read. */
const READ_COUNT = 1000;
const RETRY_MS = 50;
/** How long a node waits for records' patches to be stored before it reports them applied. */
const APPLY_WAIT_MS = 100;
/** How often a writer waiting for the write turn asks again without a wake-up. */
const TURN_POLL_MS = 10;
/** Payloads of applied records kept, to tell this node's own record from another's. */
const RECENT_PAYLOADS = 4096;
const C = "redis-log";

// Every script starts here: the log's id, made anew (with everything else emptied) when
// Redis lost it, and the server's time (one clock for every lease).
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = redis.call('HGET', KEYS[1], 'id')
if not id then
  id = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
  redis.call('HSET', KEYS[1], 'id', id, 'created', now, 'seq', 0)
end
`;

/**
 * A record, under the next gap-free seq; each table it changes remembers that seq (ARGV:
 * ops, retain, the writer's turn token or "", the wake-up channel, the writer's node,
 * tables). The record is ordered when its writer still holds the write turn, which it gives
 * back here.
 */
const APPEND = `${PRELUDE}
local ordered = '0'
if ARGV[4] ~= '' and redis.call('GET', KEYS[7]) == ARGV[4] then
  ordered = '1'
  redis.call('DEL', KEYS[7])
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'ops', ARGV[2], 'ordered', ordered, 'node', ARGV[6])
for i = 7, #ARGV do redis.call('HSET', KEYS[3], ARGV[i], seq) end
if ordered == '1' then redis.call('PUBLISH', ARGV[5], 0) end
return {id, seq, ordered}
`;

/** The log's id and head, and whether a node holds the write turn. */
const QUIET = `
return {redis.call('HGET', KEYS[1], 'id'), redis.call('HGET', KEYS[1], 'seq'), redis.call('EXISTS', KEYS[7])}
`;

/** A write turn given back unused (ARGV: its token, the wake-up channel). */
const RELEASE = `
if redis.call('GET', KEYS[7]) == ARGV[1] then
  redis.call('DEL', KEYS[7])
  redis.call('PUBLISH', ARGV[2], 0)
end
return 1
`;

/** Where a node starts: the log's id, its head, and each table's last change. */
const START = `${PRELUDE}
if ARGV[2] ~= '' and redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf') == 0
    and redis.call('HGET', KEYS[1], 'stamp') ~= ARGV[2] then
  -- The source changed while no node followed the log (or the last one did not leave
  -- cleanly): nothing cached before can be checked. One record invalidates it all.
  local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'ops', '[{"prefix":""}]')
  redis.call('HSET', KEYS[3], '', seq)
end
return {id, redis.call('HGET', KEYS[1], 'seq'), redis.call('HGETALL', KEYS[3])}
`;

/**
 * The log went back (Redis restored an older snapshot, or a replica that lagged took
 * over): its positions no longer mean what the nodes applied. It becomes a new log, which
 * every node notices at its next renewal and starts over from.
 */
const RESEAL_BODY = `
  id = ARGV[1]
  redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
  redis.call('HSET', KEYS[1], 'id', id, 'created', now)
`;

/** A writer whose record got a seq it had already applied: RESEAL_BODY, once. */
const RESEAL = `${PRELUDE}
if id == ARGV[2] then
${RESEAL_BODY}
end
return id
`;

/**
 * A node reports what it applied and renews its lease (ARGV: node, applied, lease, the
 * log it follows, the wake-up channel). A member stays one while it keeps up (it applied
 * what the log held at its previous renewal); a node that is not a member joins only when
 * it has applied the whole log, since writes were acknowledged without it.
 */
const RENEW_BODY = `
local head = tonumber(redis.call('HGET', KEYS[1], 'seq'))
local granted = 0
if id == ARGV[5] and tonumber(ARGV[3]) > head then
${RESEAL_BODY}
end
if id == ARGV[5] then
  local applied = tonumber(ARGV[3])
  local expiry = redis.call('ZSCORE', KEYS[4], ARGV[2])
  local member = expiry and tonumber(expiry) > now
  local previous = tonumber(redis.call('HGET', KEYS[6], ARGV[2]) or '0')
  if (member and applied >= previous) or ((not member) and applied >= head) then
    redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), ARGV[2])
    granted = 1
  end
  redis.call('HSET', KEYS[5], ARGV[2], applied)
  redis.call('HSET', KEYS[6], ARGV[2], head)
  redis.call('PUBLISH', ARGV[6], applied)
end
local members = redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf')
`;

const RENEW = `${PRELUDE}${RENEW_BODY}
return {id, head, granted, members}
`;

/**
 * A writer renews (as RENEW) and asks whether its record (ARGV: seq, its log) may be
 * acknowledged: every member has applied it (a node whose lease ran out no longer serves
 * from cache), and a new log is older than a lease (nodes of the old one may still serve
 * until they notice). Returns RENEW's answer, then {members behind, ms to wait at most}.
 */
const BARRIER = `${PRELUDE}${RENEW_BODY}
local wait = tonumber(redis.call('HGET', KEYS[1], 'created')) + tonumber(ARGV[4]) - now
local behind = 0
if id == ARGV[8] then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  local members = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local applied = tonumber(redis.call('HGET', KEYS[5], members[i]) or '0')
    if applied < tonumber(ARGV[7]) then
      behind = behind + 1
      wait = math.max(wait, tonumber(members[i + 1]) - now)
    end
  end
end
return {id, head, granted, members, behind, math.max(wait, 0)}
`;

/** A node leaves; the last to leave keeps the source's stamp for START to compare. */
const LEAVE = `${PRELUDE}
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'stamp', ARGV[3]) end
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HDEL', KEYS[5], ARGV[2])
redis.call('HDEL', KEYS[6], ARGV[2])
return 1
`;

type Script =
  | "ecAppend"
  | "ecStart"
  | "ecRenew"
  | "ecBarrier"
  | "ecLeave"
  | "ecReseal"
  | "ecRelease"
  | "ecQuiet";
type ScriptClient = RedisClient &
  Record<Script, (...args: (string | number)[]) => Promise<unknown>>;

/**
 * The change log in Redis: a stream of records under a gap-free counter, appended by one
 * script so the order is global (Redis Cluster too: every key shares one hash slot). Each
 * node reads the stream with a blocking read, applies records in order, and renews a
 * lease; a write is acknowledged once every node holding a lease has applied it. Pub/sub
 * only wakes waiting writers: the stream is the truth.
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
  if (!(Number.isFinite(leaseMs) && leaseMs >= 200)) {
    badOption(C, "leaseMs", "a number of ms >= 200", leaseMs);
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

interface Settings {
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

export class RedisChangeLog implements ChangeLog {
  readonly name = "redis";
  /** Other nodes load from the source too: a response may show a record not applied yet. */
  readonly shared = true;

  nodes(): number {
    return this.#members;
  }

  async claim(name: string): Promise<boolean> {
    try {
      const taken = await this.#client.set(
        this.#claims + name,
        this.node,
        "PX",
        this.#s.leaseMs,
        "NX",
      );
      return taken === "OK";
    } catch (err) {
      this.#failures++;
      this.#report(
        "claim",
        `[edgecache] [${C}] cannot claim work; leaving it to another node`,
        err,
      );
      return false;
    }
  }
  readonly node: string;
  #s: Settings;
  #client: ScriptClient;
  #reader: RedisClient;
  #subscriber: RedisClient;
  #keys: string[];
  #channel: string;
  #follower: LogFollower | undefined;
  /** The log this node follows ("" until it first reached Redis) and the last record applied. */
  #log = "";
  #applied = 0;
  #leaseUntil = Number.NEGATIVE_INFINITY;
  #restart = true;
  #started = false;
  #closed = false;
  #loop: Promise<void> | undefined;
  #wake = new Set<() => void>();
  /** The payloads of the records applied last, by seq: is the record under a seq ours? */
  #payloads = new Map<number, string>();
  /** Wake-ups heard so far: a barrier that heard one while it asked goes again at once. */
  #wakes = 0;
  /**
   * Records the source committed, waiting for the log to take them: one sender sends them
   * in order, retrying until each is in (or the log is closed).
   */
  #outbox: Outgoing[] = [];
  #sending = false;
  /** A record is overdue (its write was answered without it): no lease until it is in. */
  #overdue = false;
  /** Nodes holding a lease, as last heard (this one included once it holds one). */
  #members = 0;
  /** Where claims go (see claim): outside the log's hash slot, since they are many. */
  #claims: string;
  #report: ReturnType<typeof rateLimited>;
  #failures = 0;

  constructor(settings: Settings) {
    this.#s = settings;
    this.node = settings.node;
    const base = `{${settings.prefix}log}`;
    this.#keys = ["meta", "stream", "tables", "nodes", "applied", "heads", "turn"].map(
      (k) => `${base}:${k}`,
    );
    this.#channel = `${base}:wake`;
    this.#claims = `${settings.prefix}claim:`;
    this.#report = rateLimited(settings.logger, () => performance.now());
    const client = settings.client as ScriptClient;
    const scripts: [Script, string][] = [
      ["ecAppend", APPEND],
      ["ecStart", START],
      ["ecRenew", RENEW],
      ["ecBarrier", BARRIER],
      ["ecLeave", LEAVE],
      ["ecReseal", RESEAL],
      ["ecRelease", RELEASE],
      ["ecQuiet", QUIET],
    ];
    for (const [name, lua] of scripts) {
      if (typeof client[name] !== "function") {
        client.defineCommand(name, { numberOfKeys: this.#keys.length, lua });
      }
    }
    this.#client = client;
    // A blocking read holds its connection: the reader has its own, with room for the block.
    this.#reader = duplicateClient(client, this.#blockMs() + settings.commandTimeout);
    this.#subscriber = duplicateClient(client, undefined);
    this.#subscriber.on("message", () => {
      this.#wakes++;
      const waiting = [...this.#wake];
      this.#wake.clear();
      for (const wake of waiting) wake();
    });
    this.#subscriber.subscribe(this.#channel).catch(() => {}); // resubscribes on reconnect
  }

  follow(follower: LogFollower): void {
    if (this.#follower) {
      throw new EdgecacheError(
        "E_BAD_OPTION",
        C,
        "a Redis change log serves one cache; make one per cache",
      );
    }
    this.#follower = follower;
    this.#loop = this.#run();
  }

  trusted(): boolean {
    return performance.now() < this.#leaseUntil;
  }

  get failures(): number {
    return this.#failures;
  }

  /**
   * The write turn is a key in Redis, set if absent with the lease's time to live: a node
   * that stops (or pauses) holding it delays other writers for a lease at most, and a
   * record appended after its turn lapsed is unordered (it invalidates, never patches).
   * Waits a lease for it at most; then, or when Redis cannot be reached, the write goes
   * without it.
   */
  async turn(): Promise<WriteTurn | undefined> {
    const token = `${this.node}:${randomId()}`;
    const until = performance.now() + this.#s.leaseMs;
    while (!this.#closed) {
      const wakes = this.#wakes;
      try {
        const taken = await this.#client.set(this.#keys[6]!, token, "PX", this.#s.leaseMs, "NX");
        if (taken === "OK") return new RedisTurn(token, () => this.#release(token));
      } catch (err) {
        this.#failures++;
        this.#report(
          "turn",
          `[edgecache] [${C}] cannot take the write turn; writing unordered`,
          err,
        );
        return undefined;
      }
      if (performance.now() >= until) return undefined;
      // The holder publishes when it gives the turn back; the timer covers a lost message.
      if (this.#wakes === wakes) await this.#woken(TURN_POLL_MS);
    }
    return undefined;
  }

  #release(token: string): void {
    this.#client.ecRelease(...this.#keys, token, this.#channel).catch((err: unknown) => {
      this.#failures++;
      this.#report("turn", `[edgecache] [${C}] cannot give the write turn back`, err);
    });
  }

  /**
   * A write commits while its writer holds the turn and appends before giving it back, so
   * a load that read the source and then finds no record after its position and no turn
   * held saw no write its position lacks. (A writer whose turn lapsed is missed; its
   * record is unordered and invalidates what it concerns when it arrives.)
   */
  async quietSince(position: LogPosition): Promise<boolean> {
    if (position.log !== this.#log) return false;
    try {
      const [log, head, held] = (await this.#client.ecQuiet(...this.#keys)) as [
        string,
        string,
        number,
      ];
      return log === position.log && Number(head) === position.seq && Number(held) === 0;
    } catch (err) {
      this.#failures++;
      this.#report("quiet", `[edgecache] [${C}] cannot read the log's head`, err);
      return false;
    }
  }

  async append(ops: readonly ChangeOp[], turn?: WriteTurn): Promise<number> {
    const deadline = performance.now() + this.#s.appendTimeoutMs;
    let sent!: (reply: AppendReply) => void;
    const token = turn instanceof RedisTurn ? turn.token : "";
    const outgoing: Outgoing = {
      args: [
        JSON.stringify(ops),
        String(this.#s.retain),
        token,
        this.#channel,
        this.node,
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
        timer = setTimeout(() => resolve(undefined), this.#s.appendTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!reply) {
      // It stays in the outbox; until it is in, this node serves nothing from cache.
      this.#overdue = true;
      this.#leaseUntil = Number.NEGATIVE_INFINITY;
      throw new EdgecacheError(
        "E_LOG_UNAVAILABLE",
        C,
        "the write was made, but the change log could not be reached to record it; it is recorded once Redis answers again",
      );
    }
    const [log, seq, ordered] = reply;
    const payload = outgoing.args[0]!;
    if (log !== this.#log) {
      this.#restart = true; // a new log: this node starts over from its snapshot
    } else if (seq <= this.#applied && this.#payloads.get(seq) !== payload) {
      // This node applied another record under that seq: the log went back. Make it new.
      await this.#client.ecReseal(...this.#keys, randomId(), log).catch(() => {});
      this.#restart = true;
    } else {
      // Its own record, and any before it this node has not read yet (the reader may have
      // applied them already). Should that fail, the reader applies them, and the barrier
      // waits for this node like any other.
      await this.#catchUp(seq, { seq, ops, ordered, own: true, payload }).catch(() => {});
    }
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
    void (async () => {
      while (this.#outbox.length > 0 && !this.#closed) {
        const next = this.#outbox[0]!;
        try {
          const reply = (await this.#client.ecAppend(...this.#keys, randomId(), ...next.args)) as [
            string,
            number,
            string,
          ];
          this.#outbox.shift();
          next.sent([reply[0], Number(reply[1]), reply[2] === "1"]);
        } catch (err) {
          this.#failures++;
          this.#report("append", `[edgecache] [${C}] append failed; retrying`, err);
          await sleep(RETRY_MS);
        }
      }
      if (this.#outbox.length === 0) this.#overdue = false;
      this.#sending = false;
    })();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#leaseUntil = Number.NEGATIVE_INFINITY;
    for (const wake of this.#wake) wake();
    this.#reader.disconnect();
    this.#subscriber.disconnect();
    // The loop ends first: a renewal it sent after LEAVE would put this node's lease back,
    // and a restart within that lease would skip the stamp's check (a write made while no
    // node ran would go unnoticed).
    await this.#loop;
    // Writers stop waiting for this node at once rather than when its lease runs out.
    const stamp = this.#s.sourceStamp?.current() ?? "";
    await this.#client.ecLeave(...this.#keys, randomId(), this.node, stamp).catch(() => {});
    if (this.#s.owned) this.#s.client.disconnect();
  }

  // --- following ---------------------------------------------------------------------

  #blockMs(): number {
    // Each read returns at least this often, and each return renews the lease.
    return Math.floor(this.#s.leaseMs / 4);
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      try {
        if (this.#restart) await this.#start();
        const reply = (await this.#reader.xread(
          "COUNT",
          READ_COUNT,
          "BLOCK",
          this.#blockMs(),
          "STREAMS",
          this.#keys[1]!,
          `${this.#applied}-0`,
        )) as [string, [string, string[]][]][] | null;
        if (reply?.[0]) {
          // Tell writers only once the records' patches are in, so the first read after
          // the ack is a hit; not much later, should a large invalidation take its time.
          await settledWithin(
            this.#deliver(reply[0][1].map((r) => parseRecord(r, this.node))),
            APPLY_WAIT_MS,
          );
        }
        await this.#renew();
      } catch (err) {
        if (this.#closed) return;
        this.#failures++;
        this.#report(
          "read",
          `[edgecache] [${C}] cannot read the log; serving from the source`,
          err,
        );
        await sleep(RETRY_MS * 4);
      }
    }
  }

  /** (Re)starts from the log's snapshot: its head and each table's last change. */
  async #start(): Promise<void> {
    // Only the first start compares: later ones follow a log this node was part of.
    const stamp = this.#started ? "" : (this.#s.sourceStamp?.start ?? "");
    const [log, head, tables] = (await this.#client.ecStart(
      ...this.#keys,
      randomId(),
      stamp,
      this.#s.retain,
    )) as [string, string, string[]];
    const lastChanges = new Map<string, number>();
    for (let i = 0; i + 1 < tables.length; i += 2)
      lastChanges.set(tables[i]!, Number(tables[i + 1]));
    this.#log = log;
    this.#applied = Number(head);
    this.#payloads.clear();
    this.#restart = false;
    this.#started = true;
    this.#follower?.reset({ position: { log, seq: this.#applied }, lastChanges });
    await this.#renew();
  }

  async #renew(): Promise<void> {
    const sent = performance.now();
    this.#renewed(sent, (await this.#client.ecRenew(...this.#renewArgs())) as RenewReply);
  }

  /** RENEW's arguments; while a record is overdue, none that renews (see append). */
  #renewArgs(): (string | number)[] {
    const log = this.#overdue ? "" : this.#log;
    const { node, leaseMs } = { node: this.node, leaseMs: this.#s.leaseMs };
    return [...this.#keys, randomId(), node, this.#applied, leaseMs, log, this.#channel];
  }

  /** What a renewal sent at `sent` says: the lease, or that the log is not this node's. */
  #renewed(sent: number, [log, , granted, members]: RenewReply): void {
    this.#members = Number(members);
    if (this.#overdue) {
      this.#leaseUntil = Number.NEGATIVE_INFINITY; // it did not renew (see #renewArgs)
    } else if (log !== this.#log) {
      // Redis lost the log (restarted empty): what this node holds cannot be checked.
      this.#leaseUntil = Number.NEGATIVE_INFINITY;
      this.#restart = true;
    } else if (Number(granted) === 1) {
      this.#leaseUntil = sent + this.#s.leaseMs - LEASE_MARGIN_MS;
    }
  }

  /** Applies records in order; a gap (records trimmed before this node read them) restarts it. */
  #deliver(records: Delivered[]): Promise<unknown>[] {
    const applying: Promise<unknown>[] = [];
    for (const { payload, ...record } of records) {
      if (record.seq <= this.#applied) continue;
      if (record.seq !== this.#applied + 1) {
        this.#leaseUntil = Number.NEGATIVE_INFINITY;
        this.#restart = true;
        break;
      }
      this.#applied = record.seq;
      this.#payloads.set(record.seq, payload);
      this.#payloads.delete(record.seq - RECENT_PAYLOADS);
      if (this.#follower) applying.push(this.#follower.apply(record));
    }
    return applying;
  }

  /** Applies every record up to `seq` (this node's own append), fetching any it has not read. */
  async #catchUp(seq: number, own: Delivered): Promise<void> {
    while (this.#applied < seq && !this.#restart) {
      if (this.#applied + 1 === seq) {
        this.#deliver([own]);
        break;
      }
      const entries = (await this.#client.xrange(
        this.#keys[1]!,
        `(${this.#applied}-0`,
        `${seq}-0`,
      )) as [string, string[]][];
      // The reader may have applied some meanwhile (#deliver skips those); none at all
      // means they were trimmed, and a gap within them restarts the node in #deliver.
      if (entries.length === 0) this.#restart = true;
      else this.#deliver(entries.map((r) => parseRecord(r, this.node)));
    }
  }

  /**
   * Waits until the record may be acknowledged (see BARRIER), renewing this node's lease
   * with each ask: it tells the others, and its own membership, that it applied the record.
   */
  async #barrier(log: string, seq: number, deadline: number): Promise<void> {
    for (;;) {
      let behind: number;
      let wait: number;
      const wakes = this.#wakes;
      const sent = performance.now();
      try {
        const reply = (await this.#client.ecBarrier(...this.#renewArgs(), seq, log)) as [
          ...RenewReply,
          number,
          number,
        ];
        this.#renewed(sent, [reply[0], reply[1], reply[2], reply[3]]);
        [behind, wait] = [Number(reply[4]), Number(reply[5])];
      } catch (err) {
        this.#failures++;
        // Nodes that cannot reach Redis either lose their lease or have applied the record.
        if (this.#closed || performance.now() > deadline + this.#s.leaseMs) {
          throw unconfirmed(err);
        }
        await sleep(RETRY_MS);
        continue;
      }
      if (behind === 0 && wait <= 0) return;
      if (this.#closed) throw unconfirmed(new Error("closed"));
      if (behind > 0 && this.#wakes !== wakes) continue; // a node applied meanwhile: ask again
      await this.#woken(behind === 0 ? wait : Math.min(wait, 100));
    }
  }

  /** Resolves at the next wake-up heard, or after `ms`. */
  #woken(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const wake = this.#wake;
      function done() {
        clearTimeout(timer);
        wake.delete(done);
        resolve();
      }
      wake.add(done);
    });
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

type RenewReply = [log: string, head: number, granted: number, members: number];

/** A record on its way into the log, and the append waiting for its seq. */
interface Outgoing {
  args: string[];
  reply: Promise<AppendReply>;
  sent(reply: AppendReply): void;
}

/** A record as the stream holds it; `payload` is its ops' JSON, as appended. */
type Delivered = ChangeRecord & { payload: string };

function parseRecord([id, fields]: [string, string[]], node: string): Delivered {
  const seq = Number(id.slice(0, id.indexOf("-")));
  const field = (name: string) => {
    const at = fields.indexOf(name);
    return at >= 0 ? fields[at + 1] : undefined;
  };
  const payload = field("ops") ?? "[]";
  return {
    seq,
    ops: JSON.parse(payload) as ChangeOp[],
    ordered: field("ordered") === "1",
    own: field("node") === node,
    payload,
  };
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves when every promise has settled, or after `ms`, whichever comes first. */
async function settledWithin(promises: Promise<unknown>[], ms: number): Promise<void> {
  if (promises.length === 0) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.allSettled(promises),
    new Promise((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}
