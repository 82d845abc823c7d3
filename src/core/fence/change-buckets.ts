import type { ChangeOp } from "../change-log/contract.ts";
import { bucketOf, eqKey } from "../deps/filing.ts";
import type { DependencyLookup, ListDependency, WriteEvent } from "../deps/planner.ts";
import { fnv1a } from "../digest.ts";
import { keyPattern } from "./pattern.ts";

/**
 * What the history of a log says of an entry once the records themselves are gone (older
 * than a node retains, or from before it started): a bounded summary, finer than the table.
 *
 * Every change and every entry is named by *marks*: an entry by its key, each of its tags
 * and each of its lists (by table and the list's first equality filter); a write event by
 * the tags and list marks the planner would look up for it; an invalidation by the keys or
 * tags it names. A change that concerns an entry shares a mark with it (see `eventMarks`).
 * Each mark is hashed to three buckets of a fixed array, each bucket holding the last seq
 * that raised it (a Bloom filter of positions): a change raises the buckets of each of its
 * marks, and a mark has changed since P only if all three of its buckets are past P. An
 * entry loaded at P is concerned by nothing since when none of its marks has. Marks that
 * share buckets cost a refusal, never a stale read, and the memory is the bucket count,
 * however long the log.
 *
 * Keys and tags have one array, lists another: a write names a list mark for every column
 * value of its rows, and so many marks would otherwise crowd out the rows' and keys' own.
 * Purges by prefix or pattern name no mark: the last `NAMED` of them are kept as they
 * are, and one pushed out raises `everything`, which concerns every entry loaded before it.
 */
export class ChangeBuckets {
  /** Marks many entries share (a table's tag, its lists without an equality), kept exactly. */
  #wide = new Map<string, number>();
  /** Whether a wide mark went to the buckets, the map being full: they must be asked too. */
  #wideSpilled = false;
  readonly #names: Positions;
  readonly #lists: Positions;
  #named: { prefix?: string; pattern?: string; seq: number }[] = [];
  #everything = 0;

  constructor(names = NAME_BUCKETS, lists = LIST_BUCKETS) {
    this.#names = new Positions(names);
    this.#lists = new Positions(lists);
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
      const wide = this.#wide.get(mark);
      if (wide !== undefined) {
        if (wide > since) return true;
      } else if ((!this.#wideSpilled && isWide(mark)) || !this.#of(mark).after(mark, since)) {
        // A wide mark never raised (none spilled into the buckets), or buckets not all raised.
      } else return true;
    }
    for (const { prefix, pattern, seq } of this.#named) {
      if (seq <= since) continue;
      if (prefix !== undefined && key.startsWith(prefix)) return true;
      if (pattern !== undefined && keyPattern(pattern).test(key)) return true;
    }
    return false;
  }

  /**
   * A plain copy, for a log or a file to keep (the buckets that were raised only). With
   * `maxBuckets`, each array is folded to at most that many (a power of two): bucket i of
   * the smaller array holds the latest of every bucket that maps to it, which is where the
   * smaller array's hashes put a mark, so the copy is coarser and just as sound.
   */
  save(maxBuckets?: number): SavedBuckets {
    return {
      wide: [...this.#wide],
      wideSpilled: this.#wideSpilled,
      names: this.#names.save(maxBuckets),
      lists: this.#lists.save(maxBuckets),
      named: [...this.#named],
      everything: this.#everything,
    };
  }

  /** The summary `save` left; undefined when it is not one (a summary is then not had). */
  static restore(saved: unknown): ChangeBuckets | undefined {
    if (!isSaved(saved)) return undefined;
    const buckets = new ChangeBuckets(saved.names.size, saved.lists.size);
    buckets.#wide = new Map(saved.wide.slice(0, WIDE));
    buckets.#wideSpilled = saved.wideSpilled === true || saved.wide.length > WIDE;
    buckets.#names.load(saved.names.marks);
    buckets.#lists.load(saved.lists.marks);
    buckets.#named = saved.named.slice(-NAMED);
    buckets.#everything = saved.everything;
    return buckets;
  }

  /**
   * A mark every entry of a table may carry, hashed, would be taken for changed by all of
   * them at once when its buckets happen to be raised by others: such marks are counted
   * exactly, as many as `WIDE` (then hashed like the rest).
   */
  #raise(mark: string, seq: number): void {
    if (!isWide(mark)) this.#of(mark).raise(mark, seq);
    else if (this.#wide.has(mark) || this.#wide.size < WIDE) this.#wide.set(mark, seq);
    else {
      this.#wideSpilled = true;
      this.#of(mark).raise(mark, seq);
    }
  }

  #of(mark: string): Positions {
    return mark.startsWith(LIST) ? this.#lists : this.#names;
  }
}

/** One array of buckets: positions, with each mark in `HASHES` of them. */
class Positions {
  readonly size: number;
  /** Allocated at the first raise: a cache that never folds a record holds none. */
  #seqs: Float64Array | undefined;

  constructor(size: number) {
    this.size = size;
  }

