/**
 * What requests cost a server that several nodes share (Redis on Node): commands sent, and
 * round trips waited for (commands sent together wait one; one sent and not waited for,
 * none). The engine hands a `Cost` to each store and log call; a store or log that talks to
 * such a server adds what the call sent, the others ignore it. Counted by kind of request,
 * so a cluster's cost reads in numbers that do not depend on the machine: a hit from memory
 * costs none, a write the same however many nodes follow the log.
 */
export class Cost {
  commands = 0;
  trips = 0;

  /** `commands` sent, waiting `trips` round trips for them (one by default). */
  add(commands: number, trips = 1): void {
    this.commands += commands;
    this.trips += trips;
  }

  /** Adds what `other` counted. */
  merge(other: Cost): void {
    this.commands += other.commands;
    this.trips += other.trips;
  }
}

/**
 * The kinds of work a node's costs are counted by: reads answered from a tier (`hit`) or
 * loaded from the source (`miss`, with the copy of the load into the shared tiers), writes
 * and invalidations (`write`: the turn, the append, the wait for the other nodes), the
 * log's own reading and lease (`following`), and everything after an answer or outside a
 * request (`background`: shared-tier deletes, rehydration, refreshes, claims).
 */
export const COST_KINDS = ["hit", "miss", "write", "following", "background"] as const;
export type CostKind = (typeof COST_KINDS)[number];

/** The node's costs by kind. */
export type Costs = Record<CostKind, Cost>;

export function newCosts(): Costs {
  return {
    hit: new Cost(),
    miss: new Cost(),
    write: new Cost(),
    following: new Cost(),
    background: new Cost(),
  };
}
