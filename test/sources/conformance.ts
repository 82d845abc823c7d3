import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WriteEvent } from "../../src/core/deps/planner.ts";
import { compareSortValues, matches, sortValues } from "../../src/core/deps/predicate.ts";
import type { EdgecacheError } from "../../src/core/errors.ts";
import type { Filter, ListQuery, Resource, Row, SortKey } from "../../src/core/query.ts";
import { resolveResource } from "../../src/core/query.ts";
import { type DemoOptions, demoRows, demoSize } from "../../src/demo/seed.ts";
import type { Source } from "../../src/sources/source.ts";

/** The demo rows every backend under the suite holds (seed them with demoRows of this). */
export const CONFORMANCE_SIZE: Required<DemoOptions> = demoSize({
  users: 200,
  orders: 800,
  seed: 7,
});

/**
 * Tables with foreign key actions two levels deep and one that sets a column to NULL, with
 * their rows: every backend runs these statements (valid SQLite and PostgreSQL) before
 * its source discovers the database.
 */
export const CASCADE_SQL = [
  "CREATE TABLE teams (id TEXT PRIMARY KEY, name TEXT)",
  'CREATE TABLE members (id TEXT PRIMARY KEY, "teamId" TEXT REFERENCES teams(id) ON DELETE CASCADE)',
  'CREATE TABLE notes (id TEXT PRIMARY KEY, "memberId" TEXT REFERENCES members(id) ON DELETE CASCADE, body TEXT)',
  'CREATE TABLE projects (id TEXT PRIMARY KEY, "teamId" TEXT REFERENCES teams(id) ON DELETE SET NULL, title TEXT)',
  "INSERT INTO teams VALUES ('t1', 'one'), ('t2', 'two')",
  "INSERT INTO members VALUES ('m1', 't1'), ('m2', 't1'), ('m3', 't2')",
  "INSERT INTO notes VALUES ('n1', 'm1', 'a'), ('n2', 'm2', 'b'), ('n3', 'm3', 'c')",
  "INSERT INTO projects VALUES ('p1', 't1', 'x'), ('p2', 't2', 'y')",
];

/** What deleting team t1 of CASCADE_SQL changes through foreign key actions, in any order. */
export const CASCADE_T1_EVENTS: WriteEvent[] = [
  { table: "members", op: "delete", old: { id: "m1", teamId: "t1" } },
  { table: "members", op: "delete", old: { id: "m2", teamId: "t1" } },
  { table: "notes", op: "delete", old: { id: "n1", memberId: "m1", body: "a" } },
  { table: "notes", op: "delete", old: { id: "n2", memberId: "m2", body: "b" } },
  {
    table: "projects",
    op: "update",
    old: { id: "p1", teamId: "t1", title: "x" },
    new: { id: "p1", teamId: null, title: "x" },
  },
];

export interface ConformanceBackend {
  /**
   * A source over a database holding the demo tables with CONFORMANCE_SIZE's rows and the
   * CASCADE_SQL tables, with demoViews.
   */
  source: Source;
  /** Releases what `make` created (the source included). */
  close(): Promise<void>;
}

export interface SourceConformanceOptions {
  /** Random list queries checked (300). */
  numRuns?: number;
}

/**
 * The source conformance suite: a source over the demo rows must discover the demo tables
 * with the documented kinds, and answer every list query, get and write as the documented
 * semantics say: the answer the invalidation planner computes in memory from the same
 * rows (text by code point, NULLs first, dates as ISO text), down to each value, the rows
 * foreign key actions change on a delete, and the error codes. Run against each backend
 * (better-sqlite3, PostgreSQL, D1 in workerd), so every source gives the same answers.
 *
 * Writes change the rows: the write test runs last and touches only rows it adds.
 */
