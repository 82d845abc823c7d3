import type { Cost } from "../cost.ts";
import type { WriteEvent } from "../deps/planner.ts";

/**
 * The change log: one global order of every change, which every node applies through the
 * same planner. A write is acknowledged only after its record is in the log and every
 * node that may serve it from cache has applied it (or has lost its lease). Portable: the
 * implementations live beside it in `src/log/`: in-process, Redis, Durable Object.
 */

/** One thing the log orders: a row change, or a manual invalidation. */
export type ChangeOp =
  /**
   * `captured`: a write made around edgecache, read from a change table by the node that
   * leads capture; every node counts it in its capture stats as it applies the record.
   */
  | { event: WriteEvent; captured?: true }
  | { keys: readonly string[] }
  | { prefix: string }
  | { tags: readonly string[] }
  /** A glob over keys (see pattern.ts). */
  | { pattern: string };

/** What one append wrote: the changes of one write, under one gap-free sequence number. */
export interface ChangeRecord {
  seq: number;
  ops: readonly ChangeOp[];
  /**
   * Whether the record took its place in the log in the order the source committed its
   * write (see `WriteTurn`). Only such a record may patch a cached response: out of commit
   * order, a row changed and changed back would be patched to the value in between.
   */
  ordered: boolean;
  /**
   * Whether this node appended the record, where the log can tell (a shared log names the
   * writer). The writer alone cleans and refills the tiers other nodes read (`Store.shared`);
   * undefined means unknown, and every node treats the record as its own.
   */
  own?: boolean;
}

/**
 * A write turn, held from before a write's statement until its record is appended, so
 * that records appended with a turn follow the source's commit order where it matters.
 * A log makes turns exclusive (while one node holds the turn, no other node's record is
 * appended in order) or, on the Redis log, lets them overlap: a record is then ordered
 * only if no record changed one of its tables since its turn was taken, so of two
 * overlapping writes to one table the second appended invalidates instead of patching.
 * Either way, two ordered records that change one table are in commit order, and the log
 * is not quiet while a turn is held. A turn that lapsed (its holder was paused past its
 * time) makes its record unordered, never lost.
 */
export interface WriteTurn {
  /** Gives the turn back unused (the write failed, or made no change). */
  release(): void;
}

/**
 * A place in a log. `log` names the log's sequence space: a log that lost its history (a
 * Redis restarted empty) starts a new one, and positions of different logs say nothing
 * about each other.
 */
export interface LogPosition {
  readonly log: string;
  readonly seq: number;
}

/** Where a node (re)starts following: its position, and each table's last change. */
export interface LogStart {
  position: LogPosition;
  /**
   * Per table, the seq of its last change; "" holds the last manual invalidation. What a
   * node cannot check record by record (older than it retains), and no `history` covers,
   * is judged by these.
   */
  lastChanges: ReadonlyMap<string, number>;
  /**
   * What the log (or the file a single node left) keeps of the changes before `position`,
   * so entries loaded before this node started are judged by what concerns them, not by
   * their tables. Absent: a node that was not following judges them by `lastChanges`.
   */
  history?: LogHistory;
}

/**
 * A log's past as a follower keeps it (see WriteFence.history): the last records as they
 * were, and a bounded summary of the changes before them (see ChangeBuckets). Every record
 * after `from` and up to the start's position is in `records`; the summary holds every
 * change after `floor` up to `from`. Plain data: a log stores it, devalue-encoded where
 * rows may hold dates or bigints.
 */
export interface LogHistory {
  /** The log it describes: a history of another log says nothing. */
  log: string;
  floor: number;
  from: number;
  /** A ChangeBuckets summary as `save` left it. */
  summary: unknown;
  records: { seq: number; ops: readonly ChangeOp[]; ordered: boolean }[];
}

