import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Filter, ListQuery, Row } from "../../src/core/data/query.ts";
import { DependencyIndex } from "../../src/core/deps/index.ts";
import {
  type ListDependency,
  type PlanSchema,
  planWrite,
  reachesWindow,
  rowTag,
  setTag,
  tableTag,
  tagValue,
  type WriteEvent,
} from "../../src/core/deps/planner.ts";
import { compareSortValues, matches, sortValues } from "../../src/core/deps/predicate.ts";

const schema: PlanSchema = {
  primaryKey: (t) => (t === "items" || t === "children" ? "id" : undefined),
  joinColumns: (t) => (t === "children" ? ["parentId"] : []),
};

function runList(rows: Row[], q: ListQuery): Row[] {
  return rows
    .filter((r) => matches(r, q.filters))
    .sort((x, y) => compareSortValues(sortValues(x, q.sort), sortValues(y, q.sort), q.sort))
    .slice(q.offset, q.offset + q.limit);
}

function register(index: DependencyIndex, key: string, q: ListQuery, result: Row[]) {
  const last = result[result.length - 1];
  const list: ListDependency = { table: "items", ...q, count: result.length };
  if (last) list.last = sortValues(last, q.sort);
  const tags = [tableTag("items"), ...result.map((r) => rowTag("items", r.id))];
  index.add(key, tags, [list], Number.POSITIVE_INFINITY);
}

const value = fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 4 }));
const text = fc.oneof(fc.constant(null), fc.constantFrom("a", "ab", "b", "ba", "😀", "\uFFFD"));
const rowArb = (id: number) => fc.record({ id: fc.constant(id), n: value, s: text });
const filterArb: fc.Arbitrary<Filter> = fc.oneof(
  fc.record({
    column: fc.constant("n"),
    op: fc.constantFrom("eq", "gt", "gte", "lt", "lte"),
    value: fc.integer({ min: 0, max: 4 }),
  }),
  fc.record({
    column: fc.constant("s"),
    op: fc.constantFrom("eq", "prefix", "gt", "lte"),
    value: fc.constantFrom("a", "b", "😀"),
  }),
) as fc.Arbitrary<Filter>;
const queryArb: fc.Arbitrary<ListQuery> = fc.record({
  filters: fc.array(filterArb, { maxLength: 2 }),
  sort: fc
    .subarray([
      { column: "n", desc: false },
      { column: "s", desc: true },
    ])
    .map((s) => [...s, { column: "id", desc: false }]),
  limit: fc.integer({ min: 1, max: 4 }),
  offset: fc.integer({ min: 0, max: 3 }),
});
type Op =
  | { op: "insert"; row: { n: unknown; s: unknown } }
  | { op: "update"; pick: number; row: { n: unknown; s: unknown } }
  | { op: "delete"; pick: number };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant("insert" as const), row: fc.record({ n: value, s: text }) }),
  fc.record({
    op: fc.constant("update" as const),
    pick: fc.nat(),
    row: fc.record({ n: value, s: text }),
  }),
  fc.record({ op: fc.constant("delete" as const), pick: fc.nat() }),
);

