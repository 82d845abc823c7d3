import {
  type ChangeOp,
  type ChangeRecord,
  changedSince,
  changedTables,
  type LogHistory,
} from "../core/change-log/contract.ts";
import { ChangeBuckets } from "../core/fence/change-buckets.ts";
import { randomId } from "../core/random-id.ts";
import { DURABLE_LOG_LEASE } from "../core/time/lease.ts";
import type { DurableObjectStateLike, ReachObject } from "../durable/rpc.ts";

/**
 * The change log's Durable Object side (`ChangeLogObject` in the Cloudflare adapter hosts it
 * in the object named after the log): the records in order, the leases isolates and regional
 * followers hold, the write turn, the summary of the past kept for new isolates, and the
 * replies (`SyncReply`) the isolate side (`DurableChangeLog`, durable-object.ts beside this
 * file) and the followers (durable-follower.ts) take. Storage keys: `state`, `r<seq>`,
 * `history` and `h<n>`, read as they were written by every earlier version.
 */

/** Records the object keeps; an isolate further behind starts over (`reset`). */
export const RETAINED_RECORDS = 1000;

/**
 * The longest summary the object keeps, in JSON characters: 16,384 buckets of positions in
 * their sparse form stay under about 330 KB, and the rest is purges by prefix or pattern
 * kept as they are (at most 256). A longer one (long prefixes) is not kept: new isolates then
 * judge by table, as without one. Stored in chunks of HISTORY_CHUNK characters (two bytes
 * each at most), under the 128 KiB value limit of a key-value-backed object's storage.
 */
export const MAX_HISTORY_CHARS = 1 << 20;

const HISTORY_CHUNK = 60_000;

export interface SyncReply {
  log: string;
  head: number;
  /** The newest D1 bookmark of a write appended up to `head`, if any carried one. */
  bookmark?: string;
  /** Records after the isolate's position, in order; absent when it must start over. */
  records?: ChangeRecord[];
  lastChanges?: [string, number][];
  /**
   * With a fresh start: the summary the object keeps and every record after it up to `head`,
   * when it has one of this log whose records after it are still held (see LogStart.history).
   */
  history?: LogHistory;
  /** The seq the object's kept summary reaches (0: none): an isolate uploads when it is behind. */
  historyFrom?: number;
}

/**
 * A record as the object stores and sends it: `by` names the isolate that appended it (see
 * `DurableChangeLog`), `captured` marks one of change capture's (see `appendCaptured`).
 */
export type StoredRecord = ChangeRecord & { by?: string; captured?: true };

export interface AppendReply extends SyncReply {
  seq: number;
}

/**
 * The newer of two D1 bookmarks. Bookmarks sort as strings in commit order (the D1 binding
 * itself keeps a session's newest bookmark by comparing them so).
 */
export function newer(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  return b !== undefined && b > a ? b : a;
}

/** An isolate's lease as the object sees it. */
interface Member {
  applied: number;
  /** The object's time (ms) the lease ends at. */
  until: number;
  /** A follower's object name: the object pushes new records to it (see `FollowerHost`). */
  push?: string;
}

interface StoredState extends HeldLog {
  /** The longest lease ever granted: what a restarted object waits out. */
  longestLease: number;
  /** The newest D1 bookmark an append carried (see `DurableChangeLog.bookmark`). */
  bookmark?: string;
  /** Appends of writes that reached the object, so far (see appendMark). */
  appends?: number;
  /**
   * The capture drain's mark of its last complete read (see `keepDrainMark`); cleared in the
   * write of each captured record, until the drain has deleted that record's rows.
   */
  drainMark?: number;
}

/**
 * The log as its Durable Object holds it (`ChangeLogObject` in the Cloudflare adapter
 * hosts it): the records, the leases, the write turn, and the barrier that answers an
 * append once every isolate holding a lease has applied it.
 *
 * A record is in storage before its append is answered (a Durable Object's output gate
 * holds the reply until the write is durable), so a sequence number once given is never
 * given again. Leases live in memory: an object that restarts waits a full lease before
 * it acknowledges anything, since isolates it no longer knows may still hold one.
 */
