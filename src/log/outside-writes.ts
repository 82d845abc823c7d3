import type { ChangeLog } from "./contract.ts";

/** Writes made around edgecache that change capture feeds into the log (see core/capture.ts). */
export interface OutsideWrites {
  /** Whether capture is on: then some writes reach the log only after they commit. */
  active(): boolean;
  /** Whether a captured write waits to be appended (one of `tables`, when given). */
  pending(tables?: readonly string[]): Promise<boolean>;
  /**
   * Captured writes come in the database's commit order and no other record carries rows
   * (an adapter over SQLite that owns its engine): on the in-process log their records are
   * then ordered, and may patch cached results.
   */
  ordered?: boolean;
}

/**
 * A shared log (Redis) with captured writes beside it: a load is exact only if no
 * captured write waits either, since one that committed before the load's read may not be
 * in the log yet. Records of captured writes are appended without a turn: unordered.
 */
export function withOutsideWrites(log: ChangeLog, outside: OutsideWrites): ChangeLog {
  return {
    get name() {
      return log.name;
    },
    get shared() {
      return log.shared || outside.active();
    },
    ...(log.nodes && { nodes: () => log.nodes!() }),
    ...(log.claim && { claim: (name: string) => log.claim!(name) }),
    turn: () => log.turn(),
    follow: (follower) => log.follow(follower),
    append: (ops, turn, placed, wantsTurn) => log.append(ops, turn, placed, wantsTurn),
    trusted: () => log.trusted(),
    async quietSince(position, tables) {
      if (!(await log.quietSince(position, tables))) return false;
      return !(outside.active() && (await outside.pending(tables)));
    },
    get failures() {
      return log.failures;
    },
    close: () => log.close(),
  };
}
