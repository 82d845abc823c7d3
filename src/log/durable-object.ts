import {
  type CaptureDrainCounts,
  type CaptureDrainingLog,
  type ChangeOp,
  changedTables,
  type LogFollower,
  type LogHistory,
  type LogPosition,
  type WriteTurn,
} from "../core/change-log/contract.ts";
import { badOption, checkOptionNames, EdgecacheError, type OptionNames } from "../core/errors.ts";
import { randomId } from "../core/random-id.ts";
import { DURABLE_LOG_LEASE, renewDue } from "../core/time/lease.ts";
import { callObject, type DurableObjectNamespaceLike } from "../durable/rpc.ts";
import { type AppendReply, newer, type StoredRecord, type SyncReply } from "./durable-host.ts";

/**
 * The change log on Cloudflare: one Durable Object holds the global order of changes
 * (`ChangeLogObject`), and each isolate follows it through `durableChangeLog`. Isolates
 * cannot be reached from outside a request, so they pull: a request first `sync`s (the
 * records since the isolate's position come back and are applied), and a write's append
 * returns the records before its own. What KV or the Cache API return carries the log
 * position it was loaded at, and the engine's write fence checks it against what the
 * isolate has applied, so a tier's eventual consistency never becomes a stale read.
 *
 * Two modes (`mode`):
 * - `strict`: every request syncs (one round trip to the object before any read). An
 *   isolate holds no lease at the object, so writes never wait for other isolates: a read
 *   that begins after a write was acknowledged syncs after it and sees its record.
 * - `lease`: an isolate syncs only when its lease (`leaseMs`) nears its end, so most
 *   requests make no round trip. In exchange, the object acknowledges a write only once
 *   every isolate holding a lease has reported the record applied or its lease ran out: a
 *   write may wait up to `leaseMs` (isolates that went idle or were evicted never report).
 * - `follower`: strict against a copy of the log near the isolate: a follower object per
 *   region (`region`, named `<name>@<region>`, see `FollowerHost` in durable-follower.ts),
 *   fed by this log's object, which acknowledges a write only once every follower holding
 *   a lease has it (or its lease ran out). Every request syncs with its region's follower,
 *   a near round trip; a follower whose lease lapsed answers "unknown", and the request
 *   syncs with the log's object instead (or, out of its reach too, reads around the cache).
 *   Writes still go to the log's object, and wait for the farthest follower: one more
 *   round trip from the object to it.
 * - `session`: for apps that do not need global strictness. An isolate syncs once per half
 *   `leaseMs`, as in lease mode, but holds no lease: writes wait for nobody, and a client
 *   that carries no session sees other clients' writes within `leaseMs`. A client that
 *   carries its session (the log position of what it last wrote or read, see `position` and
 *   `reach`) reads its own writes and never goes back: an isolate behind that position
 *   syncs first.
 * The first three are exact; they trade read latency (strict) for write latency (lease,
 * follower). Session mode is exact per client that carries its session.
 *
 * A new isolate judges the entries other isolates left in KV, the Cache API or the Durable
 * Object tier by what concerns each of them, not by their tables: the object keeps a summary
 * of the log's past (`LogHistory`, see ChangeBuckets) that an isolate uploads on a call it
 * makes anyway, and a new isolate's first sync brings it with the records after it (see
 * `HISTORY_EVERY`, and `ChangeLogHost` in durable-host.ts, the object's side).
 *
 * D1 read replication: an append carries the bookmark of the newest write this isolate
 * made (`wrote`), the object keeps the newest it was given, and every reply hands it back;
 * `bookmark` is what every write this isolate has applied had reached, so a load that reads
 * D1 at or after it cannot see a row older than a write the cache has promised.
 */

export type ChangeLogMode = "strict" | "lease" | "follower" | "session";

