import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ABOVE, BELOW, compareBounds, IntervalIndex } from "../../src/core/deps/intervals.ts";

// The interval index behind the planner's lists without an equality filter: every stab
// finds exactly what a scan of the live intervals finds, through adds and removes.

const value = fc.oneof(
  fc.constant(null),
  fc.integer({ min: -5, max: 5 }),
  fc.constantFrom(0.5, Number.NaN, true, "", "a", "ab", "b", "😀"),
);
const bound = fc.oneof(value, fc.constant(BELOW), fc.constant(ABOVE));

describe("IntervalIndex", () => {
  it("stabs find what a scan finds, through adds and removes", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ add: fc.tuple(bound, bound) }),
            fc.record({ remove: fc.nat() }),
            fc.record({ stab: value }),
          ),
          { maxLength: 80 },
        ),
        (steps) => {
          const index = new IntervalIndex<number>();
          const live = new Map<number, { low: unknown; high: unknown; handle: object }>();
          let n = 0;
          for (const step of steps) {
            if ("add" in step) {
              const [low, high] = step.add;
              live.set(n, { low, high, handle: index.add(low, high, n) });
              n++;
            } else if ("remove" in step) {
              const id = [...live.keys()][step.remove % Math.max(1, live.size)];
              if (id === undefined) continue;
              index.remove(live.get(id)!.handle);
              index.remove(live.get(id)!.handle); // a second remove does nothing
              live.delete(id);
            } else {
              const expected = [...live]
                .filter(
                  ([, i]) =>
                    compareBounds(i.low, step.stab) <= 0 && compareBounds(i.high, step.stab) >= 0,
                )
                .map(([id]) => id);
              const found: number[] = [];
              index.stabInto(step.stab, found);
              expect(found.sort((a, b) => a - b)).toEqual(expected);
            }
            expect(index.size).toBe(live.size);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
