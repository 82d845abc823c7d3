import { describe, expect, it } from "vitest";
import { type ListSpec, type Row, StaleOracle } from "../../bench/workload/oracle.ts";

/**
 * The workload benchmark's stale-read oracle, fed hand-made responses: each kind of stale
 * read must be counted, and nothing a correct server may answer may be.
 */

const users = ["1-a", "2-b", "3-c", "4-d"];
const orders = ["o-1", "o-2"];
const user = (id: string, version: number, extra: Row = {}): Row => ({
  id,
  firstName: "Lane",
  lastName: "Smith",
  version,
  ...extra,
});
const byFirstName: ListSpec = {
  kind: "list",
  table: "users",
  filter: { column: "firstName", op: "eq", value: "Lane" },
  sort: [{ column: "id", desc: false }],
  limit: 3,
  offset: 0,
};

/** An oracle where `id` was updated to version 2 (sent at 10, acknowledged at 20). */
function afterUpdate(id = "2-b", values: Row = {}) {
  const oracle = new StaleOracle({ users, orders });
  const token = oracle.issued("users", id, 10);
  oracle.acked(token, 20, user(id, 2, values));
  return oracle;
}

describe("stale-read oracle", () => {
  it("counts an item that shows the row as it was before an acknowledged update", () => {
    const oracle = afterUpdate();
    const item = { kind: "item" as const, table: "users" as const, id: "2-b" };
    expect(oracle.judge(item, 30, 31, 200, user("2-b", 1))).toEqual([
      { reason: "old-version", table: "users", id: "2-b" },
    ]);
    expect(oracle.judge(item, 30, 31, 200, user("2-b", 2))).toEqual([]);
  });

  it("does not judge a read that began before the write was acknowledged", () => {
    const oracle = afterUpdate();
    const item = { kind: "item" as const, table: "users" as const, id: "2-b" };
    expect(oracle.judge(item, 15, 31, 200, user("2-b", 1))).toEqual([]);
    expect(oracle.judge(item, 5, 12, 200, user("2-b", 1))).toEqual([]);
  });

  it("counts a deleted row that is still shown, and a 404 for a row that exists", () => {
    const oracle = new StaleOracle({ users, orders });
    oracle.acked(oracle.issued("users", "3-c", 10), 20, undefined);
    const item = { kind: "item" as const, table: "users" as const, id: "3-c" };
    expect(oracle.judge(item, 30, 31, 200, user("3-c", 1))).toEqual([
      { reason: "deleted-row", table: "users", id: "3-c" },
    ]);
    expect(oracle.judge(item, 30, 31, 404, undefined)).toEqual([]);
    const other = { kind: "item" as const, table: "users" as const, id: "1-a" };
    expect(oracle.judge(other, 30, 31, 404, undefined)).toEqual([
      { reason: "missing-item", table: "users", id: "1-a" },
    ]);
  });

  it("counts a list that misses an inserted row its filter and window include", () => {
    const oracle = new StaleOracle({ users, orders });
    oracle.acked(oracle.issued("users", "15-new", 10), 20, user("15-new", 1));
    const rows = [user("1-a", 1), user("2-b", 1)];
    // 15-new sorts between 1-a and 2-b: a fresh answer holds it.
    expect(oracle.judge(byFirstName, 30, 31, 200, { data: rows })).toEqual([
      { reason: "missing-row", table: "users", id: "15-new" },
    ]);
    const fresh = [user("1-a", 1), user("15-new", 1), user("2-b", 1)];
    expect(oracle.judge(byFirstName, 30, 31, 200, { data: fresh })).toEqual([]);
  });

  it("does not count a row that falls outside a full window, or that the filter excludes", () => {
    const oracle = new StaleOracle({ users, orders });
    oracle.acked(oracle.issued("users", "9-z", 10), 20, user("9-z", 1));
    oracle.acked(oracle.issued("users", "0-x", 10), 20, user("0-x", 1, { firstName: "Mary" }));
    const full = [user("1-a", 1), user("2-b", 1), user("3-c", 1)];
    expect(oracle.judge(byFirstName, 30, 31, 200, { data: full })).toEqual([]);
  });

  it("counts a row an update moved into a filter but the list leaves out, and one it moved out", () => {
    const movedIn = afterUpdate("4-d", { firstName: "Lane" });
    const without = { data: [user("1-a", 1), user("2-b", 1)] };
    expect(movedIn.judge(byFirstName, 30, 31, 200, without)).toEqual([
      { reason: "missing-row", table: "users", id: "4-d" },
    ]);
    const movedOut = afterUpdate("2-b", { firstName: "Mary" });
    const stillThere = { data: [user("1-a", 1), user("2-b", 1)] };
    expect(movedOut.judge(byFirstName, 30, 31, 200, stillThere)).toEqual([
      { reason: "old-version", table: "users", id: "2-b" },
    ]);
  });

  it("counts a user in the join view whose orders miss one inserted for them", () => {
    const oracle = new StaleOracle({ users, orders });
    const order = { id: "o-9", userId: "1-a", status: "paid", version: 1 };
    oracle.acked(oracle.issued("orders", "o-9", 10), 20, order);
    const view = { kind: "item" as const, table: "users" as const, view: true, id: "1-a" };
    expect(oracle.judge(view, 30, 31, 200, { ...user("1-a", 1), orders: [] })).toEqual([
      { reason: "missing-row", table: "orders", id: "o-9" },
    ]);
    expect(oracle.judge(view, 30, 31, 200, { ...user("1-a", 1), orders: [order] })).toEqual([]);
  });

  it("never judges a row whose write failed without an answer", () => {
    const oracle = new StaleOracle({ users, orders });
    oracle.failed(oracle.issued("users", "2-b", 10), 20);
    const item = { kind: "item" as const, table: "users" as const, id: "2-b" };
    expect(oracle.judge(item, 30, 31, 200, user("2-b", 1))).toEqual([]);
    expect(oracle.judge(item, 30, 31, 404, undefined)).toEqual([]);
  });

  it("hands out the next version of a row", () => {
    const oracle = afterUpdate();
    expect(oracle.nextVersion("users", "2-b")).toBe(3);
    expect(oracle.nextVersion("users", "1-a")).toBe(2);
  });
});