export function sourceConformance(
  name: string,
  make: () => Promise<ConformanceBackend>,
  options: SourceConformanceOptions = {},
): void {
  const { numRuns = 300 } = options;
  describe(`${name} source conformance`, () => {
    let backend: ConformanceBackend;
    let source: Source;
    const { users, orders } = expectedRows();

    beforeAll(async () => {
      backend = await make();
      source = backend.source;
    }, 60_000);

    afterAll(async () => {
      await backend?.close();
    });

    async function resource(resourceName: string): Promise<Resource> {
      const found = resolveResource(await source.schema(), resourceName);
      if (!found) throw new Error(`no resource ${resourceName}`);
      return found;
    }

    /** The planner's answer: all rows filtered, sorted, windowed; a view's rows with their orders. */
    function expected(resourceName: string, query: ListQuery): Row[] {
      const all = resourceName === "orders" ? orders : users;
      const rows = all
        .filter((row) => matches(row, query.filters))
        .sort((x, y) =>
          compareSortValues(sortValues(x, query.sort), sortValues(y, query.sort), query.sort),
        )
        .slice(query.offset, query.offset + query.limit);
      return resourceName === "usersWithOrders" ? rows.map(withOrders) : rows;
    }

    function withOrders(user: Row): Row {
      const own = orders.filter((o) => o.userId === user.id);
      return { ...user, orders: own.sort((a, b) => codePoint(a.id, b.id)) };
    }

    it("discovers the demo tables with their keys, kinds and nullability, and the view", async () => {
      const schema = await source.schema();
      expect([...schema.tables.keys()].sort()).toEqual([
        "members",
        "notes",
        "orders",
        "projects",
        "teams",
        "users",
      ]);
      const column = (columnName: string, kind: string) => ({
        name: columnName,
        kind,
        nullable: false,
      });
      expect(schema.tables.get("users")).toEqual({
        name: "users",
        primaryKey: "id",
        columns: [
          column("id", "text"),
          column("firstName", "text"),
          column("lastName", "text"),
          column("email", "text"),
          column("createdAt", "date"),
        ],
      });
      expect(schema.tables.get("orders")).toEqual({
        name: "orders",
        primaryKey: "id",
        columns: [
          column("id", "text"),
          column("userId", "text"),
          column("total", "number"),
          column("status", "text"),
          column("createdAt", "date"),
        ],
      });
      expect([...schema.views.keys()]).toEqual(["usersWithOrders"]);
    });

    it("answers every list query (filters, sorts, windows, the view) as the planner would", async () => {
      const cases = fc.oneof(
        fc.record({
          name: fc.constantFrom("users", "usersWithOrders"),
          filters: fc.array(userFilter, { maxLength: 2 }),
          sort: sortOf(["firstName", "lastName", "createdAt", "email"]),
          ...windowOf,
        }),
        fc.record({
          name: fc.constant("orders"),
          filters: fc.array(orderFilter, { maxLength: 2 }),
          sort: sortOf(["total", "status", "createdAt", "userId"]),
          ...windowOf,
        }),
      );
      await fc.assert(
        fc.asyncProperty(cases, async ({ name: resourceName, filters, sort, limit, offset }) => {
          const query: ListQuery = { filters, sort: complete(sort), limit, offset };
          const rows = await source.list(await resource(resourceName), query);
          expect(rows).toEqual(expected(resourceName, query));
        }),
        { numRuns },
      );
    });

    it("refuses what no list can answer with E_BAD_QUERY", async () => {
      const users = await resource("users");
      const base = { filters: [], sort: complete([]), limit: 10, offset: 0 };
      const bad: ListQuery[] = [
        { ...base, filters: [{ column: "nope", op: "eq", value: "x" }] },
        { ...base, filters: [{ column: "id", op: "nope" as Filter["op"], value: "x" }] },
        { ...base, sort: [{ column: "nope", desc: false }] },
        { ...base, limit: -1 },
        { ...base, offset: 1.5 },
      ];
      for (const query of bad) expect(await codeOf(source.list(users, query))).toBe("E_BAD_QUERY");
      const orders = await resource("orders");
      const prefixOfNumber: ListQuery = {
        ...base,
        filters: [{ column: "total", op: "prefix", value: "1" }],
      };
      expect(await codeOf(source.list(orders, prefixOfNumber))).toBe("E_BAD_QUERY");
    });

    it("gets rows and view rows by key, and nothing for a key that is not there", async () => {
      const some = [users[0]!, users[17]!, users.at(-1)!];
      for (const user of some) {
        expect(await source.get(await resource("users"), user.id as string)).toEqual(user);
        expect(await source.get(await resource("usersWithOrders"), user.id as string)).toEqual(
          withOrders(user),
        );
      }
      expect(await source.get(await resource("orders"), orders[3]!.id as string)).toEqual(
        orders[3],
      );
      for (const missing of ["nope", "", "1-", "o-0"]) {
        expect(await source.get(await resource("usersWithOrders"), missing)).toBeUndefined();
      }
    });

    it("writes return the old and new rows, the rows cascades changed, and the same error codes", async () => {
      const ada = {
        id: "zz-1",
        firstName: "Ada",
        lastName: "Lovelace",
        email: "ada@example.com",
        createdAt: "2025-02-03T04:05:06Z",
      };
      expect(await source.insert("users", ada)).toEqual(ada);
      const o1 = {
        id: "zz-o1",
        userId: "zz-1",
        total: 12.5,
        status: "paid",
        createdAt: "2025-02-04T00:00:00Z",
      };
      const o2 = { ...o1, id: "zz-o2", total: 7, createdAt: "2025-02-05T00:00:00Z" };
      expect(await source.insert("orders", o1)).toEqual(o1);
      expect(await source.insert("orders", o2)).toEqual(o2);

      // Constraint violations are conflicts; bodies the table cannot take are bad bodies.
      const taken = { id: "zz-2", firstName: "B", lastName: "C", email: "ada@example.com" };
      expect(await codeOf(source.insert("users", taken))).toBe("E_CONFLICT");
      const sameKey = { id: "zz-1", firstName: "B", lastName: "C", email: "b@example.com" };
      expect(await codeOf(source.insert("users", sameKey))).toBe("E_CONFLICT");
      expect(await codeOf(source.insert("users", { id: "zz-3", firstName: "B" }))).toBe(
        "E_BAD_BODY",
      );
      const unknownColumn = { id: "zz-3", firstName: 5, lastName: "C", email: "c@x", nope: 1 };
      expect(await codeOf(source.insert("users", unknownColumn))).toBe("E_BAD_BODY");
      const noParent = { id: "zz-o3", userId: "missing", total: 1, status: "x" };
      expect(await codeOf(source.insert("orders", noParent))).toBe("E_CONFLICT");
      const notANumber = { id: "zz-o4", userId: "zz-1", total: "many", status: "x" };
      expect(await codeOf(source.insert("orders", notANumber))).toBe("E_BAD_BODY");
      expect(await codeOf(source.insert("nope", {}))).toBe("E_NOT_FOUND");

      const byron = { ...ada, lastName: "Byron" };
      expect(await source.update("users", "zz-1", { lastName: "Byron" })).toEqual({
        old: ada,
        row: byron,
      });
      expect(await source.update("users", "zz-1", {})).toEqual({ old: byron, row: byron });
      expect(await codeOf(source.update("users", "zz-1", { id: "other" }))).toBe("E_BAD_BODY");
      expect(await source.update("users", "missing", { lastName: "Byron" })).toBeUndefined();
      const put = {
        userId: "zz-1",
        total: 8,
        status: "shipped",
        createdAt: "2025-03-01T00:00:00Z",
      };
      const shipped = { id: "zz-o2", ...put };
      expect(await source.replace("orders", "zz-o2", put)).toEqual({ old: o2, row: shipped });
      expect(await codeOf(source.replace("orders", "zz-o2", { total: 9 }))).toBe("E_BAD_BODY");
      expect(await source.replace("orders", "missing", put)).toBeUndefined();

      const deleted = await source.delete("users", "zz-1");
      expect(deleted?.old).toEqual(byron);
      const byId = (events: unknown[]) =>
        [...(events as { old: Row }[])].sort((a, b) => codePoint(a.old.id, b.old.id));
      expect(byId(deleted!.cascaded)).toEqual([
        { table: "orders", op: "delete", old: o1 },
        { table: "orders", op: "delete", old: shipped },
      ]);
      expect(await source.delete("users", "zz-1")).toBeUndefined();
      expect(await source.get(await resource("orders"), "zz-o1")).toBeUndefined();
      expect(await source.update("users", "1-", { lastName: "x" })).toBeUndefined();
    });

    it("binds values (SQL and any Unicode stored literally) and assigns a missing text key a UUID", async () => {
      const odd = {
        firstName: "Robert'); DROP TABLE users;--",
        lastName: 'é "quoted" \u{1F600} \uFFFF ?$1',
        email: "odd@example.com",
        createdAt: "2025-06-07T08:09:10Z",
      };
      const row = await source.insert("users", odd);
      expect(row).toEqual({ ...odd, id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
      expect(await source.get(await resource("users"), row.id as string)).toEqual(row);
      const found = await source.list(await resource("users"), {
        filters: [{ column: "firstName", op: "prefix", value: "Robert'); DROP" }],
        sort: complete([]),
        limit: 10,
        offset: 0,
      });
      expect(found).toEqual([row]);
      expect((await source.delete("users", row.id as string))?.old).toEqual(row);
    });

    it("a delete reports each row foreign key actions changed, two levels down, with its images", async () => {
      const deleted = await source.delete("teams", "t1");
      expect(deleted?.old).toEqual({ id: "t1", name: "one" });
      const sorted = (events: unknown[]) => events.map((e) => JSON.stringify(e)).sort();
      expect(sorted(deleted!.cascaded)).toEqual(sorted(CASCADE_T1_EVENTS));
      const notes = await source.list(await resource("notes"), {
        filters: [],
        sort: complete([]),
        limit: 10,
        offset: 0,
      });
      expect(notes).toEqual([{ id: "n3", memberId: "m3", body: "c" }]);
    });

    it("names the tables a write may change beyond its rows", async () => {
      for (const op of ["insert", "update", "delete"] as const) {
        expect(await source.effects("orders", op)).toEqual([]);
      }
      // users' ON UPDATE action is NO ACTION: an update of a user changes no order by itself.
      expect(await source.effects("users", "update")).toEqual([]);
      expect(await codeOf(source.effects("nope", "update"))).toBe("E_NOT_FOUND");
    });
  });
}

/** The demo rows as the documented semantics read them: ISO 8601 text dates, numbers. */
function expectedRows(): { users: Row[]; orders: Row[] } {
  const rows = demoRows(CONFORMANCE_SIZE);
  return {
    users: rows.users.map(([id, firstName, lastName, email, createdAt]) => ({
      id,
      firstName,
      lastName,
      email,
      createdAt,
    })),
    orders: rows.orders.map(([id, userId, total, status, createdAt]) => ({
      id,
      userId,
      total,
      status,
      createdAt,
    })),
  };
}

function codePoint(a: unknown, b: unknown): number {
  const x = String(a);
  const y = String(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

async function codeOf(call: Promise<unknown>): Promise<string | undefined> {
  return call.then(
    () => undefined,
    (error: EdgecacheError) => error.code,
  );
}

const text = fc.oneof(
  fc.constantFrom("Lane", "lane", "L", "M", "Smith", "2024", "2025-03", "", "o-0001", "1-"),
  fc.string({ maxLength: 4 }),
  fc.string({ unit: "grapheme", maxLength: 3 }),
  fc.constantFrom("a\u0000b", "Z\u0000", "\u{1F600}", "\uFFFF", "é"),
);
const date = fc.oneof(
  fc.constantFrom("2024", "2024-06", "2025-01-01", "2025-01-01T00:00:00Z", "2024-12-31T23"),
  fc
    .date({ min: new Date("2023-06-01"), max: new Date("2026-06-01"), noInvalidDate: true })
    .map((d) => d.toISOString().replace(".000Z", "Z")),
);
const op = fc.constantFrom<Filter["op"]>("eq", "gt", "gte", "lt", "lte", "prefix");
const userFilter = fc.oneof(
  fc.record({ column: fc.constantFrom("firstName", "lastName", "email", "id"), op, value: text }),
  fc.record({ column: fc.constant("createdAt"), op, value: date }),
);
const orderFilter = fc.oneof(
  fc.record({
    column: fc.constant("total"),
    op: fc.constantFrom<Filter["op"]>("eq", "gt", "gte", "lt", "lte"),
    value: fc.oneof(fc.double({ min: 0, max: 600, noNaN: true }), fc.integer({ min: 0, max: 600 })),
  }),
  fc.record({ column: fc.constantFrom("status", "userId"), op, value: text }),
  fc.record({ column: fc.constant("createdAt"), op, value: date }),
);
const sortOf = (columns: string[]) =>
  fc.uniqueArray(fc.record({ column: fc.constantFrom(...columns), desc: fc.boolean() }), {
    maxLength: 2,
    selector: (k) => k.column,
  });
const windowOf = {
  limit: fc.integer({ min: 0, max: 60 }),
  offset: fc.integer({ min: 0, max: 900 }),
};
const complete = (sort: SortKey[]): SortKey[] =>
  sort.at(-1)?.column === "id" ? sort : [...sort, { column: "id", desc: false }];
