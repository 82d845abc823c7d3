import type { ChangeLog } from "./contract.ts";

/** Writes made around edgecache that change capture feeds into the log (see core/capture-feed.ts). */
export interface OutsideWrites {
  /** Whether capture is on: then some writes reach the log only after they commit. */
  active(): boolean;
  /** Whether a captured write waits to be appended (one of `tables`, when given). */
  pending(tables?: readonly string[]): Promise<boolean>;
  /**
   * Whether no captured write waits, told without a statement of its own (capture's next
   * look at the database), so it may take a while; false where it cannot tell. Absent
   * where capture has no such looks.
   */
  settled?(): Promise<boolean>;
  /**
   * Captured writes come in the database's commit order and no other record carries rows
   * (an adapter over SQLite that owns its engine): on the in-process log their records are
   * then ordered, and may patch cached results.
   */
  ordered?: boolean;
}

/**
 * Whether no captured write waits (for `tables`): asked of the change table, or with
 * `patient`, told by capture's next look at it (false where capture cannot tell so).
 */
export async function outsideQuiet(
  outside: OutsideWrites,
  tables: readonly string[] | undefined,
  patient: boolean | undefined,
): Promise<boolean> {
  if (!outside.active()) return true;
  if (patient) return (await outside.settled?.()) ?? false;
  return !(await outside.pending(tables));
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
    ...(log.node !== undefined && { node: log.node }),
    get shared() {
      return log.shared || outside.active();
    },
    ...(log.nodes && { nodes: () => log.nodes!() }),
    ...(log.claim && { claim: (name, cost) => log.claim!(name, cost) }),
    ...(log.claimOrAwait && {
      claimOrAwait: (name, ms, cost) => log.claimOrAwait!(name, ms, cost),
    }),
    ...(log.finished && { finished: (names, cost) => log.finished!(names, cost) }),
    turn: (cost) => log.turn(cost),
    follow: (follower, cost) => log.follow(follower, cost),
    append: (ops, turn, placed, wantsTurn, cost) => log.append(ops, turn, placed, wantsTurn, cost),
    trusted: () => log.trusted(),
    // Capture first: a change it applies after this answer is in the log the log answers
    // for (and its answer with `patient` costs no statement).
    async quietSince(position, tables, cost, patient) {
      if (!(await outsideQuiet(outside, tables, patient))) return false;
      return log.quietSince(position, tables, cost, patient);
    },
    get failures() {
      return log.failures;
    },
    close: () => log.close(),
  };
}