describe("invalidation planner", () => {
  it("never leaves a list cached that a write changed, and keeps most that it did not", () => {
    let kept = 0;
    let unchanged = 0;
    fc.assert(
      fc.property(
        fc
          .array(fc.nat({ max: 0 }), { minLength: 0, maxLength: 12 })
          .chain((xs) => fc.tuple(...xs.map((_, i) => rowArb(i + 1)))),
        fc.array(queryArb, { minLength: 1, maxLength: 8 }),
        fc.array(opArb, { minLength: 1, maxLength: 10 }),
        (initial, queries, ops) => {
          let rows: Row[] = initial.map((r) => ({ ...r }));
          let nextId = 100;
          const index = new DependencyIndex();
          const cached = new Map<string, { q: ListQuery; result: Row[] }>();
          queries.forEach((q, i) => {
            const result = runList(rows, q);
            cached.set(`k${i}`, { q, result });
            register(index, `k${i}`, q, result);
          });
          for (const op of ops) {
            let event: WriteEvent;
            if (op.op === "insert") {
              const row = { id: nextId++, ...op.row };
              rows = [...rows, row];
              event = { table: "items", op: "insert", new: row };
            } else {
              if (rows.length === 0) continue;
              const old = rows[op.pick % rows.length]!;
              if (op.op === "update") {
                const row = { ...old, ...op.row };
                rows = rows.map((r) => (r === old ? row : r));
                event = { table: "items", op: "update", old, new: row };
              } else {
                rows = rows.filter((r) => r !== old);
                event = { table: "items", op: "delete", old };
              }
            }
            const plan = planWrite(event, schema, index);
            // Each chosen key is counted under exactly one rule.
            const counted = Object.values(plan.rules).reduce((a, b) => a + b, 0);
            expect(counted).toBe(plan.keys.size);
            for (const [key, { q, result }] of cached) {
              const now = runList(rows, q);
              const same = JSON.stringify(now) === JSON.stringify(result);
              if (!plan.keys.has(key)) {
                // The property: a list the planner keeps must still be exactly right.
                expect(now).toEqual(result);
              }
              if (same) {
                unchanged++;
                if (!plan.keys.has(key)) kept++;
              }
              if (plan.keys.has(key)) {
                index.remove(key);
                cached.set(key, { q, result: now });
                register(index, key, q, now);
              }
            }
          }
        },
      ),
      { numRuns: 1500 },
    );
    // Precision: most lists a write cannot change stay cached.
    expect(kept / unchanged).toBeGreaterThan(0.6);
  });

  it("a write to a joined table invalidates the views holding its parent, not plain lists", () => {
    const index = new DependencyIndex();
    index.add("view", [rowTag("items", 1), setTag("children", "parentId", 1)], [], Infinity);
    index.add("plain", [rowTag("items", 1)], [], Infinity);
    const plan = planWrite(
      { table: "children", op: "insert", new: { id: 9, parentId: 1 } },
      schema,
      index,
    );
    expect([...plan.keys]).toEqual(["view"]);
    const moved = planWrite(
      { table: "children", op: "update", old: { id: 9, parentId: 2 }, new: { id: 9, parentId: 1 } },
      schema,
      index,
    );
    expect([...moved.keys]).toEqual(["view"]);
  });

  it("falls back to the table when the write cannot be analysed", () => {
    const index = new DependencyIndex();
    index.add("a", [tableTag("unknown")], [], Infinity);
    const plan = planWrite({ table: "unknown", op: "update", new: { x: 1 } }, schema, index);
    expect(plan).toEqual({
      keys: new Set(["a"]),
      fallback: true,
      rules: { row: 0, predicate: 0, window: 0, table: 1 },
    });
  });

  it("says which rule chose each key: row, predicate (a list not full), window (a full one)", () => {
    const index = new DependencyIndex();
    const rows = [1, 2, 3, 4].map((id) => ({ id, n: id }));
    const byN = (limit: number): ListQuery => ({
      filters: [{ column: "n", op: "gte", value: 0 }],
      sort: [{ column: "id", desc: false }],
      offset: 0,
      limit,
    });
    register(index, "page of 2", byN(2), runList(rows, byN(2))); // full: rows 1 and 2
    register(index, "page of 10", byN(10), runList(rows, byN(10))); // not full
    index.add("item 1", [rowTag("items", 1)], [], Infinity);
    // Row 1 changes: entries holding it are chosen by its row tag (both lists hold it).
    const update = planWrite(
      { table: "items", op: "update", old: rows[0], new: { id: 1, n: 9 } },
      schema,
      index,
    );
    expect(update.rules).toEqual({ row: 3, predicate: 0, window: 0, table: 0 });
    // A new row 0 sorts into the full page and matches the open one.
    const insert = planWrite({ table: "items", op: "insert", new: { id: 0, n: 0 } }, schema, index);
    expect(insert.keys).toEqual(new Set(["page of 2", "page of 10"]));
    expect(insert.rules).toEqual({ row: 0, predicate: 1, window: 1, table: 0 });
    // A new row 5 sorts after the full page's window: only the open list takes it.
    const after = planWrite({ table: "items", op: "insert", new: { id: 5, n: 5 } }, schema, index);
    expect(after.rules).toEqual({ row: 0, predicate: 1, window: 0, table: 0 });
  });

  it("table policy drops every entry of the table; none drops nothing", () => {
    const index = new DependencyIndex();
    index.add("a", [tableTag("items"), rowTag("items", 1)], [], Infinity);
    index.add("b", [tableTag("items"), rowTag("items", 2)], [], Infinity);
    const event: WriteEvent = { table: "items", op: "update", old: { id: 1 }, new: { id: 1 } };
    expect(planWrite(event, schema, index, "table").keys.size).toBe(2);
    expect(planWrite(event, schema, index, "exact").keys).toEqual(new Set(["a"]));
    expect(planWrite(event, schema, index, "none").keys.size).toBe(0);
  });
});

