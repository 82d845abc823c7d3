import type { Miniflare } from "miniflare";
import { afterAll, beforeAll } from "vitest";
import type {
  ChangeLog,
  ChangeOp,
  LogFollower,
  LogPosition,
  WriteTurn,
} from "../../src/core/change-log/contract.ts";
import { RETAINED_RECORDS } from "../../src/log/durable-host.ts";
import { changeLogConformance } from "../../src/testing/index.ts";
import { startWorker } from "../helpers/workerd.ts";
import type { Call } from "./durable-object-entry.ts";

let mf: Miniflare;

beforeAll(async () => {
  mf = await startWorker(new URL("./durable-object-entry.ts", import.meta.url), {
    durableObjects: { LOG: "ChangeLogObject" },
  });
}, 60_000);

afterAll(async () => {
  await mf?.dispose();
});

/** Lease mode's lease: short, so the lease and turn tests wait little (the minimum is 400). */
const LEASE_MS = 600;
/** What the isolate trusts its lease less than the object grants it (durable-object.ts). */
const LEASE_MARGIN_MS = 100;
/** How often an isolate that is not stalled gets a request, and so syncs. */
const REQUEST_EVERY_MS = 20;

interface Reply {
  calls: Call[];
  trusted: boolean;
  failures: number;
  seq?: number;
  turn?: string;
  quiet?: boolean;
  /** A sync that asked the object (in lease mode most do not). */
  asked?: boolean;
}

/**
 * A node of the conformance suite: one `DurableChangeLog` inside workerd, driven by
 * requests. Requests arrive every `REQUEST_EVERY_MS` (each syncs, as the Worker's requests
 * do) until the node is stalled: an isolate that gets no requests. What its follower got
 * comes back with every reply and is handed on in order, before the call resolves.
 */
class IsolateLog implements ChangeLog {
  readonly name = "durable-log";
  readonly shared = true;
  #id: string;
  #follower: LogFollower | undefined;
  /** How many follower calls were handed on. */
  #next = 0;
  #trustedUntil = Number.NEGATIVE_INFINITY;
  #failures = 0;
  #requests: ReturnType<typeof setInterval> | undefined;
  #syncing: Promise<unknown> | undefined;
  #stalled = false;

  private constructor(id: string) {
    this.#id = id;
  }

  static async open(name: string): Promise<IsolateLog> {
    const res = await mf.dispatchFetch("http://log/open", {
      method: "POST",
      body: JSON.stringify({ name, mode: "lease", leaseMs: LEASE_MS }),
    });
    return new IsolateLog(((await res.json()) as { id: string }).id);
  }

  get failures(): number {
    return this.#failures;
  }

  follow(follower: LogFollower): void {
    this.#follower = follower;
    this.#requests = setInterval(() => {
      if (this.#stalled || this.#syncing) return;
      this.#syncing = this.#call("sync").finally(() => {
        this.#syncing = undefined;
      });
    }, REQUEST_EVERY_MS);
  }

  /**
   * The isolate's own rule (a sync that asked the object trusts the lease from when it
   * asked), on this process's clock, which sent the request before the isolate asked:
   * never later than the isolate's own answer.
   */
  trusted(): boolean {
    return Date.now() < this.#trustedUntil;
  }

  async turn(): Promise<WriteTurn | undefined> {
    const { turn } = await this.#call("turn");
    if (turn === undefined) return undefined;
    return new RemoteTurn(turn, () => {
      void this.#call("release", { turn });
    });
  }

  async append(ops: readonly ChangeOp[], turn?: WriteTurn): Promise<number> {
    const token = turn instanceof RemoteTurn ? turn.id : undefined;
    return (await this.#call("append", { ops, turn: token })).seq!;
  }

  async quietSince(position: LogPosition): Promise<boolean> {
    return (await this.#call("quiet", { position })).quiet!;
  }

  /** No more requests reach the isolate until `resume`; resolves once the last is answered. */
  async stall(): Promise<void> {
    this.#stalled = true;
    await this.#syncing;
  }

  resume(): void {
    this.#stalled = false;
  }

  async close(): Promise<void> {
    clearInterval(this.#requests);
    await this.#syncing;
    this.#trustedUntil = Number.NEGATIVE_INFINITY;
    await this.#call("close");
  }

  async #call(op: string, body: Record<string, unknown> = {}): Promise<Reply> {
    const sent = Date.now();
    const since = this.#next;
    const res = await mf.dispatchFetch(`http://log/${op}`, {
      method: "POST",
      body: JSON.stringify({ id: this.#id, since, ...body }),
    });
    if (res.status === 500) {
      const { code, message } = (await res.json()) as { code: string; message: string };
      throw Object.assign(new Error(message), { code });
    }
    if (!res.ok) throw new Error(`${op}: ${res.status} ${await res.text()}`);
    const reply = (await res.json()) as Reply;
    this.#failures = reply.failures;
    if (!reply.trusted) this.#trustedUntil = Number.NEGATIVE_INFINITY;
    else if (reply.asked) {
      this.#trustedUntil = Math.max(this.#trustedUntil, sent + LEASE_MS - LEASE_MARGIN_MS);
    }
    this.#handOn(reply.calls, since);
    return reply;
  }

  /**
   * Hands on the calls after `since`, in order. A reply holds every call from `since` to
   * when it was made, and `since` was at most what is handed on now: a reply sent earlier
   * that arrives later adds nothing, and none leaves a hole.
   */
  #handOn(calls: Call[], since: number): void {
    for (const [i, call] of calls.entries()) {
      if (since + i < this.#next) continue;
      this.#next++;
      if ("reset" in call) {
        const { position, lastChanges } = call.reset;
        this.#follower?.reset({ position, lastChanges: new Map(lastChanges) });
      } else {
        void this.#follower?.apply(call.apply);
      }
    }
  }
}

class RemoteTurn implements WriteTurn {
  constructor(
    readonly id: string,
    readonly release: () => void,
  ) {}
}

let objects = 0;

changeLogConformance("durable-object (lease mode, in workerd)", {
  capabilities: { shared: true, turns: "exclusive", leaseMs: LEASE_MS, retain: RETAINED_RECORDS },
  async backend() {
    // Each test a log of its own: an object of its own name.
    const name = `log-${++objects}`;
    const open = () => IsolateLog.open(name);
    return {
      open,
      async stall(node) {
        const isolate = node as IsolateLog;
        await isolate.stall();
        return () => isolate.resume();
      },
      async close() {},
    };
  },
});
