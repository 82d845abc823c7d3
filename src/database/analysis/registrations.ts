import { type Explanation, explainShape } from "./explain.ts";
import type { SqlShape, WideningReason } from "./shapes.ts";

/** Distinct queries whose explanation is kept, the least recently stored forgotten first. */
const KEPT_SHAPES = 200;

/**
 * A query's explanation in the stats: its SQL, how many of its results were stored, and
 * how many lookups of it hit and missed (what share of the reads it carries).
 */
export interface ShapeStats extends Explanation {
  sql: string;
  stored: number;
  hits: number;
  misses: number;
}

/** Lookups of a query not stored yet: counted under its explanation once it is. */
interface Lookups {
  hits: number;
  misses: number;
}

/** What `getStats().registrations` says: how stored selects were registered. */
export interface RegistrationStats {
  exact: number;
  widened: number;
  table: number;
  reasons: Record<string, number>;
}

/**
 * Counts registrations by kind (exact, widened, table level) and by reason, for the stats
 * of the Drizzle adapter and the raw SQL entry alike.
 */
export class RegistrationCounts {
  #counts: RegistrationStats = { exact: 0, widened: 0, table: 0, reasons: {} };
  /** By SQL text (a query shape: parameters are bound), in the order last stored. */
  #shapes = new Map<string, ShapeStats>();
  /** Lookups of queries with no explanation yet (none stored, or forgotten), bounded alike. */
  #unexplained = new Map<string, Lookups>();

  /**
   * Counts a stored select by its shape, and by `widened` when its registration went wider;
   * with its `sql`, under that query's explanation too.
   */
  count(shape: SqlShape, widened?: WideningReason, sql?: string): void {
    if (sql !== undefined) this.#explain(sql, shape, widened);
    const r = this.#counts;
    const reasons: string[] = shape.fallback ? [shape.fallback] : [...shape.widened];
    if (widened && !shape.fallback && !reasons.includes(widened)) reasons.push(widened);
    if (shape.fallback) r.table++;
    else if (reasons.length > 0) r.widened++;
    else r.exact++;
    for (const reason of reasons) r.reasons[reason] = (r.reasons[reason] ?? 0) + 1;
  }

  /** A lookup of the query `sql` (its shape's text): a hit or a miss. */
  lookup(sql: string, hit: boolean): void {
    let counts: Lookups | undefined = this.#shapes.get(sql);
    if (!counts) {
      counts = this.#unexplained.get(sql);
      if (!counts) {
        counts = { hits: 0, misses: 0 };
        this.#unexplained.set(sql, counts);
        if (this.#unexplained.size > KEPT_SHAPES) {
          this.#unexplained.delete(this.#unexplained.keys().next().value!);
        }
      }
    }
    if (hit) counts.hits++;
    else counts.misses++;
  }

  stats(): RegistrationStats {
    return { ...this.#counts, reasons: { ...this.#counts.reasons } };
  }

  /** The queries stored lately with their explanations, the most stored first. */
  shapes(): ShapeStats[] {
    return [...this.#shapes.values()]
      .map((s) => ({ ...s, reasons: [...s.reasons], tables: [...s.tables] }))
      .sort((a, b) => b.stored - a.stored);
  }

  #explain(sql: string, shape: SqlShape, widened: WideningReason | undefined): void {
    const known = this.#shapes.get(sql);
    const lookups = known ?? this.#unexplained.get(sql);
    this.#shapes.delete(sql);
    this.#unexplained.delete(sql);
    // The last registration's explanation: the catalog may have been learned since.
    this.#shapes.set(sql, {
      sql,
      ...explainShape(shape, widened),
      stored: (known?.stored ?? 0) + 1,
      hits: lookups?.hits ?? 0,
      misses: lookups?.misses ?? 0,
    });
    if (this.#shapes.size > KEPT_SHAPES) this.#shapes.delete(this.#shapes.keys().next().value!);
  }
}
