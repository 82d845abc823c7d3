import type { Row } from "../data/query.ts";
import { eqKey, type Filing, filingOf, listFamily, sameFiling } from "./filing.ts";
import { IntervalIndex } from "./intervals.ts";
import type { DependencyLookup, ListDependency } from "./planner.ts";

/** What a registration counts: reads served since its entry was stored. */
export interface HitCount {
  hits: number;
}

export interface Registration extends HitCount {
  tags: readonly string[];
  lists: readonly ListDependency[];
  /** When the entry has expired from every tier and the registration can go. */
  expiresAt: number;
  /** Tiers (bit i for tier i) that may hold the entry; the registration goes with the last. */
  held: number;
  /** What it takes in the heap, estimated (see registrationBytes). */
  bytes: number;
}

/**
 * The heap one registration takes, estimated from above: the key and tag strings (UTF-16),
 * an entry in each map that files it, and per list its objects, its family text and the
 * maps filed by its filter value (a flood of distinct filter values makes a map each).
 * Measured on the data API (a flood of distinct junk lists and ids): some 1.9 KB a key.
 */
export function registrationBytes(
  key: string,
  tags: readonly string[],
  lists: readonly ListDependency[],
): number {
  let bytes = REGISTRATION_BYTES + 2 * key.length;
  for (const tag of tags) bytes += TAG_BYTES + 2 * tag.length;
  for (const list of lists) bytes += LIST_BYTES + 4 * listFamily(list).length;
  return bytes;
}
/** The registration's objects and its entry in the map by key. */
const REGISTRATION_BYTES = 400;
/** A tag's entry in its set, and its set's share when the tag is new. */
const TAG_BYTES = 160;
/** A list's objects (filters, sort, last row), its entries in three maps, a map of its own. */
const LIST_BYTES = 1200;

/**
 * The dependency index: which cached keys hold which tags, and which keys are lists
 * over which table. A registration stays while a tier that reports its evictions may still
 * hold the entry (`release`), so an entry evicted from memory but still in SQLite is still
 * invalidated, and the index is bounded by those tiers' own bounds.
 */
export class DependencyIndex implements DependencyLookup {
  #byKey = new Map<string, Registration>();
  #byTag = new Map<string, Set<string>>();
  /** Per table, each key's lists on it (several when an OR registers one per disjunct). */
  #listsByTable = new Map<string, Map<string, ListDependency[]>>();
  /**
   * The same lists, for the planner, by table and then where each is filed (filingOf): by
   * its first equality filter's column and value (eqKey), so a write looks up the lists its
   * rows' values name instead of testing every list on the table; else by a prefix, or by
   * the interval of values a row must have to reach it. The rest (no filter or window that
   * bounds a column) are under "" in #byValue, which every write visits.
   */
  #byValue = new Map<string, Map<string, Map<string, Map<string, ListDependency[]>>>>();
  /** Lists with a prefix filter and no equality: by table, column, then prefix. */
  #byPrefix = new Map<string, Map<string, Prefixes>>();
  /** Lists bounded on a column by range filters or their window: by table, then column. */
  #byRange = new Map<string, Map<string, IntervalIndex<readonly [string, ListDependency]>>>();
  /** Each key's places in #byRange, to take it out. */
  #ranged = new Map<string, { at: IntervalIndex<unknown>; handle: object }[]>();
  /** Pages of one list (same table, filters and order), by listFamily: found in one look. */
  #pages = new Map<string, Map<string, ListDependency[]>>();
  #bytes = 0;

  get size(): number {
    return this.#byKey.size;
  }

  /** The heap the registrations take, estimated (registrationBytes). */
  get bytes(): number {
    return this.#bytes;
  }

  /** The least recently registered keys first (a new registration of a key moves it last). */
  oldest(): Iterable<string> {
    return this.#byKey.keys();
  }