export interface DurableChangeLogOptions {
  /** The Durable Object namespace bound to `ChangeLogObject` (`env.CHANGE_LOG`). */
  namespace: DurableObjectNamespaceLike;
  /** The object's name: one log per name. Default `"edgecache"`. */
  name?: string;
  /** Default `"strict"`. */
  mode?: ChangeLogMode;
  /**
   * Lease mode: how long an isolate trusts its memory after it last heard the log. Follower
   * mode: how long a follower trusts its copy after it last heard the log's object (and so
   * the longest a write waits for a follower cut off from it). Session mode: how long an
   * isolate serves from memory after it last heard the log, the staleness bound for clients
   * without a session. Default 2 s.
   */
  leaseMs?: number;
  /**
   * Follower mode: the isolate's region, which names its follower (`<name>@<region>`). A
   * Cloudflare location hint (`weur`, `enam`, ...) also places the follower there.
   */
  region?: string;
  /**
   * The D1 binding whose change table (D1 change capture) the log's object drains into this
   * log, said on every call to it: a tenant's (`DB_SHOP`), or false for none. Unset, the
   * object drains what its class does (`DB`, or the PostgreSQL of `postgresChangeLogObject`).
   */
  capture?: string | false;
}

export const CHANGE_LOG_MODES: readonly ChangeLogMode[] = [
  "strict",
  "lease",
  "follower",
  "session",
];

/** The default lease of lease mode (the policy: DURABLE_LOG_LEASE in core/time/lease.ts). */
export const DEFAULT_LEASE_MS = DURABLE_LOG_LEASE.ms;
/**
 * Strict mode: how long one sync lets an isolate serve from cache. A request syncs before
 * its reads, so this only bounds a request that runs long.
 */
export const STRICT_TRUST_MS = 5000;
/** An isolate trusts its lease this much less than the object grants it (clock drift). */
export const LEASE_MARGIN_MS = DURABLE_LOG_LEASE.marginMs;
/** The shortest lease: a sync every half lease must leave time beyond the margin. */
export const MIN_LEASE_MS = DURABLE_LOG_LEASE.minMs!;
/** A follower's region name, as a location hint is: letters, digits, - or _. */
export const REGION_NAME = /^[\w-]{1,64}$/;
/**
 * Durable Object location hints (Cloudflare's list): a follower whose region is one of these
 * is created there.
 */
export const LOCATION_HINTS = ["wnam", "enam", "sam", "weur", "eeur", "apac", "oc", "afr", "me"];
/**
 * An isolate uploads its summary of the log (`LogFollower.history`) once the one the object
 * keeps is this many records behind what the isolate applied, on a sync or an append it makes
 * anyway. A new isolate gets the kept summary plus the records after it, each judged exactly,
 * so the count bounds those records in its first reply (a few dozen rows at most, beside the
 * summary) while an upload (the summary's sparse form, at most MAX_HISTORY_CHARS) is made
 * once per that many records by all isolates together, not per request: at 64, a summary of
 * S bytes costs S/64 per record (about 5 KB with all 16,384 buckets raised, far less while
 * sparse), and a new isolate's first reply holds a few dozen records beside it. No timer: the
 * records after the kept summary are retained and exact however old it is; while the object
 * keeps none (a new log), the first isolate that applied a record uploads at once.
 */
export const HISTORY_EVERY = 64;
/** How often a writer asks again for the write turn another isolate holds. */
const TURN_RETRY_MS = 5;

const C = "durable-log";

/** The options DurableChangeLogOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<DurableChangeLogOptions> = {
  capture: true,
  leaseMs: true,
  mode: true,
  name: true,
  namespace: true,
  region: true,
};

/** An isolate's view of the log held by a `ChangeLogObject`. */
export class DurableChangeLog implements CaptureDrainingLog {
  readonly name = C;
  readonly shared = true;
  readonly node = randomId();
  readonly mode: ChangeLogMode;
  readonly leaseMs: number;
  #namespace: DurableObjectNamespaceLike;
  #objectName: string;
  /** Follower mode: the region's follower object, and where to create it. */
  #followerName: string | undefined;
  #hint: string | undefined;
  #follower: LogFollower | undefined;
  #log = "";
  #applied = 0;
  #trustedUntil = Number.NEGATIVE_INFINITY;
  #applying: Promise<void> = Promise.resolve();
  #inflight: Promise<void> | undefined;
  #failures = 0;
  #written: string | undefined;
  #promised: string | undefined;
  /** Whether the last call to the object was answered (a reply carries the bookmark). */
  #heard = false;
  /** Where the object's kept summary reaches, as last told, and this isolate's last upload. */
  #historyFrom = 0;
  #uploaded = 0;
  #capture: string | false | undefined;
  /** Captured changes applied here (see `capturedApplied`). */
  #capturedApplied = 0;

