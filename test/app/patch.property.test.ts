import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Neighbours, patchItem, patchList } from "../../src/app/patch.ts";
import type { ListDependency, WriteEvent } from "../../src/core/deps/planner.ts";
import { compareSortValues, matches, sortValues } from "../../src/core/deps/predicate.ts";
import type { Filter, Resource, Row, SortKey } from "../../src/core/query.ts";

/**
 * Patch in place, checked against recomputing: a random list, a window of it with or
 * without its neighbouring rows, a random write; whatever patchList returns must be the
 * window of the list after the write. It may decline (undefined), but it must decline
 * rarely enough to matter, which is measured too.
 */

const resource: Resource = {
  kind: "table",
  name: "t",
  table: {
    name: "t",
    primaryKey: "id",
    columns: [
      { name: "id", kind: "number", nullable: false },
      { name: "a", kind: "number", nullable: false },
      { name: "b", kind: "text", nullable: false },
    ],
  },
};
const keys = { primaryKey: (t: string) => (t === "t" ? "id" : undefined) };

const SORTS: SortKey[][] = [
  [{ column: "id", desc: false }],
  [
    { column: "a", desc: false },
    { column: "id", desc: false },
  ],
  [
    { column: "b", desc: true },
    { column: "id", desc: false },
  ],
];
const FILTERS: Filter[][] = [
  [],
  [{ column: "a", op: "eq", value: 1 }],
  [{ column: "b", op: "prefix", value: "x" }],
  [{ column: "a", op: "gte", value: 2 }],
];

const values = fc.record({
  a: fc.integer({ min: 0, max: 3 }),
  b: fc.constantFrom("x", "xa", "y", "ya"),
});
const table = fc
  .uniqueArray(fc.integer({ min: 1, max: 60 }), { maxLength: 40 })
  .chain((ids) =>
    fc.tuple(fc.constant(ids), fc.array(values, { minLength: ids.length, maxLength: ids.length })),
  )
  .map(([ids, vals]) => ids.map((id, i) => ({ id, ...vals[i]! }) as Row));

type Change =
  | { op: "insert"; id: number; a: number; b: string }
  | { op: "update"; pick: number; a: number; b: string }
  | { op: "delete"; pick: number };
const change: fc.Arbitrary<Change> = fc.oneof(
  values.map((v) => ({ op: "insert" as const, id: 100, ...v })),
  fc.tuple(fc.nat(), values).map(([pick, v]) => ({ op: "update" as const, pick, ...v })),
  fc.nat().map((pick) => ({ op: "delete" as const, pick })),
);

/** Applies changes to the rows, returning the events a source would report. */
function apply(
  rows: Row[],
  changes: Change[],
  firstId = 100,
): { after: Row[]; events: WriteEvent[] } {
  let after = [...rows];
  const events: WriteEvent[] = [];
  let nextId = firstId;
  for (const c of changes) {
    if (c.op === "insert") {
      const row = { id: nextId++, a: c.a, b: c.b };
      after.push(row);
      events.push({ table: "t", op: "insert", new: row });
      continue;
    }
    if (after.length === 0) continue;
    const old = after[c.pick % after.length]!;
    after = after.filter((r) => r !== old);
    if (c.op === "delete") events.push({ table: "t", op: "delete", old });
    else {
      const row = { ...old, a: c.a, b: c.b };
      after.push(row);
      events.push({ table: "t", op: "update", old, new: row });
    }
  }
  return { after, events };
}

function listOf(rows: Row[], filters: Filter[], sort: SortKey[]): Row[] {
  return rows
    .filter((r) => matches(r, filters))
    .sort((x, y) => compareSortValues(sortValues(x, sort), sortValues(y, sort), sort));
}

/** The registration of a cached window, as the data API makes it. */
function dependencyOf(
  window: Row[],
  filters: Filter[],
  sort: SortKey[],
  offset: number,
  limit: number,
): ListDependency {
  const dep: ListDependency = { table: "t", filters, sort, offset, limit, count: window.length };
  if (window.length > 0) dep.last = sortValues(window[window.length - 1]!, sort);
  return dep;
}

