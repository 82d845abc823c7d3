// Changes of a table applied in ANY order, record by record, to exact
// adjacent pages (no load between records): every page that is still patched ends equal
// to the table (the old-row checks catch the rest). Passes: the permanent damage needs a
// load between the records (see test/drizzle/postgres-reorder.test.ts and
// test/database/d1/drain-order.test.ts).
import fc from "fast-check";
import { expect, it } from "vitest";
import type { Filter, Resource, Row, SortKey } from "../../src/core/data/query.ts";
import { type Neighbours, patchList } from "../../src/core/deps/patch.ts";
import type { ListDependency, WriteEvent } from "../../src/core/deps/planner.ts";
import { compareSortValues, matches, sortValues } from "../../src/core/deps/predicate.ts";

const resource: Resource = {
  kind: "table",
  name: "t",
  table: {
    name: "t",
    primaryKey: "id",
    columns: [
      { name: "id", kind: "number", nullable: false },
      { name: "a", kind: "number", nullable: false },
    ],
  },
};
const keys = { primaryKey: (t: string) => (t === "t" ? "id" : undefined) };
const SORT: SortKey[] = [
  { column: "a", desc: false },
  { column: "id", desc: false },
];
const listOf = (rows: Row[], f: Filter[]) =>
  rows
    .filter((r) => matches(r, f))
    .sort((x, y) => compareSortValues(sortValues(x, SORT), sortValues(y, SORT), SORT));
const dep = (w: Row[], f: Filter[], offset: number, limit: number): ListDependency => {
  const d: ListDependency = { table: "t", filters: f, sort: SORT, offset, limit, count: w.length };
  if (w.length) d.last = sortValues(w[w.length - 1]!, SORT);
  return d;
};
it("random change sequences applied in a random order: final pages", () => {
  let finalWrong = 0;
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 10 }),
      fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 10, maxLength: 10 }),
      fc.array(
        fc.record({
          id: fc.integer({ min: 1, max: 14 }),
          a: fc.option(fc.integer({ min: 0, max: 5 })),
        }),
        { minLength: 2, maxLength: 5 },
      ),
      fc.constantFrom<Filter[]>([], [{ column: "a", op: "gte", value: 2 }]),
      fc.integer({ min: 1, max: 3 }),
      fc.array(fc.nat(), { minLength: 5, maxLength: 5 }),
      fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
      (ids, as, ops, f, limit, perm, cached) => {
        let state: Row[] = ids.map((id, i) => ({ id, a: as[i]! }));
        const s0 = state;
        const events: WriteEvent[] = [];
        for (const o of ops) {
          const cur = state.find((r) => r.id === o.id);
          if (o.a === null) {
            if (!cur) continue;
            events.push({ table: "t", op: "delete", old: cur });
            state = state.filter((r) => r !== cur);
          } else {
            const n = { id: o.id, a: o.a };
            events.push(
              cur
                ? { table: "t", op: "update", old: cur, new: n }
                : { table: "t", op: "insert", new: n },
            );
            state = [...state.filter((r) => r !== cur), n];
          }
        }
        // apply order: a random permutation
        const order = events
          .map((e, i) => ({ e, k: perm[i % perm.length]! * 10 + i }))
          .sort((x, y) => x.k - y.k)
          .map((x) => x.e);
        let pages = [0, 1, 2, 3].map((p) => {
          if (!cached[p]) return undefined;
          const w = listOf(s0, f).slice(p * limit, p * limit + limit);
          return { rows: w, dep: dep(w, f, p * limit, limit) };
        });
        for (const e of order) {
          pages = pages.map((page, p) => {
            if (!page) return undefined;
            const b = pages[p - 1],
              a = pages[p + 1];
            const n: Neighbours = { before: b && b.dep.count === limit ? b.rows : [] };
            if (a && page.dep.count === limit)
              n.after = { rows: a.rows, toEnd: a.dep.count < limit };
            const got = patchList(resource, page.dep, page.rows, [e], keys, n, true);
            return got && { rows: got.rows, dep: got.list };
          });
        }
        pages.forEach((page, p) => {
          if (!page) return;
          const truth = listOf(state, f).slice(p * limit, p * limit + limit);
          if (JSON.stringify(truth) !== JSON.stringify(page.rows)) {
            finalWrong++;
          }
        });
      },
    ),
    { numRuns: 20000, seed: 3 },
  );
  expect(finalWrong).toBe(0);
});