  constructor(options: DurableChangeLogOptions) {
    if (typeof options !== "object" || options === null) {
      badOption(C, "options", "an object", options);
    }
    checkOptionNames(C, options, OPTIONS);
    const {
      namespace,
      name = "edgecache",
      mode = "strict",
      leaseMs = DEFAULT_LEASE_MS,
      region,
      capture,
    } = options;
    if (typeof namespace?.idFromName !== "function") {
      badOption(C, "namespace", "a Durable Object namespace binding", namespace);
    }
    if (!CHANGE_LOG_MODES.includes(mode)) {
      badOption(C, "mode", '"strict", "lease", "follower" or "session"', mode);
    }
    if (mode === "follower" && !(typeof region === "string" && REGION_NAME.test(region))) {
      badOption(C, "region", "a region name (letters, digits, - or _) in follower mode", region);
    }
    if (!(Number.isFinite(leaseMs) && leaseMs >= MIN_LEASE_MS)) {
      badOption(C, "leaseMs", `a number of ms >= ${MIN_LEASE_MS}`, leaseMs);
    }
    if (!(capture === undefined || capture === false || (typeof capture === "string" && capture))) {
      badOption(C, "capture", "a D1 binding's name, or false", capture);
    }
    this.#capture = capture;
    this.mode = mode;
    this.leaseMs = leaseMs;
    this.#namespace = namespace;
    this.#objectName = name;
    if (mode === "follower") {
      this.#followerName = `${name}@${region}`;
      this.#hint = LOCATION_HINTS.includes(region!) ? region : undefined;
    }
  }

  get failures(): number {
    return this.#failures;
  }

  follow(follower: LogFollower): void {
    if (this.#follower && this.#follower !== follower) {
      // A second cache would take the records from the first, which then serves stale.
      throw new EdgecacheError(
        "E_BAD_OPTION",
        C,
        "a Durable Object change log serves one cache; make one per cache",
      );
    }
    this.#follower = follower;
  }

  trusted(): boolean {
    return Date.now() < this.#trustedUntil;
  }

  /**
   * The D1 bookmark a load must read at or after: the newest of the writes whose records
   * this isolate has applied (raised before they are applied, so a load that took its log
   * position after a record never reads before that record's write). Undefined while none
   * carried one; null while the object is out of reach (or not yet heard): writes may have
   * been acknowledged that this isolate knows nothing of, so only the primary will do.
   */
  get bookmark(): string | null | undefined {
    return this.#heard ? this.#promised : null;
  }

  /** A write's D1 bookmark: carried by this isolate's next append (see `bookmark`). */
  wrote(bookmark: string): void {
    this.#written = newer(this.#written, bookmark);
  }

  /** How far this isolate has applied the log: a session's position (see `reach`). */
  get position(): LogPosition {
    return { log: this.#log, seq: this.#applied };
  }

  /**
   * Session mode: brings this isolate at least to `position` (what a client last wrote or
   * read through another isolate), asking the object only when it is behind. A position of
   * another log (the log started over) is reached by a sync too: after it, this isolate
   * holds every write acknowledged before the call.
   */
  async reach(position: LogPosition): Promise<void> {
    if (position.log === this.#log && position.seq <= this.#applied) return;
    await this.#syncNow();
  }

  /**
   * Session mode: a sync before a load (or serving a shared copy from further along the
   * log), so the position a response hands its client covers every acknowledged write the
   * answer may show (see `ChangeLog.freshen`). Other modes sync before every request, or
   * hand out no positions.
   */
  async freshen(): Promise<void> {
    if (this.mode === "session") await this.#syncNow();
  }

  /** A sync of this call's own (not one begun before it); unheard, the isolate stops trusting. */
  async #syncNow(): Promise<void> {
    try {
      await this.#sync();
    } catch (error) {
      this.#trustedUntil = Number.NEGATIVE_INFINITY;
      throw error;
    }
  }

  /**
   * Brings this isolate up to the log: what a request calls before it reads. In strict
   * mode it always asks the object; in lease and session modes only when the last answer
   * is in the second half of its trust (and concurrent requests share one ask).
   */
  async sync(): Promise<void> {
    if (this.mode === "lease" || this.mode === "session") {
      if (!renewDue(DURABLE_LOG_LEASE, Date.now(), this.#trustedUntil, this.leaseMs)) return;
      this.#inflight ??= this.#sync().finally(() => {
        this.#inflight = undefined;
      });
      return this.#inflight;
    }
    // Strict: a request must ask after it began, not join an ask begun before a write.
    try {
      return await (this.mode === "follower" ? this.#syncFollower() : this.#sync());
    } catch (error) {
      // Unheard, an isolate holds no lease: writes acknowledged since its last sync may not
      // be applied here, so its memory is not to be trusted until it hears again.
      this.#trustedUntil = Number.NEGATIVE_INFINITY;
      throw error;
    }
  }

  /**
   * Has the object drain D1's change capture now (see the Cloudflare adapter's capture
   * drain) and syncs after it: every change captured before the call is then applied here.
   * Resolves the drain's counters, or undefined when the object drains nothing.
   */
  async drainCapture(): Promise<CaptureDrainCounts | undefined> {
    const sent = Date.now();
    const reply = await this.#call<SyncReply & { capture?: CaptureDrainCounts | null }>("drain", {
      ...this.#report(),
      ...this.#upload(),
    });
    await this.#take(reply);
    this.#heardAt(sent);
    return reply.capture ?? undefined;
  }

