import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DependencyIndex, registrationBytes } from "../../src/core/deps/index.ts";
import type { ListDependency } from "../../src/core/deps/planner.ts";

// The dependency index against a model (a map of key to its tags and lists): whatever order
// keys are registered, registered anew (a patch: mostly the same tags) and removed in, a
// tag finds exactly the keys whose current registration holds it, the lists of a table
// are exactly the current ones, and the index's heap estimate is the sum of the current
// registrations'.

const tag = fc.constantFrom("t#1", "t#2", "t#3", "t", "u#1");
const list = fc.record({
  table: fc.constantFrom("t", "u"),
  filters: fc.constantFrom(
    [],
    [{ column: "a", op: "eq" as const, value: 1 }],
    [{ column: "a", op: "prefix" as const, value: "x" }],
    [{ column: "a", op: "gte" as const, value: 2 }],
  ),
  sort: fc.constant([{ column: "id", desc: false }]),
  offset: fc.constant(0),
  limit: fc.constant(2),
  count: fc.integer({ min: 0, max: 2 }),
  last: fc.constantFrom(undefined, [3]),
}) as fc.Arbitrary<ListDependency>;
const key = fc.constantFrom("a", "b", "c", "d");
const ROWS = [
  { id: 1, a: 1 },
  { id: 4, a: 2 },
  { id: 2, a: "xy" },
  { id: 3, a: null },
];

/** Each pair's key and list object, as text that tells list objects apart by identity. */
const ids = new WeakMap<object, number>();
let made = 0;
function identities(pairs: Iterable<readonly [string, ListDependency]>): string[] {
  return [...pairs]
    .map(([k, l]) => {
      if (!ids.has(l)) ids.set(l, made++);
      return `${k}:${ids.get(l)}`;
    })
    .sort();
}

describe("the dependency index", () => {
  it("finds what the current registrations hold, through registrations anew and removals", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({
              add: key,
              // Not unique: a caller's own tags may name one twice.
              tags: fc.array(tag, { maxLength: 4 }),
              lists: fc.array(list, { maxLength: 2 }),
            }),
            fc.record({ remove: key }),
          ),
          { maxLength: 40 },
        ),
        (steps) => {
          const index = new DependencyIndex();
          const model = new Map<string, { tags: string[]; lists: ListDependency[] }>();
          for (const step of steps) {
            if ("add" in step) {
              index.add(step.add, step.tags, step.lists, Number.POSITIVE_INFINITY);
              model.set(step.add, { tags: step.tags, lists: step.lists });
            } else {
              index.remove(step.remove);
              model.delete(step.remove);
            }
            for (const t of ["t#1", "t#2", "t#3", "t", "u#1"]) {
              const expected = [...model].filter(([, r]) => r.tags.includes(t)).map(([k]) => k);
              expect([...index.keysForTag(t)].sort()).toEqual(expected.sort());
            }
            for (const table of ["t", "u"]) {
              const expected = [...model].flatMap(([k, r]) =>
                r.lists.filter((l) => l.table === table).map((l) => [k, l] as const),
              );
              const found = [...index.listsOn(table)];
              expect(found.length).toBe(expected.length);
              for (const pair of expected) expect(found).toContainEqual(pair);
            }
            const bytes = [...model].reduce(
              (sum, [k, r]) => sum + registrationBytes(k, r.tags, r.lists),
              0,
            );
            expect(index.bytes).toBe(bytes);
            expect(index.size).toBe(model.size);
            // What a write is given, and a page's siblings, as an index that only ever held
            // the current registrations gives them: the same list objects, under the same keys.
            const fresh = new DependencyIndex();
            for (const [k, r] of model) fresh.add(k, r.tags, r.lists, Number.POSITIVE_INFINITY);
            for (const table of ["t", "u"]) {
              for (const row of ROWS) {
                expect(identities(index.listsFor(table, [row]))).toEqual(
                  identities(fresh.listsFor(table, [row])),
                );
              }
            }
            for (const r of model.values()) {
              for (const l of r.lists) {
                expect(identities(index.pagesOf(l))).toEqual(identities(fresh.pagesOf(l)));
              }
            }
          }
          for (const k of model.keys()) index.remove(k);
          expect([...index.listsFor("t", [{ id: 1, a: 2 }])]).toEqual([]);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
