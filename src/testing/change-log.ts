import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type {
  ChangeLog,
  ChangeOp,
  ChangeRecord,
  LogFollower,
  LogStart,
  WriteTurn,
} from "../core/change-log/contract.ts";

/**
 * What one log implementation honours beyond the contract's common part. Each is read
 * from the implementation, not wished for: the suite asserts the declared behaviour
 * either way, so an implementation that differs is tested for what it does instead.
 */
export interface LogCapabilities {
  /**
   * Instances over one backend follow one log (nodes, isolates). False: each instance is
   * a log of its own (the in-process log), and records reach only its own followers.
   */
  shared: boolean;
  /**
   * How write turns work (see `WriteTurn`). "exclusive": a turn excludes other nodes;
   * "overlapping": turns do not exclude each other, and a record is ordered only if no
   * record changed its tables since its turn was taken; both lapse after `leaseMs` (a
   * shared log). False: a turn is had at once, and every record is ordered (one process
   * writes).
   */
  turns: false | "exclusive" | "overlapping";
  /**
   * A node serves from cache only while it has heard the log within this lease, and an
   * append is acknowledged once every node holding a lease applied it or lost its lease.
   * Undefined: always trusted (no server to lose).
   */
  leaseMs?: number;
  /**
   * Records a node that fell behind can still read; further behind, it starts over from
   * the log's snapshot. Undefined: records are delivered as they are appended, and no
   * follower can fall behind.
   */
  retain?: number;
}

/** One test's log backend: a fresh Redis prefix, object name, or nothing at all. */
export interface LogBackend {
  /** A node: a new log instance over this backend. */
  open(): Promise<ChangeLog>;
  /**
   * A node that takes the place of `old` over the same backend: a restart. By default
   * `old` is closed and a node opened, which is all a log whose state is on its server needs.
   */
  restart?(old: ChangeLog): Promise<ChangeLog>;
  /**
   * Stops `node` hearing the log (a paused or partitioned node); resolves once it hears
   * nothing more, with the function that lets it hear again. Required when `retain` or
   * `leaseMs` is declared.
   */
  stall?(node: ChangeLog): Promise<() => void>;
  /** Releases what the backend holds; nodes still open are closed by the suite first. */
  close(): Promise<void>;
}

export interface LogFactory {
  capabilities: LogCapabilities;
  backend(): Promise<LogBackend>;
}

/** Records what a log calls on its follower, in order. */
export class Recorder implements LogFollower {
  readonly calls: ({ reset: LogStart } | { apply: ChangeRecord })[] = [];

  apply(record: ChangeRecord): Promise<unknown> {
    this.calls.push({ apply: record });
    return Promise.resolve();
  }

  reset(start: LogStart): void {
    this.calls.push({ reset: start });
  }

  get resets(): LogStart[] {
    return this.calls.flatMap((c) => ("reset" in c ? [c.reset] : []));
  }

  get records(): ChangeRecord[] {
    return this.calls.flatMap((c) => ("apply" in c ? [c.apply] : []));
  }

  /** The last position this follower holds: its last reset, then every record after it. */
  get position(): { log: string; seq: number } {
    let log = "";
    let seq = 0;
    for (const c of this.calls) {
      if ("reset" in c) ({ log, seq } = c.reset.position);
      else seq = c.apply.seq;
    }
    return { log, seq };
  }

  /** Every record follows its predecessor or the reset before it by exactly one: no gap. */
  expectGapFree(): void {
    let seq: number | undefined;
    for (const c of this.calls) {
      if ("reset" in c) seq = c.reset.position.seq;
      else {
        expect(seq, "a record before any reset").toBeDefined();
        expect(c.apply.seq).toBe(seq! + 1);
        seq = c.apply.seq;
      }
    }
  }
}

const event = (table: string, id: number): ChangeOp => ({
  event: { table, op: "update", old: { id, n: 0 }, new: { id, n: 1 } },
});

const tableOf = (record: ChangeRecord): string | undefined => {
  const op = record.ops[0];
  return op && "event" in op ? op.event.table : undefined;
};

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The behaviour every change log promises (src/log/contract.ts), run against a real
 * backend: gap-free order, following from a position, gap detection, retention, turns,
 * barrier and lease, restart. `name` names the implementation in the test names; the
 * capabilities decide which tests are registered, each asserting the declared behaviour.
 *
 * @example
 * import { changeLogConformance } from "edgecache/testing";
 * changeLogConformance("my-log", {
 *   capabilities: { shared: true, turns: "exclusive", leaseMs: 1000 },
 *   async backend() {
 *     const prefix = uniquePrefix();
 *     return { open: () => myLog({ prefix }), stall: pauseReader, close: () => dropPrefix(prefix) };
 *   },
 * });
 */
