import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Filter, Resource, Row, SortKey } from "../../src/core/data/query.ts";
import {
  marginOf,
  type Neighbours,
  patchItem,
  patchList,
  reaching,
  windowOf,
} from "../../src/core/deps/patch.ts";
import {
  type ListDependency,
  reachesWindow,
  type WriteEvent,
} from "../../src/core/deps/planner.ts";
import { compareSortValues, matches, sortValues } from "../../src/core/deps/predicate.ts";

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
  | { op: "delete"; pick: number }
  | { op: "touch"; pick: number; keep: "a" | "b" | "both"; a: number; b: string; edge: boolean };
const change: fc.Arbitrary<Change> = fc.oneof(
  values.map((v) => ({ op: "insert" as const, id: 100, ...v })),
  fc.tuple(fc.nat(), values).map(([pick, v]) => ({ op: "update" as const, pick, ...v })),
  fc
    .tuple(
      fc.nat(),
      values,
      fc.constantFrom("a" as const, "b" as const, "both" as const),
      fc.boolean(),
    )
    .map(([pick, v, keep, edge]) => ({ op: "touch" as const, pick, keep, edge, ...v })),
  fc.nat().map((pick) => ({ op: "delete" as const, pick })),
);

/** Ids at the edges of the window under test, for touches aimed there. */
const EDGE: { ids: unknown[] } = { ids: [] };

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
    let old = after[c.pick % after.length]!;
    if (c.op === "touch" && c.edge && EDGE.ids.length > 0) {
      const id = EDGE.ids[c.pick % EDGE.ids.length];
      old = after.find((r) => r.id === id) ?? old;
    }
    if (c.op === "touch") {
      after = after.filter((r) => r !== old);
      const row = {
        ...old,
        a: c.keep === "a" || c.keep === "both" ? old.a : c.a,
        b: c.keep === "b" || c.keep === "both" ? old.b : c.b,
      };
      after.push(row);
      events.push({ table: "t", op: "update", old, new: row });
      continue;
    }
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

/** The rows after each subset of `events` (in order, by primary key) on top of `rows`. */
function inFlight(rows: Row[], events: readonly WriteEvent[]): Row[][] {
  const out: Row[][] = [];
  for (let mask = 0; mask < 2 ** events.length; mask++) {
    const byId = new Map(rows.map((r) => [r.id, r]));
    events.forEach((e, j) => {
      if (!(mask & (2 ** j))) return;
      if (e.old) byId.delete(e.old.id);
      if (e.new) byId.set(e.new.id, e.new);
    });
    out.push([...byId.values()]);
  }
  return out;
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
          EDGE.ids = [
            window[0]?.id,
            window[window.length - 1]?.id,
            neighbours.before[0]?.id,
            neighbours.after?.rows.at(-1)?.id,
          ].filter((x) => x !== undefined);
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
      { numRuns: 5000 },
    );
    // The test has teeth only if patches happen, neighbours among them. (Declining is right
    // often here: many windows lie past the list's end, or lose a row with no page after.)
    expect(outcome.patched).toBeGreaterThan((outcome.patched + outcome.declined) / 4);
    expect(outcome.shifted).toBeGreaterThan(100);
  });
});

