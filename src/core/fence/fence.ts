import {
  type ChangeOp,
  type ChangeRecord,
  changedTables,
  type LogHistory,
  type LogPosition,
  type LogStart,
  ORIGIN,
  readsTable,
} from "../change-log/contract.ts";
import type { DependencyLookup, InvalidationPolicy, WriteEvent } from "../deps/planner.ts";
import type { CacheEntry } from "../entries/entry.ts";
import { ChangeBuckets, entryMarks, eventMarks } from "./change-buckets.ts";
import { keyPattern } from "./pattern.ts";

/**
 * The planner, as the fence asks it: the keys an event changes among those `lookup` holds,
 * and whether it could only name them by their table (an event it cannot analyse).
 */
export type PlanKeys = (
  event: WriteEvent,
  lookup: DependencyLookup,
) => { keys: Set<string>; fallback?: boolean };

/**
 * The write fence: the recent records this node applied, so an entry read at one log
 * position can be checked against everything since. Used for loads that overlapped a
 * write (they must not put pre-write data back) and for entries read from tiers other
 * than this node's memory (another process wrote them at its own position).
 *
 * Records older than it retains are folded into a bounded summary (ChangeBuckets) and
 * judged by it: by the entry's key, tags and lists, finer than its tables. A start or reset
 * that brings the log's history (LogStart.history) loads its records and summary, so an
 * entry loaded before this node started is judged as if the node had been running; one
 * without judges what it missed by each table's last change: an entry is refused when
 * anything it reads changed after its position. Either costs a miss, never a stale read.
 */
export class WriteFence {
  #position: LogPosition = ORIGIN;
  #ops: { seq: number; op: ChangeOp; ordered: boolean }[] = [];
  #size: number;
  #lastChanges = new Map<string, number>();
  /** Records at or below this seq may never have been applied here (a reset): lastChanges judges. */
  #floor = 0;
  /** Changes after the floor up to this seq are in the summary; later ones in #ops. */
  #from = 0;
  #summary = new ChangeBuckets();
  /**
   * The summary with every retained record folded in too, kept up to date record by record
   * once asked for (a shared log asks every few dozen records: refolding thousands of
   * retained ops each time would run the planner that many times).
   */
  #folded: ChangeBuckets | undefined;
  #plan: PlanKeys;
  #policy: () => InvalidationPolicy;

  /** `plan` tells whether an event changes one entry, and gives an event's summary marks. */
  constructor(size: number, plan: PlanKeys, policy: () => InvalidationPolicy) {
    this.#size = size;
    this.#plan = plan;
    this.#policy = policy;
  }

  /** The last record applied. A new object after each record, so it can be compared by identity. */
  get position(): LogPosition {
    return this.#position;
  }

  reset(start: LogStart): void {
    this.#position = start.position;
    this.#lastChanges = new Map(start.lastChanges);
    const history = start.history && this.#usable(start.history, start.position);
    this.#folded = undefined;
    if (history) {
      this.#floor = history.floor;
      this.#from = history.from;
      this.#summary = history.summary;
      this.#ops = history.ops;
      this.#trim();
    } else {
      this.#floor = start.position.seq;
      this.#from = start.position.seq;
      this.#summary = new ChangeBuckets();
      this.#ops = [];
    }
  }

  record(record: ChangeRecord): void {
    const ordered = record.ordered === true;
    for (const op of record.ops) {
      this.#ops.push({ seq: record.seq, op, ordered });
      this.#folded?.note(op, record.seq, this.#marksOf);
    }
    this.#trim();
    for (const table of changedTables(record.ops)) this.#lastChanges.set(table, record.seq);
    this.#position = { log: this.#position.log, seq: record.seq };
  }

