import { type ChangeRecord, changedTables } from "../core/change-log/contract.ts";
import { DURABLE_LOG_LEASE, renewDue, trustedUntil } from "../core/time/lease.ts";
import type { ReachObject } from "../durable/rpc.ts";
import {
  type HeldLog,
  newer,
  optionalString,
  RETAINED_RECORDS,
  type SyncReply,
  since,
} from "./durable-host.ts";
import { DEFAULT_LEASE_MS, MAX_LEASE_MS, MIN_LEASE_MS } from "./durable-object.ts";

/**
 * A regional follower of the change log: a Durable Object near a region's isolates (named
 * `<log>@<region>`, hosted by `ChangeLogObject` like the log itself) that holds a copy of the
 * log, so a request's sync is a near round trip instead of one to the log's object.
 *
 * It is a lease-holding member of the log, as a lease-mode isolate is: it renews its lease by
 * syncing with the log's object (`leaseMs`, asked by its isolates), and the object pushes it
 * every new record and acknowledges a write only once it holds it or its lease ran out.
 * Hence the guarantee: while the follower trusts its copy, the object counts it a member,
 * so every write acknowledged so far is in the copy. It trusts the copy from the time it
 * sent its renewal (not when the answer came), `LEASE_MARGIN_MS` less than the object grants,
 * so its trust ends before the object would stop waiting for it.
 *
 * Cut off from the object, it stops being renewed: once its lease lapses it answers its
 * isolates "unknown" (they read around the cache, from the database) until a renewal gets
 * through, which brings every record it missed (or a fresh start) before it trusts again.
 * It keeps nothing in storage: a restarted follower starts untrusted and rejoins.
 */
export class FollowerHost {
  #reach: ReachObject;
  #self = "";
  #primary = "";
  #leaseMs = DEFAULT_LEASE_MS;
  #held: HeldLog = { log: "", head: 0, first: 1, lastChanges: {} };
  #records = new Map<number, ChangeRecord>();
  #trustedUntil = Number.NEGATIVE_INFINITY;
  #renewing: Promise<void> | undefined;

  /** `reach`: calls another object of the namespace (the log's object). */
  constructor(reach: ReachObject) {
    this.#reach = reach;
  }

  /** Answers a call `op`: `sync` from an isolate, `push` from the log's object. */
  handle(op: string, body: Record<string, unknown>): Response {
    switch (op) {
      case "sync":
        return Response.json(this.#sync(body));
      case "push":
        this.#take(body as unknown as SyncReply);
        return Response.json({ log: this.#held.log, applied: this.#held.head });
      default:
        return new Response(`no follower op ${op}`, { status: 404 });
    }
  }

  /**
   * An isolate's sync: the records after what it applied while the copy is trusted, else
   * "unknown". Renews the lease in the background once it is in its second half.
   */
  #sync(body: Record<string, unknown>): SyncReply | { unknown: true } {
    // The isolate names the follower and its log: an object does not know its own name.
    this.#self ||= optionalString(body.follower) ?? "";
    this.#primary ||= optionalString(body.primary) ?? "";
    const lease = Number(body.lease);
    if (Number.isFinite(lease) && lease >= MIN_LEASE_MS) {
      this.#leaseMs = Math.min(lease, MAX_LEASE_MS);
    }
    const now = Date.now();
    if (renewDue(DURABLE_LOG_LEASE, now, this.#trustedUntil, this.#leaseMs)) void this.#renew();
    if (now >= this.#trustedUntil) {
      return { unknown: true };
    }
    return since(this.#held, this.#records, body);
  }

  /** Syncs with the log's object as a member holding a lease; one renewal at a time. */
  #renew(): Promise<void> {
    if (this.#self === "" || this.#primary === "") return Promise.resolve();
    this.#renewing ??= (async () => {
      const sent = Date.now();
      try {
        const reply = (await this.#reach(this.#primary, "sync", {
          node: `follower:${this.#self}`,
          log: this.#held.log,
          applied: this.#held.head,
          leaseMs: this.#leaseMs,
          push: this.#self,
        })) as SyncReply;
        // The copy holds the reply's records before it is trusted on their account.
        this.#take(reply);
        const until = trustedUntil(DURABLE_LOG_LEASE, sent, this.#leaseMs);
        this.#trustedUntil = Math.max(this.#trustedUntil, until);
      } catch {
        // Out of reach: the lease runs out, and the next sync in its second half tries again.
      } finally {
        this.#renewing = undefined;
      }
    })();
    return this.#renewing;
  }

  /** Adds what the log's object sent (a push, or a renewal's answer) to the copy, in order. */
  #take(reply: SyncReply): void {
    const held = this.#held;
    if (reply.records === undefined || reply.log !== held.log) {
      // A push from a log this copy does not follow (yet): its renewal will start it over.
      if (reply.records !== undefined || (reply.log === held.log && reply.head <= held.head)) {
        return;
      }
      this.#records.clear();
      this.#held = {
        log: reply.log,
        head: reply.head,
        first: reply.head + 1,
        lastChanges: Object.fromEntries(reply.lastChanges ?? []),
        bookmark: newer(held.bookmark, reply.bookmark),
      };
      return;
    }
    const lastChanges = { ...held.lastChanges };
    let { head, first } = held;
    for (const record of reply.records) {
      if (record.seq <= head) continue;
      if (record.seq !== head + 1) break;
      head = record.seq;
      this.#records.set(head, record);
      for (const table of changedTables(record.ops)) lastChanges[table] = head;
    }
    while (head - first >= RETAINED_RECORDS) this.#records.delete(first++);
    this.#held = {
      log: held.log,
      head,
      first,
      lastChanges,
      bookmark: newer(held.bookmark, reply.bookmark),
    };
  }
}
