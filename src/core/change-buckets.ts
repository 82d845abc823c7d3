import type { ChangeOp } from "../log/contract.ts";
import { bucketOf, eqKey } from "./deps/index.ts";
import type { DependencyLookup, ListDependency, WriteEvent } from "./deps/planner.ts";
import { fnv1a } from "./digest.ts";
import { keyPattern } from "./pattern.ts";

/**
 * What the history of a log says of an entry once the records themselves are gone (older
 * than a node retains, or from before it started): a bounded summary, finer than the table.
 *
 * Every change and every entry is named by *marks*: an entry by its key, each of its tags
 * and each of its lists (by table and the list's first equality filter); a write event by
 * the tags and list marks the planner would look up for it; an invalidation by the keys or
 * tags it names. A change that concerns an entry shares a mark with it (see `eventMarks`).
 * Each mark is hashed to two of a fixed number of buckets, each bucket holding the last
 * seq that raised it (a counting Bloom filter of positions): a change raises both buckets
 * of each of its marks, and a mark has changed since P only if both of its buckets are past
 * P. An entry loaded at P is concerned by nothing since when none of its marks has. Marks
 * that share buckets cost a refusal, never a stale read, and the memory is the bucket
 * count, however long the log.
 *
 * Purges by prefix or pattern name no mark: the last `NAMED` of them are kept as they
 * are, and one pushed out raises `everything`, which concerns every entry loaded before it.
 */
export class ChangeBuckets {
  readonly #seqs: Float64Array;
  #named: { prefix?: string; pattern?: string; seq: number }[] = [];
  #everything = 0;

  constructor(size = DEFAULT_BUCKETS) {
    this.#seqs = new Float64Array(size);
  }

  /** Notes one change at `seq`, by the marks `marksOf` gives its events. */
  note(op: ChangeOp, seq: number, marksOf: (event: WriteEvent) => Iterable<string>): void {
    if ("event" in op) for (const mark of marksOf(op.event)) this.#raise(mark, seq);
    else if ("keys" in op) for (const key of op.keys) this.#raise(keyMark(key), seq);
    else if ("tags" in op) for (const tag of op.tags) this.#raise(tagMark(tag), seq);
    else {
      this.#named.push({ ...op, seq });
      if (this.#named.length > NAMED) this.#everything = this.#named.shift()!.seq;
    }
  }

  /** Whether a change after `since` may concern the entry with these marks under `key`. */
  concerns(since: number, key: string, marks: readonly string[]): boolean {
    if (this.#everything > since) return true;
    for (const mark of marks) {
      const [a, b] = this.#buckets(mark);
      if (this.#seqs[a]! > since && this.#seqs[b]! > since) return true;
    }
    for (const { prefix, pattern, seq } of this.#named) {
      if (seq <= since) continue;
      if (prefix !== undefined && key.startsWith(prefix)) return true;
      if (pattern !== undefined && keyPattern(pattern).test(key)) return true;
    }
    return false;
  }

  /** A plain copy, for a log or a file to keep (the buckets that were touched only). */
  save(): SavedBuckets {
    const marks: [number, number][] = [];
    this.#seqs.forEach((seq, i) => {
      if (seq > 0) marks.push([i, seq]);
    });
    return {
      size: this.#seqs.length,
      marks,
      named: [...this.#named],
      everything: this.#everything,
    };
  }

  /** The summary `save` left; undefined when it is not one (a summary is then not had). */
  static restore(saved: unknown): ChangeBuckets | undefined {
    if (!isSaved(saved)) return undefined;
    const buckets = new ChangeBuckets(saved.size);
    for (const [i, seq] of saved.marks) if (i >= 0 && i < saved.size) buckets.#seqs[i] = seq;
    buckets.#named = saved.named.slice(-NAMED);
    buckets.#everything = saved.everything;
    return buckets;
  }

  #raise(mark: string, seq: number): void {
    for (const i of this.#buckets(mark)) if (this.#seqs[i]! < seq) this.#seqs[i] = seq;
  }

  /** The mark's two buckets: the halves of its hash, mixed so that every bit counts. */
  #buckets(mark: string): [number, number] {
    let h = fnv1a(mark);
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    h = (h ^ (h >>> 16)) >>> 0;
    const size = this.#seqs.length;
    return [(h & 0xffff) % size, (h >>> 16) % size];
  }
}

/** 16,384 buckets: 128 KiB a cache, at most that much again in a saved summary (≤ 65,536). */
const DEFAULT_BUCKETS = 16_384;
/** Purges by prefix or pattern kept as they are. */
const NAMED = 256;

/** What `ChangeBuckets.save` gives: JSON as it is. */
export interface SavedBuckets {
  size: number;
  marks: [bucket: number, seq: number][];
  named: { prefix?: string; pattern?: string; seq: number }[];
  everything: number;
}

function isSaved(v: unknown): v is SavedBuckets {
  const s = v as SavedBuckets | null;
  return (
    typeof s === "object" &&
    s !== null &&
    Number.isInteger(s.size) &&
    s.size > 0 &&
    s.size <= 1 << 16 &&
    Array.isArray(s.marks) &&
    s.marks.every(
      (m) => Array.isArray(m) && typeof m[0] === "number" && typeof m[1] === "number",
    ) &&
    Array.isArray(s.named) &&
    s.named.every((n) => typeof n?.seq === "number") &&
    typeof s.everything === "number"
  );
}

const keyMark = (key: string) => `k:${key}`;
const tagMark = (tag: string) => `t:${tag}`;
const listMark = (table: string, column: string, value: string) =>
  `l:${table}\u0000${column}\u0000${value}`;

/** An entry's marks: its key, its tags, and each list by table and first equality filter. */
export function entryMarks(
  key: string,
  tags: readonly string[],
  lists: readonly ListDependency[] | undefined,
): string[] {
  const marks = [keyMark(key), ...tags.map(tagMark)];
  for (const list of lists ?? []) {
    const [column, value] = bucketOf(list);
    // An equality with NULL matches no row: such a list is marked with those that have none.
    marks.push(
      value === eqKey(null) ? listMark(list.table, "", "") : listMark(list.table, column, value),
    );
  }
  return marks;
}

/**
 * A write event's marks, found by running the planner (`plan`) against a lookup that holds
 * nothing and notes what it is asked: every tag it looks up, and for the lists, the mark of
 * each column value of each row it offers (a list the row can match has its first equality
 * filter's value there) and the mark of lists with no equality filter. So an event shares a
 * mark with every entry the planner would have found for it, under the same schema and
 * policy.
 */
export function eventMarks(plan: (lookup: DependencyLookup) => void): string[] {
  const marks: string[] = [];
  plan({
    keysForTag(tag) {
      marks.push(tagMark(tag));
      return [];
    },
    listsOn() {
      // The planner asks listsOn only of a lookup without listsFor; marks have no name for
      // "every list of the table", so a planner that asked would be a defect, not a miss.
      throw new Error("eventMarks: the planner asked listsOn although listsFor is there");
    },
    listsFor(table, rows) {
      marks.push(listMark(table, "", ""));
      for (const row of rows) {
        for (const [column, value] of Object.entries(row)) {
          if (value !== null && value !== undefined)
            marks.push(listMark(table, column, eqKey(value)));
        }
      }
      return [];
    },
  });
  return marks;
}