  /**
   * What this node knows of the log's past, for the next process to start from (see
   * LogStart.history): the records it retains and the summary of those before; `folded`,
   * the summary alone, with the retained records folded into it (and its arrays folded to
   * at most `maxBuckets` each: smaller, coarser, as sound).
   */
  history(folded = false, maxBuckets?: number): LogHistory {
    if (folded) {
      // Every retained record folded into a copy of the summary: small, with no rows, for
      // a log to keep beside the records it retains itself.
      if (!this.#folded) {
        this.#folded = ChangeBuckets.restore(this.#summary.save())!;
        for (const { op, seq } of this.#ops) this.#folded.note(op, seq, this.#marksOf);
      }
      const { log, seq } = this.#position;
      const summary = this.#folded.save(maxBuckets);
      return { log, floor: this.#floor, from: seq, summary, records: [] };
    }
    const records: LogHistory["records"] = [];
    for (const { seq, op, ordered } of this.#ops) {
      const last = records.at(-1);
      if (last?.seq === seq) (last.ops as ChangeOp[]).push(op);
      else records.push({ seq, ops: [op], ordered });
    }
    return {
      log: this.#position.log,
      floor: this.#floor,
      from: this.#from,
      summary: this.#summary.save(),
      records,
    };
  }

  /** Past the size, the oldest records are folded into the summary. */
  #trim(): void {
    if (this.#ops.length <= this.#size) return;
    // Whole records go: a record kept in part would be checked by its remaining ops alone.
    let cut = this.#ops.length - Math.floor(this.#size / 2);
    while (cut < this.#ops.length && this.#ops[cut]!.seq === this.#ops[cut - 1]!.seq) cut++;
    for (const { op, seq } of this.#ops.splice(0, cut)) {
      this.#summary.note(op, seq, this.#marksOf);
      this.#from = seq;
    }
  }

  readonly #marksOf = (event: WriteEvent) => eventMarks((lookup) => this.#plan(event, lookup));

  /** A history that describes this start: its log, with every record up to the position. */
  #usable(history: LogHistory, at: LogPosition) {
    if (history.log !== at.log || !(history.floor <= history.from)) return undefined;
    const summary = ChangeBuckets.restore(history.summary);
    if (!summary) return undefined;
    const ops: { seq: number; op: ChangeOp; ordered: boolean }[] = [];
    let seq = history.from;
    for (const record of history.records) {
      if (!(record.seq > seq)) return undefined;
      seq = record.seq;
      for (const op of record.ops) ops.push({ seq, op, ordered: record.ordered === true });
    }
    if (seq !== at.seq) return undefined;
    return { floor: history.floor, from: history.from, summary, ops };
  }

  /** Whether a change applied after `since` may have made `entry` (read under `key`) stale. */
  conflicts(since: LogPosition, key: string, entry: CacheEntry): boolean {
    return this.changesFor(since, key, entry, true) !== "none";
  }

  /**
   * What was applied after `since` that concerns `entry` (read under `key`): "none";
   * "unknown" when it cannot be told event by event (an invalidation by key, tag, prefix or
   * pattern, a record out of commit order, an event the planner names by its table alone,
   * records no longer retained); otherwise the write events of each concerning record, in
   * log order, so the entry can be brought up to date by patching it as this node's memory
   * would have been. With `first`, stops at the first concerning event (whether there is
   * any is all that is asked).
   */
  changesFor(
    since: LogPosition,
    key: string,
    entry: CacheEntry,
    first = false,
  ): "none" | "unknown" | (readonly WriteEvent[])[] {
    const changes = this.concerning(since, key, entry, first);
    return typeof changes === "string" ? changes : changes.map((r) => r.events);
  }

  /** `changesFor`, each concerning record's events with its seq. */
  concerning(
    since: LogPosition,
    key: string,
    entry: CacheEntry,
    first = false,
  ): "none" | "unknown" | { seq: number; events: readonly WriteEvent[] }[] {
    const now = this.#position;
    if (since.log !== now.log) return "unknown"; // another log: nothing can be told
    if (since.seq >= now.seq) return "none";
    if (since.seq < this.#floor) return this.#conservative(since, entry) ? "unknown" : "none";
    if (
      since.seq < this.#from &&
      this.#summary.concerns(since.seq, key, entryMarks(key, entry.tags, entry.lists))
    ) {
      return "unknown";
    }
    const tags = new Set(entry.tags);
    const lists = entry.lists ?? [];
    const single: DependencyLookup = {
      keysForTag: (tag) => (tags.has(tag) ? [key] : []),
      listsOn: (table) => lists.filter((l) => l.table === table).map((l) => [key, l] as const),
      listedOn: (_, table) => lists.some((l) => l.table === table),
    };
    // The planner looks an event up by its table's tags and lists alone, so an event on a
    // table the entry does not read cannot concern it: only the others are planned.
    const reads = new Map<string, boolean>();
    const readsOf = (table: string) => {
      let r = reads.get(table);
      if (r === undefined) {
        r = readsTable(entry.tags, entry.lists, table);
        reads.set(table, r);
      }
      return r;
    };
    const records: { seq: number; events: WriteEvent[] }[] = [];
    let events: WriteEvent[] = [];
    let concerns = false;
    let seq = -1;
    const close = () => {
      if (concerns) records.push({ seq, events });
      events = [];
      concerns = false;
    };
    for (let i = this.#firstAfter(since.seq); i < this.#ops.length; i++) {
      const { op, ordered, seq: at } = this.#ops[i]!;
      if (at !== seq) {
        close();
        seq = at;
      }
      if ("keys" in op && op.keys.includes(key)) return "unknown";
      if ("prefix" in op && key.startsWith(op.prefix)) return "unknown";
      if ("tags" in op && op.tags.some((t) => tags.has(t))) return "unknown";
      if ("pattern" in op && keyPattern(op.pattern).test(key)) return "unknown";
      if (!("event" in op)) continue;
      events.push(op.event);
      const plan = readsOf(op.event.table) ? this.#plan(op.event, single) : undefined;
      if (plan && plan.keys.size > 0) {
        // Out of commit order, or named by its table alone, it cannot be told event by
        // event: the record is applied so (an invalidation, no patch), and judged so here.
        if (!ordered || first || plan.fallback) return "unknown";
        concerns = true;
      }
    }
    close();
    return records.length === 0 ? "none" : records;
  }

  /** The index of the first op after `seq` (ops are in seq order). */
  #firstAfter(seq: number): number {
    let lo = 0;
    let hi = this.#ops.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#ops[mid]!.seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #conservative(since: LogPosition, entry: CacheEntry): boolean {
    const byTable = this.#policy() !== "none";
    for (const [table, seq] of this.#lastChanges) {
      if (seq <= since.seq) continue;
      if (table === "") return true; // a manual invalidation: it may have named this entry
      if (byTable && readsTable(entry.tags, entry.lists, table)) return true;
    }
    return false;
  }
}
