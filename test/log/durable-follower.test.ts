import { describe, expect, it } from "vitest";
import type { ChangeOp, ChangeRecord } from "../../src/core/change-log/contract.ts";
import type { DurableObjectNamespaceLike } from "../../src/durable/rpc.ts";
import { FollowerHost } from "../../src/log/durable-follower.ts";
import { ChangeLogHost } from "../../src/log/durable-host.ts";
import { DurableChangeLog } from "../../src/log/durable-object.ts";
import { until } from "../helpers/cluster.ts";
import { memoryState } from "./memory-state.ts";

// The log's object and a regional follower, wired to each other in one process (their
// storage in memory): the protocol alone. test/adapter/cloudflare/followers-in-workerd.test.ts runs the
// same through Durable Objects in workerd, with distance and a partition.

const LEASE_MS = 400;
const FOLLOWER = "log@far";

type Reply = { unknown?: true; log?: string; head?: number; records?: ChangeRecord[] };

async function pair() {
  const link = { cut: false };
  let follower: FollowerHost;
  // Calls between the two objects, through JSON as between Durable Objects.
  const reach = async (name: string, op: string, body: unknown): Promise<unknown> => {
    if (link.cut) throw new Error("cut");
    const json = JSON.parse(JSON.stringify(body)) as Record<string, unknown>;
    const res: Response =
      name === FOLLOWER
        ? follower.handle(op.replace("follower/", ""), json)
        : await host.handle(op, json);
    return res.json();
  };
  const state = memoryState();
  const host: ChangeLogHost = new ChangeLogHost(state, reach);
  // A Durable Object takes no request before its constructor's block is done.
  await state.ready;
  follower = new FollowerHost(reach);
  /** An isolate's sync with the follower, from `applied` of the log. */
  const sync = async (applied = 0, log?: string): Promise<Reply> =>
    (await follower
      .handle("sync", { primary: "log", follower: FOLLOWER, lease: LEASE_MS, log, applied })
      .json()) as Reply;
  const append = async (ops: ChangeOp[]): Promise<number> => {
    const res = await host.handle("append", {
      node: "writer",
      log: "",
      applied: 0,
      leaseMs: 0,
      ops,
      token: "",
      tables: ["users"],
    });
    return ((await res.json()) as { seq: number }).seq;
  };
  // The follower joins on its first sync: "unknown" until its lease is granted.
  expect(await sync()).toEqual({ unknown: true });
  await until(async () => !(await sync()).unknown);
  return { link, sync, append };
}

const op = (id: number): ChangeOp => ({ keys: [`/v1/users?id=${id}`] });

describe("regional follower of the Durable Object log", () => {
  it("holds every write once it is acknowledged: an isolate's next sync there brings it", async () => {
    const { sync, append } = await pair();
    const joined = await sync();
    for (let i = 1; i <= 3; i++) {
      const seq = await append([op(i)]);
      const reply = await sync(joined.head, joined.log);
      expect(reply.records?.map((r) => r.seq)).toContain(seq);
    }
  });

  it("cut off from the log's object: a write is acknowledged once its lease ran out, and from then on it answers unknown", async () => {
    const { link, sync, append } = await pair();
    const joined = await sync();
    link.cut = true;
    const seq = await append([op(7)]);
    // No window: the follower stopped trusting its copy before the object stopped waiting.
    expect(await sync(joined.head, joined.log)).toEqual({ unknown: true });
    expect(await sync(joined.head, joined.log)).toEqual({ unknown: true });
    link.cut = false;
    // It rejoins on a sync: the renewal brings what it missed before it trusts again.
    await until(async () => !(await sync(joined.head, joined.log)).unknown);
    const reply = await sync(joined.head, joined.log);
    expect(reply.records?.map((r) => r.seq)).toEqual([seq]);
    // And is pushed to again.
    const next = await append([op(8)]);
    expect((await sync(seq, joined.log)).records?.map((r) => r.seq)).toEqual([next]);
  });
});

describe("an isolate whose sync fails", () => {
  it.each(["strict", "follower"] as const)(
    "%s mode: is not trusted until it hears the log again (a write may have been acknowledged meanwhile)",
    async (mode) => {
      const link = { up: true };
      const namespace: DurableObjectNamespaceLike = {
        idFromName: (name) => name,
        get: () => ({
          fetch: async () => {
            if (!link.up) throw new Error("cut");
            return Response.json({ log: "l", head: 0, records: [] });
          },
        }),
      };
      const log = new DurableChangeLog({ namespace, mode, region: "far" });
      await log.sync();
      expect(log.trusted()).toBe(true);
      link.up = false;
      await expect(log.sync()).rejects.toThrow(/sync failed/);
      expect(log.trusted()).toBe(false);
      link.up = true;
      await log.sync();
      expect(log.trusted()).toBe(true);
    },
  );
});