  /**
   * The captured changes this isolate has applied from the log: whatever drain appended them
   * (the object's alarm, a write's, another isolate's ask), made by whoever wrote around the
   * cache. Those appended before this isolate started are not counted: it never applied them.
   */
  capturedApplied(): number {
    return this.#capturedApplied;
  }

  async #sync(): Promise<void> {
    const sent = Date.now();
    const reply = await this.#call<SyncReply>("sync", { ...this.#report(), ...this.#upload() });
    await this.#take(reply);
    this.#heardAt(sent);
  }

  /** Follower mode's sync: asks the region's follower, not the log's object. */
  async #syncFollower(): Promise<void> {
    const sent = Date.now();
    const follower = this.#followerName!;
    const reply = await this.#call<SyncReply | { unknown: true }>(
      "follower/sync",
      { ...this.#report(), primary: this.#objectName, follower, lease: this.leaseMs },
      follower,
    );
    if ("unknown" in reply) {
      // The follower may lack acknowledged writes (its lease lapsed): ask the log's object,
      // as strict mode does. Out of its reach too, the request reads around the cache.
      this.#trustedUntil = Number.NEGATIVE_INFINITY;
      return this.#sync();
    }
    await this.#take(reply);
    this.#heardAt(sent);
  }

  /**
   * A reply to a call sent at `sent` brought every record up to the head, and renewed this
   * isolate's lease at the object: the isolate may trust its memory from then on.
   */
  #heardAt(sent: number): void {
    // Session mode holds no lease at the object: its bound is on staleness, not a promise.
    const trust =
      this.mode === "lease"
        ? this.leaseMs - LEASE_MARGIN_MS
        : this.mode === "session"
          ? this.leaseMs
          : STRICT_TRUST_MS;
    this.#trustedUntil = Math.max(this.#trustedUntil, sent + trust);
  }

  async turn(): Promise<WriteTurn | undefined> {
    const deadline = Date.now() + this.leaseMs;
    const token = `${this.node}:${randomId()}`;
    while (Date.now() < deadline) {
      const { taken } = await this.#call<{ taken: boolean }>("turn", { token, ms: this.leaseMs });
      if (taken) {
        return new DurableTurn(token, () => {
          this.#call("release", { token }).catch(() => {});
        });
      }
      await new Promise((resolve) => setTimeout(resolve, TURN_RETRY_MS));
    }
    return undefined;
  }

  async append(ops: readonly ChangeOp[], turn?: WriteTurn): Promise<number> {
    const token = turn instanceof DurableTurn ? turn.token : "";
    const sent = Date.now();
    const reply = await this.#call<AppendReply>("append", {
      ...this.#report(),
      ...this.#upload(),
      ops,
      token,
      tables: [...changedTables(ops)],
      bookmark: this.#written,
    });
    await this.#take(reply);
    // An append renews the lease as a sync does: writes queued behind slow ones (a far
    // object) would otherwise find it lapsed, with no request left to sync.
    this.#heardAt(sent);
    return reply.seq;
  }

  async quietSince(position: LogPosition): Promise<boolean> {
    if (position.log !== this.#log) return false;
    try {
      const { quiet } = await this.#call<{ quiet: boolean }>("quiet", position);
      return quiet;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    this.#trustedUntil = Number.NEGATIVE_INFINITY;
    await this.#call("leave", { node: this.node }).catch(() => {});
  }

  /** What this isolate tells the object on each call: who it is and what it applied. */
  #report() {
    const lease = this.mode === "lease" ? this.leaseMs : 0;
    return { node: this.node, log: this.#log, applied: this.#applied, leaseMs: lease };
  }

  /**
   * This isolate's summary of the log for the object to keep (see HISTORY_EVERY), when the
   * one it keeps is that far behind what this isolate applied, or it keeps none; else nothing.
   * Sent on calls to the log's object only (a follower keeps no summary).
   */
  #upload(): { history?: LogHistory } {
    const follower = this.#follower;
    if (follower?.history === undefined || this.#log === "") return {};
    const since = Math.max(this.#historyFrom, this.#uploaded);
    // While nothing is kept (a new log), one record is enough: the first isolate to start
    // after a few writes finds a summary. Else every HISTORY_EVERY records, by all isolates.
    if (since === 0 ? this.#applied === 0 : this.#applied - since < HISTORY_EVERY) return {};
    const history = follower.history();
    // Another log's (a reset is under way): the object would refuse it.
    if (history.log !== this.#log) return {};
    this.#uploaded = history.from;
    return { history };
  }

  /**
   * Applies what a reply brought, in log order, one reply at a time. A record names the
   * isolate that appended it (`by`), so each is marked whether it is this isolate's
   * (`ChangeRecord.own`): only the writer cleans the tiers other isolates read (a Durable
   * Object tier), since another isolate's delete, applied later, could remove a newer copy.
   * Records without a writer (captured ones, older ones) are everyone's, as before.
   */
  #take(reply: SyncReply): Promise<void> {
    const step = this.#applying.then(async () => {
      const follower = this.#follower;
      // Before the fence moves: a load that starts after a record reads at its bookmark.
      this.#promised = newer(this.#promised, reply.bookmark);
      this.#heard = true;
      if (reply.historyFrom !== undefined) this.#historyFrom = reply.historyFrom;
      if (reply.records === undefined || reply.log !== this.#log) {
        if (reply.log === this.#log && reply.head <= this.#applied) return;
        if (reply.log !== this.#log) this.#uploaded = 0;
        this.#log = reply.log;
        this.#applied = reply.head;
        // The fence takes the history only if it is of this log and ends at the head.
        follower?.reset({
          position: { log: reply.log, seq: reply.head },
          lastChanges: new Map(reply.lastChanges ?? []),
          history: reply.history,
        });
        return;
      }
      for (const record of reply.records) {
        if (record.seq <= this.#applied) continue;
        const { by, captured, ...rest } = record as StoredRecord;
        await follower?.apply(by === undefined ? rest : { ...rest, own: by === this.node });
        this.#applied = record.seq;
        if (captured) this.#capturedApplied += rest.ops.filter((op) => "event" in op).length;
      }
    });
    this.#applying = step.catch(() => {});
    return step;
  }

  async #call<T>(op: string, body: object, object = this.#objectName): Promise<T> {
    try {
      const own = object === this.#objectName;
      const hint = own ? undefined : this.#hint;
      // Every call says what the object drains: the first after a restart may be any op.
      const sent = own && this.#capture !== undefined ? { ...body, capture: this.#capture } : body;
      return await callObject<T>(this.#namespace, object, op, sent, {
        component: C,
        unavailable: "E_LOG_UNAVAILABLE",
        locationHint: hint,
      });
    } catch (error) {
      this.#failures++;
      this.#heard = false;
      throw error;
    }
  }
}

class DurableTurn implements WriteTurn {
  constructor(
    readonly token: string,
    readonly release: () => void,
  ) {}
}

/** The longest lease the object grants, whatever an isolate asks. */
export const MAX_LEASE_MS = DURABLE_LOG_LEASE.maxMs!;

/** An isolate's view of the log in the `ChangeLogObject` named `options.name`. */
export function durableChangeLog(options: DurableChangeLogOptions): DurableChangeLog {
  return new DurableChangeLog(options);
}