/** A list of items by id: `filters`, the first window, one row unless `window` says. */
function itemsByid(filters: Filter[], window: Partial<ListDependency>): ListDependency {
  const sort = [{ column: "id", desc: false }];
  return { table: "items", filters, sort, offset: 0, limit: Infinity, count: 1, ...window };
}

describe("the dependency index's lists by filter value", () => {
  const mixed = fc.oneof(
    fc.constant(null),
    fc.integer({ min: -1, max: 2 }),
    fc.constantFrom(0.5, -0, Number.NaN, true, false, "1", "a", "😀", ""),
  );
  it("finds every list a write's rows can reach, as a scan of the table's lists does", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            filters: fc.array(
              fc.record({
                column: fc.constantFrom("n", "s"),
                op: fc.constantFrom("eq", "gt", "gte", "lt", "lte", "prefix", "null", "notNull"),
                value: mixed,
              }),
              { maxLength: 3 },
            ),
            sort: fc.array(
              fc.record({
                column: fc.constantFrom("n", "s"),
                desc: fc.boolean(),
                nulls: fc.constantFrom(undefined, "first", "last"),
              }),
              { maxLength: 2 },
            ),
            count: fc.integer({ min: 0, max: 3 }),
            last: fc.option(fc.tuple(mixed, mixed), { nil: undefined }),
          }),
          { maxLength: 12 },
        ),
        fc.array(fc.record({ n: mixed, s: mixed }), { minLength: 1, maxLength: 2 }),
        (lists, images) => {
          const index = new DependencyIndex();
          lists.forEach((l, i) => {
            const sort = l.sort.filter(
              (key, at) => l.sort.findIndex((other) => other.column === key.column) === at,
            );
            const list: ListDependency = {
              table: "items",
              filters: l.filters.map(({ column, op, value }) =>
                op === "null" || op === "notNull" ? { column, op } : { column, op, value },
              ) as Filter[],
              sort: [
                ...sort.map(({ nulls, ...key }) => (nulls ? { ...key, nulls } : key)),
                { column: "id", desc: false },
              ] as ListQuery["sort"],
              offset: 0,
              limit: 3,
              count: l.count,
            };
            if (l.last) list.last = [...l.last.slice(0, sort.length), i];
            index.add(`k${i}`, [], [list], Number.POSITIVE_INFINITY);
          });
          const rows = images.map((r, i) => ({ id: i, ...r }));
          const found = new Set([...index.listsFor("items", rows)].map(([k]) => k));
          expect(found.size).toBe([...index.listsFor("items", rows)].length); // each once
          for (const [key, list] of index.listsOn("items")) {
            if (rows.some((row) => reachesWindow(row, list))) expect(found).toContain(key);
          }
          // Registered anew and removed, a key leaves no trace behind.
          for (const [key] of [...index.listsOn("items")]) index.remove(key);
          expect([...index.listsFor("items", rows)]).toEqual([]);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("one list object registered under two keys is found for both, by a write of two rows", () => {
    const index = new DependencyIndex();
    const adults = itemsByid([{ column: "age", op: "gte", value: 18 }], { count: 3 });
    index.add("a", [], [adults], Number.POSITIVE_INFINITY);
    index.add("b", [], [adults], Number.POSITIVE_INFINITY);
    const event: WriteEvent = {
      table: "items",
      op: "update",
      old: { id: 1, age: 20 },
      new: { id: 1, age: 21 },
    };
    expect([...planWrite(event, schema, index).keys].sort()).toEqual(["a", "b"]);
  });

  it("a list with a long prefix is found by the rows that start with it, and only planned for those", () => {
    const index = new DependencyIndex();
    const long = "x".repeat(1000);
    const list = itemsByid([{ column: "name", op: "prefix", value: long }], { limit: 20 });
    index.add("long", [], [list], Number.POSITIVE_INFINITY);
    const insert = (name: string): WriteEvent => ({
      table: "items",
      op: "insert",
      new: { id: 7, name },
    });
    expect(planWrite(insert(`${long}!`), schema, index).keys).toEqual(new Set(["long"]));
    // The same first thousand units but one: found by its filed part, refused by the filter.
    expect(planWrite(insert(`${"x".repeat(999)}y`), schema, index).keys.size).toBe(0);
  });

  it("a write visits the windows it reaches, not every list without an equality filter", () => {
    const index = new DependencyIndex();
    // Five-row windows from each id on (id >= i), full, and prefix lists of names.
    for (let i = 0; i < 1000; i++) {
      const list = itemsByid([{ column: "id", op: "gte", value: i }], {
        limit: 5,
        count: 5,
        last: [i + 4],
      });
      index.add(`from-${i}`, [], [list], Number.POSITIVE_INFINITY);
      const named = itemsByid([{ column: "name", op: "prefix", value: `n${i}` }], { limit: 20 });
      index.add(`named-${i}`, [], [named], Number.POSITIVE_INFINITY);
    }
    const visited = [...index.listsFor("items", [{ id: 500, name: "n50" }])].map(([k]) => k);
    expect(visited.sort()).toEqual(
      ["from-496", "from-497", "from-498", "from-499", "from-500", "named-5", "named-50"].sort(),
    );
  });
});