export function changeLogConformance(name: string, factory: LogFactory): void {
  const { shared, turns, leaseMs, retain } = factory.capabilities;

  describe(`${name} change log conformance`, () => {
    let backend: LogBackend;
    let nodes: ChangeLog[];

    beforeEach(async () => {
      backend = await factory.backend();
      nodes = [];
    });

    afterEach(async () => {
      for (const node of nodes.splice(0).reverse()) await node.close();
      await backend.close();
    });

    /** A node that follows the log, once it has its start (and, with a lease, its lease). */
    async function node(): Promise<{ log: ChangeLog; seen: Recorder }> {
      const log = await backend.open();
      nodes.push(log);
      return follow(log);
    }

    async function follow(log: ChangeLog): Promise<{ log: ChangeLog; seen: Recorder }> {
      const seen = new Recorder();
      log.follow(seen);
      await until(() => seen.resets.length > 0, "the node has its start");
      if (leaseMs !== undefined) await until(() => log.trusted(), "the node holds its lease");
      return { log, seen };
    }

    it("appends get gap-free, increasing positions, and the follower has each before append resolves", async () => {
      const { log, seen } = await node();
      const start = seen.position.seq;
      for (let i = 1; i <= 5; i++) {
        const seq = await log.append([event("users", i)]);
        expect(seq).toBe(start + i);
        expect(seen.position.seq).toBeGreaterThanOrEqual(seq);
      }
      const concurrent = await Promise.all(
        Array.from({ length: 20 }, (_, i) => log.append([event("orders", i)])),
      );
      expect([...concurrent].sort((a, b) => a - b)).toEqual(
        Array.from({ length: 20 }, (_, i) => start + 6 + i),
      );
      expect(seen.records.map((r) => r.seq)).toEqual(
        Array.from({ length: 25 }, (_, i) => start + 1 + i),
      );
      seen.expectGapFree();
    });

    it("a follower is given each record once, in order, with the ops as appended", async () => {
      const { log, seen } = await node();
      const ops: ChangeOp[][] = [
        [event("users", 1)],
        [{ keys: ["a", "b"] }],
        [{ prefix: "/users" }, { tags: ["users#2"] }],
        [{ pattern: "/orders/*" }],
      ];
      const seqs: number[] = [];
      for (const o of ops) seqs.push(await log.append(o));
      const got = seen.records.filter((r) => seqs.includes(r.seq));
      expect(got.map((r) => r.seq)).toEqual(seqs);
      expect(got.map((r) => r.ops)).toEqual(ops);
      seen.expectGapFree();
    });

    it("a follower that attaches later starts at the log's position, with each table's last change", async () => {
      const { log: a, seen: first } = await node();
      await a.append([event("users", 1)]);
      const usersAt = await a.append([event("users", 2)]);
      const ordersAt = await a.append([event("orders", 1), event("orders", 2)]);
      const manualAt = await a.append([{ keys: ["k"] }]);
      // Shared: a second node over the backend. One process: a second cache on the same log.
      const { log: b, seen } = shared ? await node() : await follow(a);
      const start = seen.resets[0]!;
      expect(start.position).toEqual({ log: first.position.log, seq: manualAt });
      expect(start.lastChanges.get("users")).toBe(usersAt);
      expect(start.lastChanges.get("orders")).toBe(ordersAt);
      expect(start.lastChanges.get("")).toBe(manualAt);
      const next = await a.append([event("users", 3)]);
      await until(() => seen.position.seq >= next, "the later follower has the next record");
      expect(seen.records.map((r) => r.seq)).toEqual([next]);
      if (b !== a) {
        const own = await b.append([event("users", 4)]);
        await until(() => first.position.seq >= own, "the first node has the other's record");
        expect(first.records.at(-1)?.seq).toBe(own);
      }
      first.expectGapFree();
      seen.expectGapFree();
    });

    if (shared) {
      it("records appended by several nodes at once reach every node in one gap-free order", async () => {
        const a = await node();
        const b = await node();
        const seqs = await Promise.all(
          Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).log.append([event("users", i)])),
        );
        const head = Math.max(...seqs);
        await until(
          () => a.seen.position.seq >= head && b.seen.position.seq >= head,
          "both nodes have every record",
        );
        const order = (r: Recorder) => r.records.map((x) => [x.seq, JSON.stringify(x.ops)]);
        expect(order(a.seen)).toEqual(order(b.seen));
        expect(new Set(seqs).size).toBe(20);
        a.seen.expectGapFree();
        b.seen.expectGapFree();
        // Where the log can tell, a node knows its own records from the others'.
        for (const r of a.seen.records) {
          if (r.own !== undefined) expect(r.own).toBe(seqs.indexOf(r.seq) % 2 === 1);
        }
      });
    }

    if (retain !== undefined) {
      it("a node that fell further behind than the log retains starts over at the head: a reset, never a gap", async () => {
        const a = await node();
        const b = await node();
        const resume = await backend.stall!(b.log);
        try {
          // In batches of concurrent appends: thousands, one after another, take long.
          for (let i = 0; i < retain * 3; i += 50) {
            await Promise.all(
              Array.from({ length: 50 }, (_, j) =>
                a.log.append([event((i + j) % 2 ? "users" : "orders", i + j)]),
              ),
            );
          }
        } finally {
          resume();
        }
        const head = a.seen.position.seq;
        await until(() => b.seen.position.seq >= head, "the stalled node caught up");
        expect(b.seen.resets.length).toBeGreaterThan(1);
        // Beyond the retained log, each table's last change stands in for its records.
        const start = b.seen.resets.at(-1)!;
        expect(start.position.seq).toBeGreaterThan(retain);
        const lastUsers = a.seen.records.findLast((r) => tableOf(r) === "users");
        expect(start.lastChanges.get("users")).toBe(lastUsers?.seq);
        b.seen.expectGapFree();
      }, 60_000);
    } else {
      it("no follower falls behind: every record of a long run is applied, without a reset", async () => {
        const { log, seen } = await node();
        for (let i = 0; i < 3000; i++) await log.append([event("users", i)]);
        expect(seen.resets).toHaveLength(1);
        expect(seen.records).toHaveLength(3000);
        seen.expectGapFree();
      });
    }

    it("a record appended with the write turn is ordered; the turn is then free again", async () => {
      const { log, seen } = await node();
      const turn = (await log.turn()) as WriteTurn;
      expect(turn).toBeDefined();
      const seq = await log.append([event("users", 1)], turn);
      expect(seen.records.find((r) => r.seq === seq)?.ordered).toBe(true);
      const again = await log.turn();
      expect(again).toBeDefined();
      again!.release();
      // Without a turn, only a log one process writes knows the record's place.
      const loose = await log.append([event("users", 2)]);
      expect(seen.records.find((r) => r.seq === loose)?.ordered).toBe(!shared);
    });

    it("a record appended with the turn is unordered if a record since the turn changed one of its tables, or one its view rows joined", async () => {
      const { log, seen } = await node();
      const ordered = (seq: number) => seen.records.find((r) => r.seq === seq)?.ordered;
      // A change recorded around the turn (a captured write, applyWrite) to orders...
      const first = (await log.turn()) as WriteTurn;
      await log.append([event("orders", 1)]);
      // ...then the turn's insert of a user, whose row as a view shows it joined orders.
      const views = { rows: { usersWithOrders: { id: 9, orders: [] } }, tables: ["orders"] };
      const insert: ChangeOp = { event: { table: "users", op: "insert", new: { id: 9 }, views } };
      expect(ordered(await log.append([insert], first))).toBe(false);
      // A record that neither changes nor joined the table changed meanwhile is ordered.
      const second = (await log.turn()) as WriteTurn;
      await log.append([event("orders", 2)]);
      expect(ordered(await log.append([event("users", 3)], second))).toBe(true);
    });

    if (turns === "exclusive") {
      it("the write turn excludes other nodes until released, and the log is not quiet meanwhile", async () => {
        const a = await node();
        const b = await node();
        const held = (await a.log.turn())!;
        expect(held).toBeDefined();
        let taken: WriteTurn | undefined;
        const waiting = b.log.turn().then((t) => {
          taken = t;
        });
        await new Promise((r) => setTimeout(r, Math.min(100, leaseMs! / 4)));
        expect(taken).toBeUndefined();
        // A load that read the source now might have missed a write in progress.
        expect(await a.log.quietSince(a.seen.position)).toBe(false);
        held.release();
        await waiting;
        expect(taken).toBeDefined();
        taken!.release();
        const quiet = async () => a.log.quietSince(a.seen.position);
        const deadline = Date.now() + 5000;
        while (!(await quiet()) && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 10));
        expect(await quiet()).toBe(true);
        // A position behind the head is not quiet: a record came after it.
        const seq = await a.log.append([event("users", 1)]);
        expect(await a.log.quietSince({ log: a.seen.position.log, seq: seq - 1 })).toBe(false);
        expect(await a.log.quietSince({ log: "another", seq })).toBe(false);
      });
    }

    if (turns === "overlapping") {
      it("turns overlap; the log is not quiet while one is held; of two overlapping writes to one table the second appended is unordered", async () => {
        const a = await node();
        const b = await node();
        const first = (await a.log.turn())!;
        const second = (await b.log.turn())!; // taken at once, while a holds one
        expect(first).toBeDefined();
        expect(second).toBeDefined();
        // A load that read the source now might have missed either write.
        expect(await a.log.quietSince(a.seen.position)).toBe(false);
        const one = await a.log.append([event("users", 1)], first);
        const two = await b.log.append([event("users", 2)], second);
        // The second may have committed before the first: it cannot patch.
        expect(b.seen.records.find((r) => r.seq === one)?.ordered).toBe(true);
        expect(b.seen.records.find((r) => r.seq === two)?.ordered).toBe(false);
        // Overlapping writes to different tables are both ordered.
        const users = (await a.log.turn())!;
        const orders = (await b.log.turn())!;
        const three = await a.log.append([event("users", 3)], users);
        const four = await b.log.append([event("orders", 4)], orders);
        expect(a.seen.records.find((r) => r.seq === three)?.ordered).toBe(true);
        expect(a.seen.records.find((r) => r.seq === four)?.ordered).toBe(true);
        // A turn taken after a record on its table was appended is ordered again.
        const after = (await b.log.turn())!;
        const five = await b.log.append([event("users", 5)], after);
        expect(b.seen.records.find((r) => r.seq === five)?.ordered).toBe(true);
        expect(await a.log.quietSince(a.seen.position)).toBe(true);
      });
    }

    if (turns) {
      it("a turn held past its time makes its record unordered, never lost", async () => {
        const { log, seen } = await node();
        const turn = (await log.turn())!;
        await new Promise((r) => setTimeout(r, leaseMs! + 200));
        const seq = await log.append([event("users", 1)], turn);
        const record = seen.records.find((r) => r.seq === seq);
        expect(record?.ordered).toBe(false);
      });
    } else {
      it("the turn is had at once, and a load is exact whenever the position is current", async () => {
        const { log, seen } = await node();
        const a = await log.turn();
        const b = await log.turn();
        expect(a).toBeDefined();
        expect(b).toBeDefined();
        expect(await log.quietSince(seen.position)).toBe(true);
      });
    }

    if (leaseMs !== undefined) {
      /**
       * One append, so what follows measures the barrier alone: a log younger than a lease
       * holds every append until it is a lease old (nodes of a log it replaced may still
       * serve from cache until they notice).
       */
      const settled = (log: ChangeLog) => log.append([{ keys: ["settle"] }]);

      it("an append is acknowledged only once every node holding a lease applied it or lost its lease", async () => {
        const a = await node();
        const b = await node();
        await settled(a.log);
        const resume = await backend.stall!(b.log);
        try {
          const started = Date.now();
          const seq = await a.log.append([event("users", 1)]);
          // b did not apply it: the append waited for b's lease to run out.
          expect(b.seen.position.seq).toBeLessThan(seq);
          expect(b.log.trusted()).toBe(false);
          expect(Date.now() - started).toBeGreaterThan(leaseMs / 4);
        } finally {
          resume();
        }
        await until(() => b.log.trusted(), "the stalled node holds a lease again");
        // A node that keeps up is waited for only as long as it takes to apply.
        const started = Date.now();
        const seq = await a.log.append([event("users", 2)]);
        expect(b.seen.position.seq >= seq || !b.log.trusted()).toBe(true);
        await until(() => b.seen.position.seq >= seq, "b has the record");
        expect(Date.now() - started).toBeLessThan(leaseMs * 3);
      });

      it("a closed node holds no lease and is not waited for", async () => {
        const a = await node();
        const b = await node();
        await settled(a.log);
        await b.log.close();
        expect(b.log.trusted()).toBe(false);
        const started = Date.now();
        await a.log.append([event("users", 1)]);
        expect(Date.now() - started).toBeLessThan(leaseMs / 2);
      });
    } else {
      it("the log is always trusted: there is no server to lose", async () => {
        const { log } = await node();
        expect(log.trusted()).toBe(true);
        await log.append([event("users", 1)]);
        expect(log.trusted()).toBe(true);
      });
    }

    it("a node restarted over the same backend continues the log: same log, next position", async () => {
      const { log, seen } = await node();
      await log.append([event("users", 1)]);
      const last = await log.append([event("orders", 1)]);
      const before = seen.position;
      const index = nodes.indexOf(log);
      const again = backend.restart
        ? await backend.restart(log)
        : await log.close().then(() => backend.open());
      nodes[index] = again;
      const { seen: after } = await follow(again);
      const start = after.resets[0]!;
      expect(start.position).toEqual({ log: before.log, seq: last });
      expect(start.lastChanges.get("orders")).toBe(last);
      expect(await again.append([event("users", 2)])).toBe(last + 1);
      after.expectGapFree();
    });

    it("counts no failures while its backend answers", async () => {
      const { log } = await node();
      await log.append([event("users", 1)]);
      expect(log.failures).toBe(0);
    });
  });
}
