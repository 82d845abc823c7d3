import type { SqlShape, WideningReason } from "./shapes.ts";

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

  /** Counts a stored select by its shape, and by `widened` when its registration went wider. */
  count(shape: SqlShape, widened?: WideningReason): void {
    const r = this.#counts;
    const reasons: string[] = shape.fallback ? [shape.fallback] : [...shape.widened];
    if (widened && !shape.fallback && !reasons.includes(widened)) reasons.push(widened);
    if (shape.fallback) r.table++;
    else if (reasons.length > 0) r.widened++;
    else r.exact++;
    for (const reason of reasons) r.reasons[reason] = (r.reasons[reason] ?? 0) + 1;
  }

  stats(): RegistrationStats {
    return { ...this.#counts, reasons: { ...this.#counts.reasons } };
  }
}