describe("a table without a single-column key (a link table)", () => {
  const keyless: PlanSchema = { ...schema, keyless: (t) => t === "follows" };
  const index = new DependencyIndex();
  const byFollower = (id: number): ListDependency => ({
    table: "follows",
    filters: [{ column: "followerId", op: "eq", value: id }],
    sort: [{ column: "followingId", desc: false }],
    offset: 0,
    limit: Number.POSITIVE_INFINITY,
    count: 1,
  });
  index.add("of-1", [tableTag("follows")], [byFollower(1)], Number.POSITIVE_INFINITY);
  index.add("of-2", [tableTag("follows")], [byFollower(2)], Number.POSITIVE_INFINITY);
  // Registered by its table alone (no list on it): only the table can tell.
  index.add("tagged", [tableTag("follows")], [], Number.POSITIVE_INFINITY);
  const follow: WriteEvent = {
    table: "follows",
    op: "insert",
    new: { followerId: 2, followingId: 3 },
  };

  it("is planned by the lists its row matches, and the entries that listed nothing on it", () => {
    const plan = planWrite(follow, keyless, index);
    expect([...plan.keys].sort()).toEqual(["of-2", "tagged"]);
    expect(plan.fallback).toBe(false);
    expect(plan.rules).toMatchObject({ predicate: 1, table: 1 });
  });

  it("falls back to the table when the schema does not say it is keyless", () => {
    const plan = planWrite(follow, schema, index);
    expect([...plan.keys].sort()).toEqual(["of-1", "of-2", "tagged"]);
    expect(plan.fallback).toBe(true);
  });
});

describe("tagValue", () => {
  // What a tag names: a finite number's canonical text for text that reads as one, else the text.
  const reference = (value: unknown): string => {
    if (typeof value === "string" && value.trim() !== "") {
      const n = Number(value);
      if (Number.isFinite(n)) return String(n);
    }
    return String(value);
  };

  it("writes text that reads as a number as that number, and other values as their text", () => {
    const spelled = fc.constantFrom(
      "",
      " ",
      "5",
      "05",
      " 7 ",
      "-3",
      "+4",
      ".5",
      "1e3",
      "e3",
      "E3",
      "0x1F",
      "Infinity",
      "-Infinity",
      "NaN",
      "o-012345",
      "Z9",
      "\u00a05",
      "\ufeff6",
      "9a",
    );
    const value = fc.oneof(
      spelled,
      fc.string(),
      fc.string({ unit: "binary" }),
      fc.integer(),
      fc.double(),
    );
    fc.assert(
      fc.property(value, (v) => {
        expect(tagValue(v)).toBe(reference(v));
      }),
    );
  });
});
