/**
 * Every lease edgecache holds or grants, in one place. A lease is a right that lapses unless
 * renewed: a node serving from memory while it hears the change log, a follower trusting its
 * copy, one connection draining a capture table, an isolate trusting its tenant table, an
 * alarm that keeps running while isolates call. Each names how long a grant lasts, when its
 * holder renews, and how much less than the grant the holder trusts it.
 *
 * The margins differ on purpose only where the clocks do: 100 ms on Workers, whose clock
 * moves only with I/O, 50 ms against Redis (timers and clocks drift less in a process), none
 * where grantor and holder read one clock (one database's `until` column, one object's time).
 */

/** How a lease is granted, trusted and renewed. Durations in ms. */
export interface LeasePolicy {
  /** How long a grant lasts where it is granted: the default where an option can set it. */
  readonly ms: number;
  /**
   * The holder renews once this fraction of its lease has passed: 0.5 renews in its second
   * half (one renewal lost still leaves time for the next), 0 on every call.
   */
  readonly renewAfter: number;
  /** The holder trusts its lease this much less than it lasts where granted (clock drift). */
  readonly marginMs: number;
  /** The shortest lease an option may set: renewals must leave time beyond the margin. */
  readonly minMs?: number;
  /** The longest lease the grantor gives, whatever is asked. */
  readonly maxMs?: number;
}

/**
 * The Durable Object change log's lease (lease and session modes, and a regional follower's
 * at the log's object; `leaseMs` sets it). It also caps a write turn. The shortest is four
 * margins: a sync every half lease must leave time beyond the margin.
 */
export const DURABLE_LOG_LEASE: LeasePolicy = {
  ms: 2000,
  renewAfter: 0.5,
  marginMs: 100,
  minMs: 400,
  maxMs: 30_000,
};

/**
 * The Redis change log's lease (`leaseMs`): a node that stops hearing the log stops serving
 * from cache within it, and a write waits at most about this long for a node that stopped
 * applying. 2 s: far above a loopback or in-region round trip (a lease that lapses under
 * normal jitter would cost hit rate for nothing), and short enough that a stuck node delays
 * writes only briefly. A node's blocking read returns every quarter lease and renews. A write
 * turn and a claim of shared work (`ChangeLog.claim`) last one lease too.
 */
export const REDIS_LOG_LEASE: LeasePolicy = {
  ms: 2000,
  renewAfter: 0.25,
  marginMs: 50,
  minMs: 200,
};

/**
 * The right to consume a SQLite capture table: one connection at a time, held in the table
 * `_edgecache_capture` (its `until` column, on the database's clock for everyone).
 */
export const SQLITE_CAPTURE_LEASE: LeasePolicy = { ms: 3000, renewAfter: 0.5, marginMs: 0 };

/**
 * The D1 capture drain's alarm on the log's Durable Object: it keeps draining while isolates
 * call the object, each call renewing it, and stops this long after the last (an idle Worker
 * costs nothing).
 */
export const CAPTURE_ALARM_LEASE: LeasePolicy = { ms: 60_000, renewAfter: 0, marginMs: 0 };

/**
 * How long a Worker isolate trusts its copy of the tenant table (`tenantsLeaseMs`): a rotation
 * or deletion returns after about this long, and a change is answered only after the lease
 * plus the margin, since a Worker's clock moves only with I/O.
 */
export const WORKER_TENANTS_LEASE: LeasePolicy = { ms: 2000, renewAfter: 0.5, marginMs: 100 };

/**
 * How long a Node process trusts what it last heard from a shared tenant state database; it
 * checks every fifth of it (a heartbeat).
 */
export const NODE_TENANTS_LEASE: LeasePolicy = { ms: 5000, renewAfter: 0.2, marginMs: 0 };

/** How long after a grant of `ms` its holder renews. */
export function renewAfterMs(policy: LeasePolicy, ms = policy.ms): number {
  return ms * policy.renewAfter;
}

/**
 * Whether a holder whose trust ends at `until` (of a lease of `ms`) renews at `now`: once the
 * time left is no more than the part of the lease after `renewAfter`.
 */
export function renewDue(policy: LeasePolicy, now: number, until: number, ms = policy.ms): boolean {
  return now >= until - (ms - renewAfterMs(policy, ms));
}

/** Until when the holder of a lease of `ms`, asked for at `sent`, trusts it. */
export function trustedUntil(policy: LeasePolicy, sent: number, ms = policy.ms): number {
  return sent + ms - policy.marginMs;
}
