import Database from "better-sqlite3";
import fc from "fast-check";
import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Filter, ListQuery, Row } from "../../src/core/data/query.ts";
import { resolveResource } from "../../src/core/data/query.ts";
import { demoRows, demoSize, demoViews, seedDemo } from "../../src/demo/seed.ts";
import type { Source } from "../../src/sources/source.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { CASCADE_SQL, CASCADE_T1_EVENTS } from "../../src/testing/index.ts";
import { startWorker } from "../helpers/workerd.ts";
import { callD1Source } from "./d1-call.ts";

/**
 * The D1 source inside workerd over miniflare's local D1, against the better-sqlite3
 * source on the same demo rows: both speak SQLite's dialect, so every read and write must
 * give the same answer, down to the rows foreign key actions change on a delete (which
 * D1 reads in the delete's batch, one transaction, since it has no interactive ones).
 */

const SIZE = demoSize({ users: 60, orders: 200, seed: 11 });

let mf: Miniflare;
let local: Source;
let localDb: Database.Database;

beforeAll(async () => {
  mf = await startWorker(new URL("./d1-entry.ts", import.meta.url), {
    d1Databases: ["DB"],
  });
  const rows = demoRows(SIZE);
  await d1("seed", rows.users, rows.orders);
  const db = new Database(":memory:");
  seedDemo(db, SIZE);
  // Foreign key actions two levels deep, and one that sets a column to NULL.
  const ddl = CASCADE_SQL;
  await d1("exec", ...ddl);
  for (const sql of ddl) db.exec(sql);
  localDb = db;
  local = sqliteSource({ database: db, views: demoViews });
}, 60_000);

afterAll(async () => {
  await local?.close();
  await mf?.dispose();
});

/** One D1 source call inside workerd; rejects with the EdgecacheError's code. */
function d1(op: string, ...args: unknown[]): Promise<unknown> {
  return callD1Source(mf, op, ...args);
}

/** The same call on the better-sqlite3 source, as JSON (what the Worker sends back). */
async function sqlite(op: string, ...args: unknown[]): Promise<unknown> {
  const schema = await local.schema();
  const resource = (name: unknown) => resolveResource(schema, name as string)!;
  const [a, b, c] = args as [string, never, Row];
  const result = await (op === "list"
    ? local.list(resource(a), b)
    : op === "get"
      ? local.get(resource(a), b)
      : op === "insert"
        ? local.insert(a, b)
        : op === "update"
          ? local.update(a, b, c)
          : op === "replace"
            ? local.replace(a, b, c)
            : op === "delete"
              ? local.delete(a, b)
              : local.effects(a, b));
  return JSON.parse(JSON.stringify(result ?? null));
}

async function codeOf(call: Promise<unknown>): Promise<string | undefined> {
  return call.then(
    () => undefined,
    (error: { code?: string }) => error.code,
  );
}