  /**
   * Registers `key` as held by the tiers in `held` (a bit per tier; the first by default),
   * added to the tiers that may still hold an earlier entry under it.
   */
  add(
    key: string,
    tags: readonly string[],
    lists: readonly ListDependency[],
    expiresAt: number,
    held = 1,
  ): HitCount {
    const before = this.#byKey.get(key);
    const hits = before?.hits ?? 0;
    let relisted = false;
    if (before) {
      this.#byKey.delete(key); // registered anew, it goes last (see oldest)
      this.#bytes -= before.bytes;
      relisted = this.#relist(key, before.lists, lists);
      if (!relisted) this.#unlist(key, before.lists);
    }
    const bytes = registrationBytes(key, tags, lists);
    const reg = { tags, lists, expiresAt, hits, held: held | (before?.held ?? 0), bytes };
    this.#byKey.set(key, reg);
    this.#bytes += bytes;
    this.#retag(key, before?.tags ?? [], tags);
    if (relisted) return reg;
    for (const list of lists) {
      addTo(this.#listsByTable, list.table, key, list);
      addTo(this.#pages, listFamily(list), key, list);
      this.#file(key, list);
    }
    return reg;
  }

  /**
   * Puts each list of `to` where the list of `from` at its place is filed, when the two are
   * filed alike: a patched page's list is its query's with another window, filed under the
   * same table, family and equality value (or prefix, or none). Its entries in every map
   * stay; only the list objects in them change. False, with nothing changed, when any pair
   * is filed apart (or by an interval, whose bounds a window moves): see #unlist.
   */
  #relist(key: string, from: readonly ListDependency[], to: readonly ListDependency[]): boolean {
    if (from.length !== to.length || from.length === 0) return false;
    const places: ListDependency[][][] = [];
    for (let i = 0; i < from.length; i++) {
      const was = from[i]!;
      const list = to[i]!;
      const family = listFamily(was);
      if (list.table !== was.table || listFamily(list) !== family) return false;
      const filing = filingOf(list);
      if (!sameFiling(filingOf(was), filing)) return false;
      const filed = this.#filed(key, list.table, filing);
      const inTable = this.#listsByTable.get(list.table)?.get(key);
      const inFamily = this.#pages.get(family)?.get(key);
      if (!filed || !inTable || !inFamily) return false;
      places.push([inTable, inFamily, filed]);
    }
    for (let i = 0; i < from.length; i++) {
      for (const lists of places[i]!) {
        const at = lists.indexOf(from[i]!);
        if (at < 0) throw new Error(`[edgecache] [index] ${key}: a list is not where it was filed`);
        lists[at] = to[i]!;
      }
    }
    return true;
  }

  /** The lists of `key` where #file put one filed as `filing` (none for an interval). */
  #filed(key: string, table: string, filing: Filing): ListDependency[] | undefined {
    if (filing.kind === "range") return undefined;
    if (filing.kind === "prefix") {
      return this.#byPrefix.get(table)?.get(filing.column)?.lists.get(filing.prefix)?.get(key);
    }
    const [column, value] = filing.kind === "eq" ? [filing.column, filing.value] : ["", ""];
    return this.#byValue.get(table)?.get(column)?.get(value)?.get(key);
  }

  has(key: string): boolean {
    return this.#byKey.has(key);
  }

  get(key: string): Readonly<Registration> | undefined {
    return this.#byKey.get(key);
  }

  remove(key: string): void {
    const reg = this.#byKey.get(key);
    if (!reg) return;
    this.#byKey.delete(key);
    this.#bytes -= reg.bytes;
    this.#retag(key, reg.tags, []);
    this.#unlist(key, reg.lists);
  }