export class ChangeLogHost {
  #state: DurableObjectStateLike;
  #s: StoredState = { log: "", head: 0, first: 1, lastChanges: {}, longestLease: 0 };
  #records = new Map<number, ChangeRecord>();
  #members = new Map<string, Member>();
  /** The write turn held: whose, until when, and the head when it was taken. */
  #turn: { token: string; until: number; at: number } | undefined;
  #wake = new Set<() => void>();
  /** Until when leases granted before a restart may still be held. */
  #graceUntil = 0;
  #reach: ReachObject | undefined;
  /** The newest summary of this log an isolate uploaded (see HISTORY_EVERY), for new isolates. */
  #kept: KeptHistory | undefined;

  /** `reach`: calls another object of the namespace (pushes to followers). */
  /**
   * While the log is read from storage: calls wait for it. Made in the constructor, the
   * runtime holds every event until it is done; made on an object's first call (the
   * Cloudflare adapter makes the log only in the object that is one), that call must wait.
   */
  #loading: Promise<void> | undefined;

  constructor(state: DurableObjectStateLike, reach?: ReachObject) {
    this.#state = state;
    this.#reach = reach;
    const loading = state.blockConcurrencyWhile(async () => {
      const stored = await state.storage.get<StoredState>("state");
      if (stored === undefined) {
        this.#s = { log: randomId(), head: 0, first: 1, lastChanges: {}, longestLease: 0 };
        await state.storage.put({ state: this.#s });
        return;
      }
      this.#s = stored;
      // A restarted object does not know who holds a lease: it waits out the longest.
      this.#graceUntil = Date.now() + stored.longestLease;
      for (let seq = stored.first; seq <= stored.head; seq++) {
        const record = await state.storage.get<ChangeRecord>(`r${seq}`);
        if (record !== undefined) this.#records.set(seq, record);
      }
      this.#kept = await loadKept(state.storage, stored.log);
    });
    this.#loading = loading.finally(() => {
      this.#loading = undefined;
    });
  }