describe("the D1 source inside workerd", () => {
  it("discovers the same tables, columns, kinds and view as the SQLite source", async () => {
    const schema = await local.schema();
    expect(await d1("schema")).toEqual({
      tables: [...schema.tables.values()],
      views: [...schema.views.keys()],
    });
  });

  it("answers list queries (filters, sorts, windows, the view) as the SQLite source does", async () => {
    const column = fc.constantFrom("firstName", "lastName", "email", "createdAt", "id");
    const filter: fc.Arbitrary<Filter> = fc.oneof(
      fc.record({
        column,
        op: fc.constantFrom("eq", "gt", "gte", "lt", "lte") as fc.Arbitrary<Filter["op"]>,
        value: fc.constantFrom("Lane", "M", "2025", "2025-01-01", "3", "a", "é"),
      }),
      fc.record({
        column,
        op: fc.constant("prefix" as const),
        value: fc.constantFrom("L", "2024-0", "1", "a*", "", "a\0"),
      }),
    );
    const query: fc.Arbitrary<ListQuery> = fc.record({
      filters: fc.array(filter, { maxLength: 2 }),
      sort: fc
        .uniqueArray(fc.record({ column, desc: fc.boolean() }), {
          maxLength: 2,
          selector: (s) => s.column,
        })
        .map((sort) => [...sort.filter((s) => s.column !== "id"), { column: "id", desc: false }]),
      limit: fc.integer({ min: 0, max: 30 }),
      offset: fc.integer({ min: 0, max: 40 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("users", "usersWithOrders"), query, async (name, q) => {
        const expected = await sqlite("list", name, q);
        expect(await d1("list", name, q)).toEqual(expected);
      }),
      { numRuns: 40 },
    );
  });

  it("a prefix with a NUL character compares bytes, inside workerd too (no Node Buffer)", async () => {
    const query: ListQuery = {
      filters: [{ column: "email", op: "prefix", value: "a\0" }],
      sort: [{ column: "id", desc: false }],
      limit: 10,
      offset: 0,
    };
    expect(await d1("list", "users", query)).toEqual(await sqlite("list", "users", query));
  });

  it("gets a row by key, with its orders through the view, and nothing for a missing key", async () => {
    const id = demoRows(SIZE).users[5]![0];
    for (const name of ["users", "usersWithOrders"]) {
      expect(await d1("get", name, id)).toEqual(await sqlite("get", name, id));
    }
    expect(await d1("get", "users", "no-such-id")).toBeNull();
  });

  it("writes as the SQLite source does: insert, PATCH and PUT return the rows before and after", async () => {
    // createdAt given: its default (the time of the insert) could differ by a second.
    const user = {
      id: "d1-new",
      firstName: "Dee",
      lastName: "One",
      email: "dee@example.com",
      createdAt: "2024-05-17T09:41:07Z",
    };
    const inserted = (await d1("insert", "users", user)) as Row;
    expect(inserted).toMatchObject(user);
    const localInserted = (await sqlite("insert", "users", user)) as Row;
    expect(Object.keys(inserted).sort()).toEqual(Object.keys(localInserted).sort());

    const patch = { firstName: "Dana" };
    const patched = await d1("update", "users", "d1-new", patch);
    expect(patched).toEqual(await sqlite("update", "users", "d1-new", patch));

    const put = { firstName: "Dora", lastName: "Two", email: "dora@example.com" };
    const replaced = (await d1("replace", "users", "d1-new", put)) as { row: Row };
    const localReplaced = (await sqlite("replace", "users", "d1-new", put)) as { row: Row };
    expect(replaced.row).toMatchObject(put);
    // createdAt goes back to its default (the time of the write) on both.
    expect(Object.keys(replaced.row).sort()).toEqual(Object.keys(localReplaced.row).sort());

    expect(await d1("update", "users", "missing", patch)).toBeNull();
    expect(await d1("delete", "users", "missing")).toBeNull();
  });

  it("a delete returns the old row and each row ON DELETE CASCADE removed, as SQLite does", async () => {
    const rows = demoRows(SIZE);
    const owner = rows.orders[0]![1];
    const deleted = (await d1("delete", "users", owner)) as { old: Row; cascaded: unknown[] };
    const localDeleted = (await sqlite("delete", "users", owner)) as {
      old: Row;
      cascaded: { table: string }[];
    };
    expect(deleted.old).toEqual(localDeleted.old);
    // D1 reads them in the delete's batch (one transaction), before the delete.
    expect(localDeleted.cascaded.length).toBeGreaterThan(0);
    const byId = (events: unknown[]) =>
      [...(events as { old: Row }[])].sort((x, y) =>
        String(x.old.id).localeCompare(String(y.old.id)),
      );
    expect(byId(deleted.cascaded)).toEqual(byId(localDeleted.cascaded));
    expect(deleted.cascaded.every((e) => (e as { op: string }).op === "delete")).toBe(true);
    const ordersOf: ListQuery = {
      filters: [{ column: "userId", op: "eq", value: owner }],
      sort: [{ column: "id", desc: false }],
      limit: 100,
      offset: 0,
    };
    expect(await d1("list", "orders", ordersOf)).toEqual([]);
  });

  it("a delete reports what foreign key actions changed two levels down, with the rows, as SQLite does", async () => {
    const deleted = (await d1("delete", "teams", "t1")) as { old: Row; cascaded: unknown[] };
    const localDeleted = (await sqlite("delete", "teams", "t1")) as typeof deleted;
    expect(deleted.old).toEqual({ id: "t1", name: "one" });
    const sorted = (events: unknown[]) =>
      (events as { table: string; old: Row }[]).map((e) => JSON.stringify(e)).sort();
    expect(sorted(deleted.cascaded)).toEqual(sorted(localDeleted.cascaded));
    expect(sorted(deleted.cascaded)).toEqual(sorted(CASCADE_T1_EVENTS));
    expect(localDb.prepare("SELECT count(*) AS n FROM notes").get()).toEqual({ n: 1 });
  });

  it("maps constraint violations and affinity conversions to the same error codes", async () => {
    const taken = demoRows(SIZE).users[1]!;
    const clash = { id: "clash", firstName: "A", lastName: "B", email: taken[3] };
    expect(await codeOf(d1("insert", "users", clash))).toBe("E_CONFLICT");
    expect(await codeOf(sqlite("insert", "users", clash))).toBe("E_CONFLICT");

    // "2024" into a DATETIME column (numeric affinity) would be stored as the number 2024.
    const numericDate = { createdAt: "2024" };
    const id = taken[0];
    expect(await codeOf(d1("update", "users", id, numericDate))).toBe("E_BAD_BODY");
    expect(await codeOf(sqlite("update", "users", id, numericDate))).toBe("E_BAD_BODY");
    expect(await d1("get", "users", id)).toEqual(await sqlite("get", "users", id));
  });

  it("names the tables a write may change beyond its rows as the SQLite source does", async () => {
    for (const op of ["insert", "update", "delete"]) {
      expect(await d1("effects", "users", op)).toEqual(await sqlite("effects", "users", op));
    }
  });
});