  /**
   * Files `key` under the tags of `to` instead of those of `from`, touching only the tags
   * that differ: a patched entry mostly holds the rows it held, and each tag it keeps would
   * otherwise leave and rejoin its set (the table's tag a set of every key on the table,
   * whose holes make it rehash). Its tags mostly keep their order too (its rows shifted by a
   * place), so only the run between the two lists' common start and common end is compared.
   */
  #retag(key: string, from: readonly string[], to: readonly string[]): void {
    if (to.length === 0) {
      for (const tag of from) this.#untag(key, tag);
      return;
    }
    let start = 0;
    let endFrom = from.length;
    let endTo = to.length;
    while (start < endFrom && start < endTo && from[start] === to[start]) start++;
    while (endFrom > start && endTo > start && from[endFrom - 1] === to[endTo - 1]) {
      endFrom--;
      endTo--;
    }
    if (start === endFrom && start === endTo) return;
    const gone = new Set<string>();
    for (let i = start; i < endFrom; i++) gone.add(from[i]!);
    for (let i = start; i < endTo; i++) {
      const tag = to[i]!;
      if (gone.delete(tag)) continue;
      const keys = this.#byTag.get(tag);
      if (keys) keys.add(key);
      else this.#byTag.set(tag, new Set([key]));
    }
    if (gone.size > 0) {
      // A tag listed twice in `from` may also be in the common start or end: it stays.
      for (let i = 0; i < start; i++) gone.delete(to[i]!);
      for (let i = endTo; i < to.length; i++) gone.delete(to[i]!);
    }
    for (const tag of gone) this.#untag(key, tag);
  }

  #untag(key: string, tag: string): void {
    const keys = this.#byTag.get(tag);
    keys?.delete(key);
    if (keys?.size === 0) this.#byTag.delete(tag);
  }

  /** Takes `key`'s lists out of every map that files them. */
  #unlist(key: string, lists: readonly ListDependency[]): void {
    for (const { at, handle } of this.#ranged.get(key) ?? []) at.remove(handle);
    this.#ranged.delete(key);
    for (const list of lists) {
      deleteFrom(this.#listsByTable, list.table, key);
      deleteFrom(this.#pages, listFamily(list), key);
      this.#unfile(key, list);
    }
  }

  /** Files `list` of `key` for listsFor: see filingOf. */
  #file(key: string, list: ListDependency): void {
    const filing = filingOf(list);
    if (filing.kind === "prefix") {
      const prefixes = slot(this.#byPrefix, list.table);
      let at = prefixes.get(filing.column);
      if (!at) {
        at = { longest: 0, lists: new Map() };
        prefixes.set(filing.column, at);
      }
      at.longest = Math.max(at.longest, filing.prefix.length);
      addTo(at.lists, filing.prefix, key, list);
    } else if (filing.kind === "range") {
      const ranges = slot(this.#byRange, list.table);
      let at = ranges.get(filing.column);
      if (!at) {
        at = new IntervalIndex();
        ranges.set(filing.column, at);
      }
      const handle = at.add(filing.low, filing.high, [key, list] as const);
      const places = this.#ranged.get(key);
      if (places) places.push({ at, handle });
      else this.#ranged.set(key, [{ at, handle }]);
    } else {
      const [column, value] = filing.kind === "eq" ? [filing.column, filing.value] : ["", ""];
      addTo(slot(slot(this.#byValue, list.table), column), value, key, list);
    }
  }

  /** Takes `list` of `key` out of where #file put it (its intervals went already, by key). */
  #unfile(key: string, list: ListDependency): void {
    const filing = filingOf(list);
    if (filing.kind === "prefix") {
      const prefixes = this.#byPrefix.get(list.table);
      const at = prefixes?.get(filing.column);
      if (at) deleteFrom(at.lists, filing.prefix, key);
      if (at?.lists.size === 0) prefixes!.delete(filing.column);
      if (prefixes?.size === 0) this.#byPrefix.delete(list.table);
      return;
    }
    if (filing.kind === "range") {
      const ranges = this.#byRange.get(list.table);
      if (ranges?.get(filing.column)?.size === 0) ranges.delete(filing.column);
      if (ranges?.size === 0) this.#byRange.delete(list.table);
      return;
    }
    const [column, value] = filing.kind === "eq" ? [filing.column, filing.value] : ["", ""];
    const byColumn = this.#byValue.get(list.table);
    const byEq = byColumn?.get(column);
    if (byEq) deleteFrom(byEq, value, key);
    if (byEq?.size === 0) byColumn!.delete(column);
    if (byColumn?.size === 0) this.#byValue.delete(list.table);
  }

  /** Records that the tiers in `held` hold the registered entry too (a read back-filled them). */
  hold(key: string, held: number): HitCount | undefined {
    const reg = this.#byKey.get(key);
    if (reg) reg.held |= held;
    return reg;
  }

  /**
   * A tier dropped the entry (evicted it): once no tier in `held` may hold it, the
   * registration goes. Returns whether it went.
   */
  release(key: string, tier: number): boolean {
    const reg = this.#byKey.get(key);
    if (!reg) return false;
    reg.held &= ~tier;
    if (reg.held !== 0) return false;
    this.remove(key);
    return true;
  }

  /**
   * Counts `key`'s reads from 0 again: its entry goes and another replaces it (a patch)
   * while the registration stays, to be registered anew where it changed. `gone`: the
   * tiers it was deleted from, which hold it no more (until it is stored there again).
   */
  recount(key: string, gone = 0): void {
    const reg = this.#byKey.get(key);
    if (!reg) return;
    reg.hits = 0;
    reg.held &= ~gone;
  }

  /** Counts a read of `key`; returns the new count. */
  touch(key: string): number {
    const reg = this.#byKey.get(key);
    if (!reg) return 0;
    return ++reg.hits;
  }

  keysForTag(tag: string): Iterable<string> {
    return this.#byTag.get(tag) ?? [];
  }

  listedOn(key: string, table: string): boolean {
    return this.#listsByTable.get(table)?.has(key) === true;
  }

  listsOn(table: string): ListPair[] {
    const found: ListPair[] = [];
    const byKey = this.#listsByTable.get(table);
    if (byKey) pairsOf(byKey, found);
    return found;
  }

  /**
   * Gathered into an array, not yielded: a write asks this of every table it changes, and
   * a generator's objects and resumptions cost more than the pairs.
   */
  listsFor(table: string, rows: readonly Row[]): ListPair[] {
    const found: ListPair[] = [];
    for (const [column, { longest, lists }] of this.#byPrefix.get(table) ?? []) {
      const walked: Map<string, ListDependency[]>[] = [];
      for (const row of rows) {
        const value = row[column];
        if (typeof value !== "string") continue; // a prefix matches text alone
        for (let n = 0; n <= Math.min(value.length, longest); n++) {
          const bucket = lists.get(value.slice(0, n));
          if (!bucket || walked.includes(bucket)) continue;
          walked.push(bucket);
          pairsOf(bucket, found);
        }
      }
    }
    for (const [column, ranges] of this.#byRange.get(table) ?? []) {
      if (rows.length === 1) {
        ranges.stabInto(rows[0]![column] ?? null, found);
        continue;
      }
      // By the filed pair, not the list: one list object may be registered under two keys.
      const stabbed: ListPair[] = [];
      for (const row of rows) ranges.stabInto(row[column] ?? null, stabbed);
      for (const pair of new Set(stabbed)) found.push(pair);
    }
    const byColumn = this.#byValue.get(table);
    if (!byColumn) return found;
    for (const [column, byEq] of byColumn) {
      if (column === "") {
        const bucket = byEq.get("");
        if (bucket) pairsOf(bucket, found);
        continue;
      }
      // Each list is under one value: a bucket two rows name is walked once.
      const walked: Map<string, ListDependency[]>[] = [];
      for (const row of rows) {
        const bucket = byEq.get(eqKey(row[column]));
        if (!bucket || walked.includes(bucket)) continue;
        walked.push(bucket);
        pairsOf(bucket, found);
      }
    }
    return found;
  }

  /**
   * The registered pages of `list`'s list: the same table, filters and order, any window
   * (`list`'s own key among them, if registered).
   */
  pagesOf(list: ListDependency): ListPair[] {
    const found: ListPair[] = [];
    const byKey = this.#pages.get(listFamily(list));
    if (byKey) pairsOf(byKey, found);
    return found;
  }

  *keys(prefix = ""): Iterable<string> {
    for (const key of this.#byKey.keys()) if (key.startsWith(prefix)) yield key;
  }

  /** Keys registered under a key prefix and with a tag where given (all by default). */
  *keysWhere(filter: { prefix?: string; tag?: string }): Iterable<string> {
    if (filter.tag === undefined) return yield* this.keys(filter.prefix);
    const prefix = filter.prefix ?? "";
    for (const key of this.keysForTag(filter.tag)) if (key.startsWith(prefix)) yield key;
  }

  /** Drops registrations of entries that have expired everywhere; returns how many. */
  sweep(now: number): number {
    let n = 0;
    for (const [key, reg] of this.#byKey) {
      if (reg.expiresAt <= now) {
        this.remove(key);
        n++;
      }
    }
    return n;
  }
}

/** Lists with a prefix filter on one column, by prefix; `longest` the longest prefix filed. */
interface Prefixes {
  longest: number;
  lists: Map<string, Map<string, ListDependency[]>>;
}

/** The map under `at`, made if there is none. */
function slot<K, V>(map: Map<string, Map<K, V>>, at: string): Map<K, V> {
  let inner = map.get(at);
  if (!inner) {
    inner = new Map();
    map.set(at, inner);
  }
  return inner;
}

/** Files `list` under `at` for `key`, beside the key's other lists there. */
function addTo(
  map: Map<string, Map<string, ListDependency[]>>,
  at: string,
  key: string,
  list: ListDependency,
): void {
  const byKey = slot(map, at);
  const lists = byKey.get(key);
  if (lists) lists.push(list);
  else byKey.set(key, [list]);
}

/** A key and one of its lists. */
type ListPair = readonly [key: string, list: ListDependency];

/** Each key's lists, a pair per list, added to `into`. */
function pairsOf(byKey: Map<string, ListDependency[]>, into: ListPair[]): void {
  for (const [key, lists] of byKey) for (const list of lists) into.push([key, list]);
}

function deleteFrom<V>(map: Map<string, Map<string, V>>, at: string, key: string): void {
  const byKey = map.get(at);
  byKey?.delete(key);
  if (byKey?.size === 0) map.delete(at);
}
