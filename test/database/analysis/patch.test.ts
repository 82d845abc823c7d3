import { describe, expect, it } from "vitest";
import type { WriteEvent } from "../../../src/core/deps/planner.ts";
import { patchResult, resultPlan, tableRows } from "../../../src/database/analysis/patch.ts";
import { registrationOf, type SqlTable, sqlShape } from "../../../src/database/analysis/shapes.ts";

// Which query results are patched in place, and when a patch declines (the entry is then
// removed, as without patches). The end-to-end checks against real databases are in
// test/drizzle/ and test/sql/.

const items: SqlTable = { primaryKey: "id", columns: { id: "number", x: "number", b: "text" } };
const shapeOf = (sql: string, params: unknown[]) =>
  sqlShape(sql, params, "sqlite", (t) => (t === "items" ? items : undefined));

describe("resultPlan", () => {
  it("a primary-key lookup alone is patched as a lookup", () => {
    const plan = resultPlan(shapeOf("select id, x, b from items where id = ?", [1]), items);
    expect(plan?.lookup).toBe(1);
  });

  it("a lookup with another condition is not patched (the condition would be lost)", () => {
    const shape = shapeOf("select id, x, b from items where id = ? and b = ?", [1, "a"]);
    expect(shape.lists?.rowIds).toEqual([1]);
    expect(resultPlan(shape, items)).toBeUndefined();
  });

  it("a page ordered to the primary key, of every column, is patched; select * and a subset are not", () => {
    expect(
      resultPlan(shapeOf("select id, x, b from items order by x, id limit 5", []), items),
    ).toBeDefined();
    expect(
      resultPlan(shapeOf("select * from items order by x, id limit 5", []), items),
    ).toBeUndefined();
    expect(
      resultPlan(shapeOf("select id, x from items order by x, id limit 5", []), items),
    ).toBeUndefined();
    expect(
      resultPlan(shapeOf("select id, x, b from items order by x limit 5", []), items),
    ).toBeUndefined();
  });
});

describe("patchResult", () => {
  const sql = "select id, x, b from items order by id limit 5";
  const shape = shapeOf(sql, []);
  const plan = resultPlan(shape, items)!;
  const rows = [
    { id: 1, x: 1, b: "a" },
    { id: 2, x: 2, b: "b" },
  ];
  const { lists, tags } = registrationOf(shape, rows);
  const patch = (events: WriteEvent[]) =>
    patchResult(plan, { list: lists[0], tags }, rows, events, true);

  it("an update of a row the page holds: the new row in place, tags kept", () => {
    const out = patch([
      { table: "items", op: "update", old: rows[0]!, new: { ...rows[0]!, b: "z" } },
    ]);
    expect(out?.rows).toEqual([{ id: 1, x: 1, b: "z" }, rows[1]]);
    expect(out?.tags).toEqual(expect.arrayContaining(["items#1", "items#2"]));
  });

  it("a fraction is patched where capture records REALs exactly", () => {
    const exact = patchResult(
      plan,
      { list: lists[0], tags },
      rows,
      [{ table: "items", op: "update", old: rows[0]!, new: { ...rows[0]!, x: 0.1 + 0.2 } }],
      true,
      undefined,
      true,
    );
    expect(exact?.rows[0]).toEqual({ id: 1, x: 0.30000000000000004, b: "a" });
  });

  it("a REAL written with a fraction is not patched by older triggers: their JSON may round it", () => {
    expect(
      patch([{ table: "items", op: "update", old: rows[0]!, new: { ...rows[0]!, x: 0.1 + 0.2 } }]),
    ).toBeUndefined();
    expect(
      patch([{ table: "items", op: "insert", new: { id: 3, x: 1 / 3, b: "c" } }]),
    ).toBeUndefined();
  });

  it("a result whose driver returns integers otherwise (libSQL intMode bigint or string) is not patched", () => {
    const event: WriteEvent = { table: "items", op: "insert", new: { id: 3, x: 3, b: "c" } };
    const patchRows = (raw: object[]) =>
      patchResult(plan, { list: lists[0], tags }, raw, [event], true);
    expect(patchRows(rows)).toBeDefined();
    expect(patchRows(rows.map((r) => ({ ...r, id: BigInt(r.id) })))).toBeUndefined();
    expect(
      patchRows(rows.map((r) => ({ ...r, id: String(r.id), x: String(r.x) }))),
    ).toBeUndefined();
    // No number shown at all: the driver's form of an integer is not known.
    const nulls = { ...plan, kinds: plan.kinds.map((k, i) => (i === 0 ? "text" : k)) } as const;
    const blank = rows.map((r) => ({ ...r, id: String(r.id), x: null }));
    expect(patchResult(nulls, { list: lists[0], tags }, blank, [event], true)).toBeUndefined();
  });

  it("a captured row without one of the result's columns (the table changed) is not patched", () => {
    expect(patch([{ table: "items", op: "insert", new: { id: 3, x: 3 } }])).toBeUndefined();
  });
});

describe("tableRows (another cached page of the list, read to patch one beside it)", () => {
  // Prisma's D1 adapter: `at` is DATETIME, its numbers given as text where it holds text.
  const events: SqlTable = {
    primaryKey: "id",
    columns: { id: "number", at: "ordered" },
    numberTexts: { at: "decimal" },
  };
  const plan = resultPlan(
    sqlShape("select id, at from events order by at desc, id limit 2", [], "sqlite", (t) =>
      t === "events" ? events : undefined,
    ),
    events,
  )!;

  it("reads a page whose values are as stored; not one showing a number given as text", () => {
    expect(plan.numberTexts).toEqual({ at: "decimal" });
    expect(
      tableRows(plan, [
        [2, "b"],
        [1, 5],
      ]),
    ).toEqual([
      { id: 2, at: "b" },
      { id: 1, at: 5 },
    ]);
    // "5" may be the number 5, which SQLite orders before all text.
    expect(
      tableRows(plan, [
        [2, "b"],
        [1, "5"],
      ]),
    ).toBeUndefined();
  });
});