describe("a page's margin, patched write after write (property)", () => {
  // A page keeps MARGIN rows each side of its window, loaded with it (windowOf) and patched
  // with it; a write reaches it only as the planner plans (the rows it holds, and its
  // registration, which `reaching` extends over the margin after it). After each write the
  // window must be the list's, and the margin the rows around it in the list.
  const MARGIN = 2;
  it("keeps the window and the rows around it equal to the list's, or declines", () => {
    const outcome = { patched: 0, declined: 0, slid: 0 };
    fc.assert(
      fc.property(
        table,
        fc.constantFrom(...SORTS),
        fc.constantFrom(...FILTERS),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 10 }),
        fc.array(fc.array(change, { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 6 }),
        (rows, sort, filters, limit, offset, writes) => {
          let db = rows;
          const load = () => {
            const from = Math.max(0, offset - MARGIN);
            const asked = offset - from + limit + MARGIN;
            const held = listOf(db, filters, sort).slice(from, from + asked);
            const page = windowOf(held, offset - from, limit, held.length < asked);
            const margin = marginOf(page.around, MARGIN);
            const dep = dependencyOf(page.rows, filters, sort, offset, limit);
            return { window: page.rows, margin, dep: reaching(dep, margin) };
          };
          let page = load();
          for (const [step, changes] of writes.entries()) {
            EDGE.ids = [...page.margin.before, ...(page.margin.after?.rows ?? [])].map((r) => r.id);
            const { after, events } = apply(db, changes, 100 + step * 10);
            db = after;
            const list = listOf(db, filters, sort);
            const want = list.slice(offset, offset + limit);
            const held = new Set(
              [...page.margin.before, ...page.window, ...(page.margin.after?.rows ?? [])].map(
                (r) => r.id,
              ),
            );
            const planned = events.some((e) =>
              [e.old, e.new].some((r) => r && (held.has(r.id) || reachesWindow(r, page.dep))),
            );
            if (planned) {
              const got = patchList(resource, page.dep, page.window, events, keys, page.margin);
              if (!got) {
                outcome.declined++;
                page = load();
                continue;
              }
              outcome.patched++;
              if (got.rows[0] !== undefined && got.rows[0] !== page.window[0]) outcome.slid++;
              const margin = marginOf(got.around!, MARGIN);
              page = { window: got.rows, margin, dep: reaching(got.list, margin) };
            }
            expect(page.window).toEqual(want);
            const { before, after: next } = page.margin;
            expect(before).toEqual(list.slice(offset - before.length, offset));
            if (before.length > 0) expect(offset).toBeLessThanOrEqual(list.length);
            if (next) {
              expect(page.window.length).toBe(limit);
              const end = offset + limit;
              expect(next.rows).toEqual(list.slice(end, end + next.rows.length));
              if (next.toEnd) expect(end + next.rows.length).toBe(list.length);
            }
          }
        },
      ),
      { numRuns: 3000 },
    );
    expect(outcome.patched).toBeGreaterThan((outcome.patched + outcome.declined) / 3);
    expect(outcome.slid).toBeGreaterThan(100);
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

describe("patchList on a shared log, where a response may already show records not applied here (property)", () => {
  // Several nodes: a page may be loaded after writes committed and before this node
  // applied them, and each page of a list at another moment. The node applies the records
  // in order to every cached page, each patched with its neighbours as they are before the
  // record (as the data API does). A page either declines (it is invalidated) or, from the
  // last write it was loaded after on, is the true window of the list.
  it("a page is exact once it has seen its own writes, and shows a moment no older than the records applied before", () => {
    let exactChecks = 0;
    let aheadChecks = 0;
    fc.assert(
      fc.property(
        table,
        fc.constantFrom(...SORTS),
        fc.constantFrom(...FILTERS),
        fc.integer({ min: 1, max: 4 }),
        fc.array(change, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { minLength: 3, maxLength: 3 }),
        (rows, sort, filters, limit, changes, loadedAt) => {
          EDGE.ids = [0, 1, 2].flatMap((p) => {
            const w = listOf(rows, filters, sort).slice(p * limit, p * limit + limit);
            return [w[0]?.id, w.at(-1)?.id].filter((x) => x !== undefined);
          });
          const states: Row[][] = [rows];
          const events: WriteEvent[] = [];
          for (const [n, c] of changes.entries()) {
            const step = apply(states[states.length - 1]!, [c], 100 + n);
            if (step.events.length === 0) continue;
            states.push(step.after);
            events.push(...step.events);
          }
          const windowAt = (k: number, offset: number) =>
            listOf(states[k]!, filters, sort).slice(offset, offset + limit);
          // Three adjacent pages, each loaded at its own state.
          type Page = { rows: Row[]; dep: ListDependency; loaded: number };
          let pages: (Page | undefined)[] = [0, 1, 2].map((p) => {
            const loaded = loadedAt[p]! % states.length;
            const offset = p * limit;
            const window = windowAt(loaded, offset);
            return {
              rows: window,
              dep: dependencyOf(window, filters, sort, offset, limit),
              loaded,
            };
          });
          for (const [i, event] of events.entries()) {
            pages = pages.map((page, p) => {
              if (!page) return undefined;
              const before = pages[p - 1];
              const after = pages[p + 1];
              const neighbours: Neighbours = {
                before: before && before.dep.count === limit ? before.rows : [],
              };
              if (after && page.dep.count === limit) {
                neighbours.after = { rows: after.rows, toEnd: after.dep.count < limit };
              }
              const got = patchList(
                resource,
                page.dep,
                page.rows,
                [event],
                keys,
                neighbours,
                false,
              );
              return got && { rows: got.rows, dep: got.list, loaded: page.loaded };
            });
            for (const [p, page] of pages.entries()) {
              if (!page) continue;
              if (i + 1 < page.loaded) {
                // Ahead of the records applied here: the page may show any of the writes
                // not applied here yet (committed, so not yet acknowledged), each row as
                // one of them left it, but nothing older than the records applied here.
                const worlds = inFlight(states[i + 1]!, events.slice(i + 1, page.loaded));
                const windows = worlds.map((w) =>
                  listOf(w, filters, sort).slice(p * limit, p * limit + limit),
                );
                expect(windows).toContainEqual(page.rows);
                aheadChecks++;
                continue;
              }
              expect(page.rows).toEqual(windowAt(i + 1, p * limit));
              exactChecks++;
            }
          }
        },
      ),
      { numRuns: 5000 },
    );
    expect(exactChecks).toBeGreaterThan(1000);
    expect(aheadChecks).toBeGreaterThan(100);
  });
});
