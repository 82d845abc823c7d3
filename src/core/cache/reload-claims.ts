import type { ChangeLog } from "../../log/contract.ts";
import type { Cost } from "../cost.ts";

/** Claims kept at most: one whose copy never came (its load failed) goes with the oldest. */
const KEPT = 4096;

/**
 * Reloads this node claimed for all (a refused copy's reload, a rehydration, a patch's
 * copy), by key, until the key's copy is in the shared tiers: then the nodes that lost the
 * claim and wait for the copy are told (`ChangeLog.finished`), instead of each reading the
 * tier again and again until it comes.
 */
export class ReloadClaims {
  readonly #log: Pick<ChangeLog, "finished">;
  readonly #won = new Map<string, string[]>();

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