/** What a log calls on the node that follows it. */
export interface LogFollower {
  /**
   * Applies one record. Called in log order, once per record, before `append` resolves.
   * What a read must never see again is gone when it returns; the promise settles when the
   * rest of this node's part is done too (patched entries stored, its own tiers cleared),
   * which a log may wait for, briefly, before it tells writers the record is applied here.
   * Tiers shared with other nodes are cleared in the background: reads check them against
   * the log.
   */
  apply(record: ChangeRecord): Promise<unknown>;
  /**
   * The node missed records it can never apply (trimmed, or a new log): whatever it holds
   * may be stale. It starts again from `start`.
   */
  reset(start: LogStart): void;
  /**
   * This node's summary of the log up to the last record it applied, every record folded in
   * (`records` empty): what a shared log keeps beside the records it retains, so a node
   * that starts later gets a `history` (see LogStart.history). Its arrays are folded to at
   * most `maxBuckets` each (a power of two; the follower's default keeps it under about
   * 0.5 MB): smaller is coarser, never less sound. Not every follower has one.
   */
  history?(maxBuckets?: number): LogHistory;
}

/**
 * Calls that send to the log's server take a `cost` and add what they sent there (see
 * Cost); a log without a shared server ignores it.
 */
export interface ChangeLog {
  readonly name: string;
  /**
   * This node's name among the nodes that share the log (the Redis log's, a Worker isolate's),
   * shown in its stats and health and as a manifest's keeper; undefined for a log of one node.
   */
  readonly node?: string;
  /**
   * Whether other processes follow this log and read the source. Then a response this node
   * cached may already show writes whose records it has not applied (another node
   * committed them just before the load), so a patch may not infer a row's place from its
   * absence nor take rows from another page.
   */
  readonly shared: boolean;
  /**
   * How many nodes follow the log, as last heard (this one included), where the log can
   * tell: a writer refills shared tiers only for others to read (see `Store.shared`).
   */
  nodes?(): number;
  /**
   * Whether this node is the first to claim `name` (within about a lease): work one node
   * does for all, such as reloading a response into a shared tier after a write.
   */
  claim?(name: string, cost?: Cost): Promise<boolean>;
  /**
   * `claim`, by a node that waits for the winner's work when it loses: "won", or once the
   * winner says the work is done (`finished`: "done") or `ms` passed ("late"). The loser is
   * told, instead of looking for the work's result again and again; a message lost costs it
   * the wait, never a stale read (what it then finds is checked like any copy).
   */
  claimOrAwait?(name: string, ms: number, cost?: Cost): Promise<"won" | "done" | "late">;
  /** The work of claims this node won is done: the nodes awaiting them go on (nothing waits). */
  finished?(names: readonly string[], cost?: Cost): void;
  /**
   * Brings this node up to the log's head before it reads the source, or serves a shared
   * tier's copy loaded further along the log than this node: where a node may serve while
   * behind the head (Workers' session mode), what it answers must not show writes beyond
   * the position its client is handed, or the client's next node could show less. Logs
   * whose nodes are never behind what they serve need not have it.
   */
  freshen?(cost?: Cost): Promise<void>;
  /**
   * Takes a write turn (see `WriteTurn`), waiting while another node holds it where turns
   * are exclusive. Resolves undefined when it cannot be had soon: the write's record is
   * then unordered.
   */
  turn(cost?: Cost): Promise<WriteTurn | undefined>;
  /**
   * Attaches this node; the log calls `reset` with the start (at once, or once it can
   * reach its server) and then `apply` with every later record in order. What following
   * sends (reads of the log, renewals of the lease) counts in `cost`.
   */
  follow(follower: LogFollower, cost?: Cost): void;
  /**
   * Appends the ops as one record; resolves with its seq once this node has applied it and
   * every node that may serve from cache has applied it or lost its lease. With the turn
   * taken before the write, the record is ordered (if the turn still held), and the turn
   * is given back. `placed` is called once the record has its place in the log, before
   * the other nodes are heard from, where the log can tell (else not at all): a writer
   * that keeps its own writes in order may start its next one then. A log may hand it a
   * turn for that next write when `wantsTurn()` says so as the record is sent, taken at the
   * record's place as `turn()` would be just after it (the Redis log does, in the append's
   * round trip); the writer releases it if unused. `cost` counts the append and the wait
   * for the other nodes; a turn's release counts where the turn was taken.
   */
  append(
    ops: readonly ChangeOp[],
    turn?: WriteTurn,
    placed?: (next?: WriteTurn) => void,
    wantsTurn?: () => boolean,
    cost?: Cost,
  ): Promise<number>;
  /**
   * The lease: whether this node has heard the log recently enough to serve from cache.
   * Synchronous and cheap: it is asked on every hit.
   */
  trusted(): boolean;
  /**
   * Whether no write can have committed after `position` without its record being at or
   * before it: the log holds nothing later, and no node holds the write turn. Asked after
   * a load has read the source: true means the load saw the source exactly as of
   * `position`. False when it cannot be told (the log's server is out of reach).
   * `tables`: the tables the load read (undefined: any); a log may answer for them alone,
   * since a write to another table changes nothing the load saw (the in-process log does).
   * `patient`: the answer may wait (for capture's next look at the database) but must cost
   * no statement on the source; false where the log cannot tell so.
   */
  quietSince(
    position: LogPosition,
    tables?: readonly string[],
    cost?: Cost,
    patient?: boolean,
  ): Promise<boolean>;
  /** Failed requests to the log's server so far (counted in stats). */
  readonly failures: number;
  close(): Promise<void>;
}

