import type { ChangeLog, LogPosition } from "../change-log/contract.ts";
import type { Cost } from "../cost.ts";

/** Claims kept at most: one whose copy never came (its load failed) goes with the oldest. */
const KEPT = 4096;

/**
 * Reloads this node claimed for all (a refused copy's reload, a rehydration), by key, until
 * the key's copy is in the shared tiers: then the nodes that lost the claim and wait for the
 * copy are told (`ChangeLog.finished`), instead of each reading the tier again and again
 * until it comes.
 */
export class ReloadClaims {
  readonly #log: Pick<ChangeLog, "finished">;
  readonly #won = new Map<string, string[]>();
  /** Keys a record invalidated here lately, and that record's seq (see `invalidated`). */
  readonly #invalidated = new Map<string, number>();

  constructor(log: Pick<ChangeLog, "finished">) {
    this.#log = log;
  }

  /** This node won claim `name`, whose work stores `key` into the shared tiers. */
  won(key: string, name: string): void {
    if (!this.#log.finished) return;
    const names = this.#won.get(key);
    if (names) names.push(name);
    else this.#won.set(key, [name]);
    if (this.#won.size > KEPT) this.#won.delete(this.#won.keys().next().value!);
  }

  /**
   * Record `seq` invalidated `keys` here. Their reload for all is claimed under
   * `${seq}:${key}`, the name the rehydration after the record claims it by: a node that
   * reads one before the copy is in (gone from the shared tier, or an older copy refused)
   * claims that name too, and waits for the winner's load instead of loading it again, even
   * once it applied later records (its own position would name another claim).
   */
  invalidated(keys: Iterable<string>, seq: number): void {
    for (const key of keys) {
      this.#invalidated.delete(key); // the newest last, so the oldest go first
      this.#invalidated.set(key, seq);
    }
    while (this.#invalidated.size > KEPT) {
      this.#invalidated.delete(this.#invalidated.keys().next().value!);
    }
  }

  /**
   * The claim name of `key`'s reload after the record that invalidated it here, once; none
   * if `copy` (a refused copy's position) is as new as that record: a later record refused
   * it, whose reload that name does not stand for.
   */
  takeReload(key: string, copy?: LogPosition): string | undefined {
    const seq = this.#invalidated.get(key);
    if (seq === undefined) return undefined;
    this.#invalidated.delete(key);
    if (copy !== undefined && copy.seq >= seq) return undefined;
    return `${seq}:${key}`;
  }

  /** `keys` were written into the shared tiers: the claims for them are done. */
  stored(keys: readonly string[], cost?: Cost): void {
    if (this.#won.size === 0) return;
    const names: string[] = [];
    for (const key of keys) {
      const won = this.#won.get(key);
      if (!won) continue;
      this.#won.delete(key);
      names.push(...won);
    }
    if (names.length > 0) this.#log.finished!(names, cost);
  }
}