  /** Resolves once the log is read from storage (at once after that). */
  async ready(): Promise<void> {
    if (this.#loading) await this.#loading;
  }

  /** Answers an isolate's call `op` (see `DurableChangeLog`). */
  async handle(op: string, body: Record<string, unknown>): Promise<Response> {
    if (this.#loading) await this.#loading;
    switch (op) {
      case "sync":
        this.#keep(body.history);
        this.#renew(body);
        return Response.json(this.#since(body));
      case "append":
        return Response.json(await this.#append(body));
      case "turn":
        return Response.json({ taken: this.#take(String(body.token), Number(body.ms)) });
      case "release":
        if (this.#turn?.token === body.token) this.#turn = undefined;
        return Response.json({});
      case "quiet":
        return Response.json({
          quiet:
            body.log === this.#s.log &&
            body.seq === this.#s.head &&
            (this.#turn === undefined || Date.now() >= this.#turn.until),
        });
      case "leave":
        this.#members.delete(String(body.node));
        this.#wakeAll();
        return Response.json({});
      default:
        return new Response(`no op ${op}`, { status: 404 });
    }
  }

  #take(token: string, ms: number): boolean {
    const now = Date.now();
    if (this.#turn !== undefined && now < this.#turn.until && this.#turn.token !== token) {
      return false;
    }
    // Taken again by its holder (a renewal), it keeps the head it was first taken at.
    const at = this.#turn?.token === token ? this.#turn.at : this.#s.head;
    this.#turn = { token, until: now + Math.min(ms, DURABLE_LOG_LEASE.maxMs!), at };
    return true;
  }

  /** Records what a member applied and renews (or, with no lease, drops) its lease. */
  #renew(body: Record<string, unknown>): void {
    const node = String(body.node);
    const leaseMs = Math.min(Number(body.leaseMs) || 0, DURABLE_LOG_LEASE.maxMs!);
    const applied = body.log === this.#s.log ? Number(body.applied) || 0 : 0;
    if (leaseMs > 0) {
      const push = optionalString(body.push);
      // A report sent before a push was answered must not take back what the answer told:
      // the barrier would wait out the lease for records the member holds.
      const known = body.log === this.#s.log ? (this.#members.get(node)?.applied ?? 0) : 0;
      this.#members.set(node, {
        applied: Math.max(applied, known),
        until: Date.now() + leaseMs,
        push,
      });
      if (leaseMs > this.#s.longestLease) {
        this.#s = { ...this.#s, longestLease: leaseMs };
        void this.#state.storage.put({ state: this.#s });
      }
    } else {
      this.#members.delete(node);
    }
    this.#wakeAll();
  }

  /** The records after what the caller applied, or a fresh start when they are gone. */
  #since(body: Record<string, unknown>): SyncReply {
    return since(this.#s, this.#records, body, this.#kept);
  }

  /**
   * Keeps an isolate's summary of this log when it reaches further than the kept one (and no
   * further than the head): in memory, and in storage for the object's next start. One that
   * is not of this log, not a summary, or longer than MAX_HISTORY_CHARS is ignored.
   */
  #keep(value: unknown): void {
    const h = value as Partial<LogHistory> | null | undefined;
    if (typeof h !== "object" || h === null || h.log !== this.#s.log) return;
    const { floor, from, summary } = h;
    if (!(Number.isInteger(floor) && Number.isInteger(from))) return;
    if (!(floor! >= 0 && floor! <= from! && from! <= this.#s.head)) return;
    if (from! <= (this.#kept?.from ?? 0) || !(Array.isArray(h.records) && h.records.length === 0))
      return;
    if (ChangeBuckets.restore(summary) === undefined) return;
    const text = JSON.stringify(summary);
    if (text.length > MAX_HISTORY_CHARS) return;
    const previous = this.#kept?.chunks ?? 0;
    const kept: KeptHistory = { floor: floor!, from: from!, summary, chunks: 0 };
    const entries: Record<string, unknown> = {};
    for (let at = 0; at < text.length; at += HISTORY_CHUNK) {
      entries[`h${kept.chunks++}`] = text.slice(at, at + HISTORY_CHUNK);
    }
    const { log } = this.#s;
    entries.history = { log, floor: kept.floor, from: kept.from, chunks: kept.chunks };
    this.#kept = kept;
    // Not awaited: a summary lost to a failed write costs new isolates precision, never
    // correctness (they judge by table), and the next upload writes it again.
    void this.#state.storage.put(entries).catch(() => {});
    const stale = Array.from({ length: previous - kept.chunks }, (_, i) => `h${kept.chunks + i}`);
    if (stale.length > 0) void this.#state.storage.delete(stale).catch(() => {});
  }

  async #append(body: Record<string, unknown>): Promise<AppendReply> {
    // In memory at once, in storage with the next write of the state (this record's at the latest).
    this.#s = { ...this.#s, appends: this.appendMark() + 1 };
    const now = Date.now();
    const token = String(body.token ?? "");
    // In order while its turn held, unless a record (a captured one: the turn excludes
    // other writers) changed one of its tables since the turn was taken, or a table its
    // view rows joined (see WriteEvent.views), as on Redis.
    const turn = this.#turn;
    const tables = body.tables as string[];
    const ordered =
      token !== "" &&
      turn?.token === token &&
      now < turn.until &&
      !changedSince(tables, turn.at, (t) => this.#s.lastChanges[t]);
    if (token !== "" && this.#turn?.token === token) this.#turn = undefined;
    this.#keep(body.history);
    const seq = await this.#store(
      body.ops as ChangeOp[],
      ordered,
      tables,
      optionalString(body.bookmark),
      optionalString(body.node),
    );
    this.#renew(body);
    this.#pushToFollowers();
    await this.#barrier(seq, String(body.node));
    return { ...this.#since(body), seq };
  }

  /**
   * Sends every follower holding a lease the records it has not reported; its answer (what
   * it now holds) moves the barrier. A follower that does not answer is waited for until its
   * lease runs out, as a lease-holding isolate is.
   */
  #pushToFollowers(): void {
    const reach = this.#reach;
    if (reach === undefined) return;
    const now = Date.now();
    for (const [node, member] of this.#members) {
      if (member.push === undefined || member.applied >= this.#s.head || now >= member.until) {
        continue;
      }
      const records = this.#since({ log: this.#s.log, applied: member.applied });
      reach(member.push, "follower/push", records).then(
        (reply) => {
          const { log, applied } = reply as { log: string; applied: number };
          const current = this.#members.get(node);
          if (current === undefined || log !== this.#s.log || !(applied > current.applied)) return;
          current.applied = applied;
          this.#wakeAll();
        },
        // Out of reach: the barrier waits out its lease, then drops it.
        () => {},
      );
    }
  }

  /**
   * A number that changes with every append of a write (a data API's, a table-level
   * invalidation's), whether it held a turn or not. A captured change read after a mark,
   * appended while the mark is unchanged, is in the log's order: a write committed after it
   * has not appended yet, so its record comes later (see the capture drain). Kept in storage
   * with the log, so it goes on counting after a restart.
   */
  appendMark(): number {
    return this.#s.appends ?? 0;
  }

  /**
   * Whether a write holds the turn now: its batch may have committed, its record still to
   * come after anything appended meanwhile (see the capture drain).
   */
  turnHeld(): boolean {
    return this.#turn !== undefined && Date.now() < this.#turn.until;
  }

  /**
   * The capture drain's mark of its last complete read, as kept in storage: what a restarted
   * object's drain starts from. Undefined when none was kept (an older object's storage), or a
   * captured record was written since and the drain did not say its rows were deleted.
   */
  drainMark(): number | undefined {
    return this.#s.drainMark;
  }

  /**
   * Keeps the drain's mark (`appendMark()` before a complete read of the change table, every
   * row read before it appended and deleted) for the object's next start; written only when it
   * changes (after a write's append, or a captured record).
   */
  async keepDrainMark(mark: number): Promise<void> {
    if (this.#loading) await this.#loading;
    if (this.#s.drainMark === mark) return;
    this.#s = { ...this.#s, drainMark: mark };
    await this.#state.storage.put({ state: this.#s });
  }

  /**
   * Appends the changes change capture read from the database (see the Cloudflare
   * adapter's capture drain): `ordered` when the drain knows their place among the data
   * API's writes (else a record that patches nothing), and with the D1 bookmark its read
   * was at (a load reads at or after it). Resolves once the record is in storage; isolates
   * apply it at their next sync (no barrier: nobody waits for an answer).
   */
  async appendCaptured(
    ops: readonly ChangeOp[],
    ordered = false,
    bookmark?: string,
  ): Promise<number> {
    if (this.#loading) await this.#loading;
    const seq = await this.#store(ops, ordered, [...changedTables(ops)], bookmark, undefined, true);
    this.#pushToFollowers();
    return seq;
  }

  /**
   * Gives the ops the next seq and writes the record; resolves once it is in storage.
   * `bookmark`: the D1 bookmark of the write (see `DurableChangeLog.bookmark`).
   */
  async #store(
    ops: readonly ChangeOp[],
    ordered: boolean,
    tables: readonly string[],
    bookmark?: string,
    by?: string,
    captured?: true,
  ): Promise<number> {
    const seq = this.#s.head + 1;
    // `by`: the appending isolate, so it alone takes the record as its own (see #take).
    // `captured`: change capture's, so each isolate counts the changes it applies from it.
    const record: StoredRecord = {
      seq,
      ops,
      ordered,
      ...(by && { by }),
      ...(captured && { captured }),
    };
    const lastChanges = { ...this.#s.lastChanges };
    for (const table of tables) lastChanges[table] = seq;
    let first = this.#s.first;
    const dropped: string[] = [];
    while (seq - first >= RETAINED_RECORDS) {
      this.#records.delete(first);
      dropped.push(`r${first}`);
      first++;
    }
    this.#s = {
      ...this.#s,
      head: seq,
      first,
      lastChanges,
      bookmark: newer(this.#s.bookmark, bookmark),
      // Written with the record: a restart before its rows are deleted reads them again, and
      // their second copy must not be in order (it would apply them twice).
      ...(captured && { drainMark: undefined }),
    };
    this.#records.set(seq, record);
    const written = this.#state.storage.put({ state: this.#s, [`r${seq}`]: record });
    if (dropped.length > 0) void this.#state.storage.delete(dropped);
    await written;
    return seq;
  }

  /** Waits until every other lease holder applied `seq`, or its lease ran out. */
  async #barrier(seq: number, writer: string): Promise<void> {
    for (;;) {
      const now = Date.now();
      let wakeAt = now < this.#graceUntil ? this.#graceUntil : Number.POSITIVE_INFINITY;
      for (const [node, member] of this.#members) {
        if (node === writer || member.applied >= seq) continue;
        if (now >= member.until) {
          this.#members.delete(node);
          continue;
        }
        wakeAt = Math.min(wakeAt, member.until);
      }
      if (wakeAt === Number.POSITIVE_INFINITY) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.max(1, wakeAt - now));
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#wake.add(done);
      });
    }
  }

  #wakeAll(): void {
    const waiting = [...this.#wake];
    this.#wake.clear();
    for (const wake of waiting) wake();
  }
}

/** What a copy of the log holds besides its records (the object's, or a follower's). */
export interface HeldLog {
  log: string;
  head: number;
  /** The oldest seq still held (records from `first` to `head`). */
  first: number;
  lastChanges: Record<string, number>;
  bookmark?: string;
}

/** An isolate's summary of the log as the object keeps it (see ChangeLogHost's `#keep`). */
interface KeptHistory {
  floor: number;
  from: number;
  /** SavedBuckets, as the isolate sent it. */
  summary: unknown;
  /** The storage values its JSON is split into (`h0`, `h1`, ...). */
  chunks: number;
}

/** The kept summary of the log `log` in storage, if there is a whole one. */
async function loadKept(
  storage: DurableObjectStateLike["storage"],
  log: string,
): Promise<KeptHistory | undefined> {
  const meta = await storage.get<Omit<KeptHistory, "summary"> & { log: string }>("history");
  if (meta?.log !== log) return undefined;
  let text = "";
  for (let i = 0; i < meta.chunks; i++) {
    const chunk = await storage.get<string>(`h${i}`);
    if (typeof chunk !== "string") return undefined;
    text += chunk;
  }
  try {
    const summary: unknown = JSON.parse(text);
    if (ChangeBuckets.restore(summary) === undefined) return undefined;
    return { floor: meta.floor, from: meta.from, summary, chunks: meta.chunks };
  } catch {
    return undefined;
  }
}

/**
 * The records after what the caller (`body.log`, `body.applied`) applied, or a fresh start
 * (each table's last change) when they are no longer held. A fresh start carries `kept`
 * (the summary the object keeps) with every record after it, when they are all still held:
 * the caller's fence then judges what it did not apply by what concerns each entry. Never a
 * summary with a gap after it: without one, the caller judges by table.
 */
export function since(
  held: HeldLog,
  records: ReadonlyMap<number, ChangeRecord>,
  body: Record<string, unknown>,
  kept?: Omit<KeptHistory, "chunks">,
): SyncReply {
  const { log, head, first, lastChanges, bookmark } = held;
  const applied = Number(body.applied) || 0;
  const historyFrom = kept === undefined ? undefined : { historyFrom: kept.from };
  if (body.log === log && applied >= first - 1 && applied <= head) {
    const out: ChangeRecord[] = [];
    for (let seq = applied + 1; seq <= head; seq++) out.push(records.get(seq)!);
    return { log, head, records: out, bookmark, ...historyFrom };
  }
  const start: SyncReply = { log, head, lastChanges: Object.entries(lastChanges), bookmark };
  if (kept !== undefined && kept.from >= first - 1 && kept.from <= head) {
    const after: ChangeRecord[] = [];
    for (let seq = kept.from + 1; seq <= head; seq++) after.push(records.get(seq)!);
    start.history = {
      log,
      floor: kept.floor,
      from: kept.from,
      summary: kept.summary,
      records: after,
    };
  }
  return { ...start, ...historyFrom };
}

export function optionalString(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}