describe("patchList (property)", () => {
  it("returns exactly the window of the list after the write, or declines", () => {
    const outcome = { patched: 0, declined: 0, shifted: 0 };
    fc.assert(
      fc.property(
        table,
        fc.constantFrom(...SORTS),
        fc.constantFrom(...FILTERS),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 0, max: 12 }),
        fc.array(change, { minLength: 1, maxLength: 3 }),
        fc.record({
          before: fc.integer({ min: 0, max: 4 }),
          after: fc.integer({ min: 0, max: 4 }),
        }),
        (rows, sort, filters, limit, offset, changes, around) => {
          const list = listOf(rows, filters, sort);
          const window = list.slice(offset, offset + limit);
          const dep = dependencyOf(window, filters, sort, offset, limit);
          const end = offset + window.length;
          // As other cached pages give them: rows ending right before the window (so only
          // if the list reaches that far), and rows from right after a full window.
          const neighbours: Neighbours = {
            before:
              offset <= list.length ? list.slice(Math.max(0, offset - around.before), offset) : [],
          };
          if (around.after > 0 && window.length === limit) {
            neighbours.after = {
              rows: list.slice(end, end + around.after),
              toEnd: end + around.after >= list.length,
            };
          }
          const { after, events } = apply(rows, changes);
          const want = listOf(after, filters, sort).slice(offset, offset + limit);
          for (const n of [undefined, neighbours]) {
            const got = patchList(resource, dep, window, events, keys, n);
            if (!got) {
              outcome.declined++;
              continue;
            }
            outcome.patched++;
            if (n && got.rows[0] !== undefined && got.rows[0] !== window[0]) outcome.shifted++;
            expect(got.rows).toEqual(want);
            expect(got.list.count).toBe(want.length);
            expect(got.list.last).toEqual(
              want.length ? sortValues(want[want.length - 1]!, sort) : undefined,
            );
          }
        },
      ),
      { numRuns: 3000 },
    );
    // The test has teeth only if patches happen, neighbours among them. (Declining is right
    // often here: many windows lie past the list's end, or lose a row with no page after.)
    expect(outcome.patched).toBeGreaterThan((outcome.patched + outcome.declined) / 4);
    expect(outcome.shifted).toBeGreaterThan(100);
  });
});

describe("patchItem", () => {
  const row = { id: 5, a: 1, b: "x" };
  it("answers the new row after an update, a 404 after a delete, the row after an insert", () => {
    const updated = { ...row, a: 2 };
    expect(
      patchItem(resource, "5", row, [{ table: "t", op: "update", old: row, new: updated }], keys),
    ).toEqual({ row: updated });
    expect(patchItem(resource, "5", row, [{ table: "t", op: "delete", old: row }], keys)).toEqual({
      row: undefined,
    });
    expect(
      patchItem(resource, "5", undefined, [{ table: "t", op: "insert", new: row }], keys),
    ).toEqual({ row });
  });

  it("declines a write the cached row already shows, or whose old row it does not show", () => {
    const updated = { ...row, a: 2 };
    const update: WriteEvent = { table: "t", op: "update", old: row, new: updated };
    // Loaded after the write committed, before this node applied it.
    expect(patchItem(resource, "5", updated, [update], keys)).toBeUndefined();
    expect(
      patchItem(resource, "5", updated, [{ table: "t", op: "delete", old: row }], keys),
    ).toBeUndefined();
    expect(
      patchItem(resource, "5", row, [{ table: "t", op: "insert", new: row }], keys),
    ).toBeUndefined();
  });

  it("declines another spelling of the id, and a change without rows", () => {
    expect(
      patchItem(resource, "05", undefined, [{ table: "t", op: "insert", new: row }], keys),
    ).toBeUndefined();
    expect(patchItem(resource, "5", row, [{ table: "t", op: "update" }], keys)).toBeUndefined();
  });
});
