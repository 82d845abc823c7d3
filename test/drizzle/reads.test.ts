import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { LogPosition } from "../../src/core/change-log/contract.ts";
import { PendingReads, READ_MAX_AGE_MS } from "../../src/drizzle/reads.ts";

describe("pending reads (pairing Drizzle's put with its get)", () => {
  it("never gives a put a position later than its own read's, in any interleaving", () => {
    // ops: begin a read of key k, or finish one outstanding read (its put), or let time pass
    const op = fc.oneof(
      fc.record({ kind: fc.constant("begin" as const), key: fc.integer({ min: 0, max: 2 }) }),
      fc.record({ kind: fc.constant("end" as const), pick: fc.nat() }),
      fc.record({
        kind: fc.constant("wait" as const),
        ms: fc.integer({ min: 0, max: READ_MAX_AGE_MS }),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        let now = 0;
        let seq = 0;
        const reads = new PendingReads(() => now);
        const outstanding: { key: string; since: LogPosition }[] = [];
        for (const o of ops) {
          if (o.kind === "wait") now += o.ms;
          else if (o.kind === "begin") {
            const since = { log: "l", seq: seq++ };
            outstanding.push({ key: `k${o.key}`, since });
            reads.begin(`k${o.key}`, since);
          } else if (outstanding.length > 0) {
            const [read] = outstanding.splice(o.pick % outstanding.length, 1);
            const position = reads.end(read!.key);
            if (position) expect(position.seq).toBeLessThanOrEqual(read!.since.seq);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it("pairs a lone read with its own position, and refuses a put that had no read", () => {
    const reads = new PendingReads(() => 0);
    expect(reads.end("k")).toBeUndefined();
    reads.begin("k", { log: "l", seq: 3 });
    expect(reads.end("k")).toEqual({ log: "l", seq: 3 });
    expect(reads.size).toBe(0);
  });
});