  raise(mark: string, seq: number): void {
    const seqs = this.#array();
    for (const i of this.#buckets(mark)) if (seqs[i]! < seq) seqs[i] = seq;
  }

  /** Whether every bucket of `mark` was raised after `since`. */
  after(mark: string, since: number): boolean {
    const seqs = this.#seqs;
    if (!seqs) return false;
    for (const i of this.#buckets(mark)) if (!(seqs[i]! > since)) return false;
    return true;
  }

  save(maxBuckets = this.size): SavedPositions {
    let size = this.size;
    while (size > maxBuckets && size > 1) size /= 2;
    const folded = new Map<number, number>();
    this.#seqs?.forEach((seq, i) => {
      if (seq > 0) folded.set(i % size, Math.max(seq, folded.get(i % size) ?? 0));
    });
    return { size, marks: [...folded] };
  }

  load(marks: readonly [number, number][]): void {
    for (const [i, seq] of marks) {
      if (!(i >= 0 && i < this.size)) continue;
      this.#array()[i] = seq;
    }
  }

  #array(): Float64Array {
    if (!this.#seqs) this.#seqs = new Float64Array(this.size);
    return this.#seqs;
  }

  /** The mark's buckets: h1 + i·h2 of two hashes (Kirsch and Mitzenmacher), mixed first. */
  #buckets(mark: string): number[] {
    const h1 = mix(fnv1a(mark));
    const h2 = mix(h1 ^ 0x9e3779b9) | 1;
    const out: number[] = [];
    for (let i = 0; i < HASHES; i++) out.push(((h1 + Math.imul(i, h2)) >>> 0) % this.size);
    return out;
  }
}

/** murmur3's finaliser: every bit of the hash counts in its low bits. */
function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * 131,072 buckets for keys and tags and 16,384 for lists (powers of two, so a copy can be
 * folded smaller): 1.1 MiB a cache once it has folded a record. With three hashes, after
 * 5,000 folded rows or keys a mark that changed nothing is taken for changed about once in
 * 800, after 20,000 once in 20 (the Bloom filter's (1 - e^(-3n/m))^3). Lists fill their
 * array sooner (a mark per column value of each written row): a list with an equality
 * filter is judged better than by table for the first few thousand writes.
 */
const NAME_BUCKETS = 1 << 17;
const LIST_BUCKETS = 1 << 14;
const HASHES = 3;
/** Purges by prefix or pattern kept as they are. */
const NAMED = 256;
/** Marks counted exactly: tables' tags and no-equality list marks (and plain tags). */
const WIDE = 4096;

/** A table's tag (or another tag with no row in it), or the lists of a table with no equality. */
function isWide(mark: string): boolean {
  if (mark.startsWith(TAG)) return !/[#@]/.test(mark);
  return mark.startsWith(LIST) && mark.endsWith("\u0000\u0000");
}

interface SavedPositions {
  size: number;
  marks: [bucket: number, seq: number][];
}

/** What `ChangeBuckets.save` gives: JSON as it is. */
export interface SavedBuckets {
  wide: [mark: string, seq: number][];
  wideSpilled: boolean;
  names: SavedPositions;
  lists: SavedPositions;
  named: { prefix?: string; pattern?: string; seq: number }[];
  everything: number;
}

function isPositions(v: unknown): v is SavedPositions {
  const p = v as SavedPositions | null;
  return (
    typeof p === "object" &&
    p !== null &&
    Number.isInteger(p.size) &&
    p.size > 0 &&
    p.size <= 1 << 20 &&
    (p.size & (p.size - 1)) === 0 &&
    Array.isArray(p.marks) &&
    p.marks.every((m) => Array.isArray(m) && typeof m[0] === "number" && typeof m[1] === "number")
  );
}

function isSaved(v: unknown): v is SavedBuckets {
  const s = v as SavedBuckets | null;
  return (
    typeof s === "object" &&
    s !== null &&
    Array.isArray(s.wide) &&
    s.wide.every((w) => Array.isArray(w) && typeof w[0] === "string" && typeof w[1] === "number") &&
    isPositions(s.names) &&
    isPositions(s.lists) &&
    Array.isArray(s.named) &&
    s.named.every((n) => typeof n?.seq === "number") &&
    typeof s.everything === "number"
  );
}

const LIST = "l:";
const TAG = "t:";
const keyMark = (key: string) => `k:${key}`;
const tagMark = (tag: string) => `${TAG}${tag}`;
const listMark = (table: string, column: string, value: string) =>
  `${LIST}${table}\u0000${column}\u0000${value}`;

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
export function eventMarks(plan: (lookup: DependencyLookup) => void): Set<string> {
  // A set: an update's two rows share most values, each one mark.
  const marks = new Set<string>();
  plan({
    keysForTag(tag) {
      marks.add(tagMark(tag));
      return [];
    },
    listsOn() {
      // The planner asks listsOn only of a lookup without listsFor; marks have no name for
      // "every list of the table", so a planner that asked would be a defect, not a miss.
      throw new Error("eventMarks: the planner asked listsOn although listsFor is there");
    },
    listsFor(table, rows) {
      marks.add(listMark(table, "", ""));
      for (const row of rows) {
        for (const [column, value] of Object.entries(row)) {
          if (value !== null && value !== undefined)
            marks.add(listMark(table, column, eqKey(value)));
        }
      }

      return [];
    },
  });
  return marks;
}