/** The log position before any record. */
export const ORIGIN: LogPosition = { log: "", seq: 0 };

/** Which tables an entry reads, judged from its tags and lists (for the conservative check). */
export function readsTable(
  tags: readonly string[],
  lists: readonly { table: string }[] | undefined,
  table: string,
): boolean {
  if (lists?.some((l) => l.table === table)) return true;
  const row = `${table}#`;
  const set = `${table}@`;
  return tags.some((t) => t === table || t.startsWith(row) || t.startsWith(set));
}

/**
 * The tables a record changes ("" for a manual invalidation): the per-table positions. With
 * them the tables its view rows joined (WriteEvent.views), read after its statement: its
 * record is in commit order only if none of these changed since its turn was taken.
 */
export function changedTables(ops: readonly ChangeOp[]): Set<string> {
  const out = new Set<string>();
  for (const op of ops) {
    if (!("event" in op)) {
      out.add("");
      continue;
    }
    out.add(op.event.table);
    for (const table of op.event.views?.tables ?? []) out.add(table);
  }
  return out;
}

/**
 * Whether a record of `tables` (see changedTables) appended under a turn taken at `at` is
 * out of commit order: a record since then changed one of them (a change recorded around
 * the turn, or a table its view rows joined). `last`: each table's last change.
 */
export function changedSince(
  tables: Iterable<string>,
  at: number,
  last: (table: string) => number | undefined,
): boolean {
  for (const table of tables) if ((last(table) ?? 0) > at) return true;
  return false;
}

/** The counters of a capture drain that feeds a log (see `CaptureDrainingLog`). */
export interface CaptureDrainCounts {
  /** Captured changes appended to the log so far. */
  applied: number;
  /** From the database's record of a change to its record in the log, ms. */
  lagP50?: number;
  lagP99?: number;
  /** The drain asked for failed: what was captured before the call may not be in the log. */
  failed?: boolean;
}

/**
 * A capability of a log that change capture feeds from outside the node (on Workers, the
 * Durable Object drains D1's change table): a node asks it to take in what was captured.
 */
export interface CaptureDrainingLog extends ChangeLog {
  /**
   * Has the log take in every change captured before the call and brings this node up to
   * it. Resolves the drain's counters, or undefined when no drain feeds the log; rejects
   * when the log is out of reach.
   */
  drainCapture(): Promise<CaptureDrainCounts | undefined>;
  /**
   * The captured changes this node has applied from the log so far, whichever drain appended
   * them (not only those it asked for): what its capture stats count as applied.
   */
  capturedApplied(): number;
}

export function drainsCapture(log: ChangeLog): log is CaptureDrainingLog {
  return typeof (log as Partial<CaptureDrainingLog>).drainCapture === "function";
}
