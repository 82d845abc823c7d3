import { LRUCache } from "lru-cache";
import type { CacheEntry } from "../core/entries/entry.ts";
import { rowsSource } from "../database/analysis/group-statements.ts";
import { groupPlan } from "../database/analysis/groups.ts";
import { lookedUp, rowOf } from "../database/analysis/lookups.ts";
import type { SqlDialect } from "../database/analysis/parse.ts";
import { resultRows } from "../database/analysis/shapes.ts";
import { decode, encode } from "./codec.ts";
import type { GroupRead } from "./group-patches.ts";
import { withRows } from "./result-patches.ts";
import type { ResultForm } from "./statement-contract.ts";

/**
 * Answered from what is held (issue 71): a select that looks one row up by its base's key
 * or a unique column (the single article by its slug) is answered, on a miss, from a held
 * result of the same rows source (the same select list, joins and parameters: the article
 * list) that shows that row. A held result in the cache is current, as a hit is; its rows'
 * values do not depend on its WHERE or window (database/analysis/groups.ts, `rowsSource`), so
 * the row is what the lookup would read. The row's absence tells nothing: the lookup then
 * runs.
 */

const TEXT = new TextDecoder();
/** Rows sources remembered, and held results per source (the newest first asked). */
const SOURCES = 2_000;
const PER_SOURCE = 8;

export class HeldResults<R> {
  #by = new LRUCache<string, string[]>({ max: SOURCES });
  #dialect: () => SqlDialect;
  #form: ResultForm<R>;

  constructor(dialect: () => SqlDialect, form: ResultForm<R>) {
    this.#dialect = dialect;
    this.#form = form;
  }

  /** Notes `key`, just stored, as holding rows of its read's source (not a lookup's). */
  stored(key: string, read: GroupRead): void {
    if (!groupPlan(read.shape) || lookedUp(read.shape) !== undefined) return;
    const source = this.#source(read);
    if (source === undefined) return;
    const keys = (this.#by.get(source) ?? []).filter((k) => k !== key);
    keys.push(key);
    if (keys.length > PER_SOURCE) keys.shift();
    this.#by.set(source, keys);
  }

  /**
   * The lookup `read`'s result from a held result that shows its row, or undefined. `entry`
   * gives a key's current entry (undefined when not held or no longer current), without
   * counting it a hit: the lookup is counted, not each result looked into.
   */
  async answer(
    read: GroupRead,
    entry: (key: string) => Promise<CacheEntry | undefined>,
  ): Promise<R | undefined> {
    if (this.#by.size === 0) return undefined;
    const plan = groupPlan(read.shape);
    const lookup = plan ? lookedUp(read.shape) : undefined;
    if (!plan || lookup === undefined) return undefined;
    const source = this.#source(read);
    const keys = source === undefined ? undefined : this.#by.get(source);
    for (const key of [...(keys ?? [])].reverse()) {
      const held = await entry(key);
      if (!held) continue;
      const kept = decode(TEXT.decode(held.body));
      const rows = resultRows(kept);
      const row = rows && rowOf(plan, rows, lookup);
      if (row !== undefined) return this.#form.restored(withRows(kept, [row]));
    }
    return undefined;
  }

  #source(read: GroupRead): string | undefined {
    const source = rowsSource(read.sql, read.params, this.#dialect());
    if (!source) return undefined;
    try {
      return encode([source.sql, source.params]);
    } catch {
      return undefined;
    }
  }
}
