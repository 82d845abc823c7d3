import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { Filter, ListQuery, Resource, Row, SortKey } from "../../src/core/data/query.ts";
import { resolveResource } from "../../src/core/data/query.ts";
import { compareSortValues, matches, sortValues } from "../../src/core/deps/predicate.ts";
import { EdgecacheError } from "../../src/core/errors.ts";
import { columnKind } from "../../src/database/sqlite/dialect.ts";
import { demoViews, isSeeded, seedDemo } from "../../src/demo/seed.ts";
import type { Source } from "../../src/sources/source.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";

const dir = mkdtempSync(join(tmpdir(), "edgecache-sqlite-"));
let fileCount = 0;
const opened: Source[] = [];

afterEach(() => {
  vi.restoreAllMocks();
});

afterAll(async () => {
  for (const source of opened) await source.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A fresh database file, prepared by `setup` over a separate connection. */
function dbFile(setup: (db: Database.Database) => void): string {
  const path = join(dir, `db-${++fileCount}.sqlite`);
  const db = new Database(path);
  setup(db);
  db.close();
  return path;
}

function open(
  path: string,
  options: { readonly?: boolean; views?: typeof demoViews } = {},
): Source {
  const source = sqliteSource({ path, views: demoViews, ...options });
  opened.push(source);
  return source;
}

async function resource(source: Source, name: string): Promise<Resource> {
  const found = resolveResource(await source.schema(), name);
  if (!found) throw new Error(`no resource ${name}`);
  return found;
}

function query(partial: Partial<ListQuery> & { sort?: SortKey[] }, key = "id"): ListQuery {
  const sort = partial.sort ?? [];
  return {
    filters: partial.filters ?? [],
    sort: sort.at(-1)?.column === key ? sort : [...sort, { column: key, desc: false }],
    limit: partial.limit ?? 1000,
    offset: partial.offset ?? 0,
  };
}

const ids = (rows: Row[]) => rows.map((r) => r.id);

/** Rejects with an EdgecacheError of `code`; returns it for message checks. */
async function rejection(promise: Promise<unknown>, code: string): Promise<EdgecacheError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EdgecacheError);
  expect((err as EdgecacheError).code).toBe(code);
  return err as EdgecacheError;
}

const SQL_WORDS =
  /\b(SELECT|INSERT|UPDATE|DELETE|FROM|WHERE|VALUES|RETURNING|INTO)\b|constraint failed:/;

const THINGS = `
CREATE TABLE things (
  id INTEGER PRIMARY KEY,
  name TEXT,
  price REAL,
  qty INTEGER NOT NULL DEFAULT 0,
  seenAt DATETIME,
  label VARCHAR(20) NOT NULL DEFAULT 'none'
);
INSERT INTO things (id, name, price, qty, seenAt) VALUES
  (1, 'a*b', 9, 3, '2023-12-31T23:00:00Z'),
  (2, 'a?c', 10, 3, '2024-01-15T00:00:00Z'),
  (3, 'a[d]', 2.5, 1, '2024-06-01T00:00:00Z'),
  (4, 'A*b', NULL, 7, NULL),
  (5, 'ab', 100, 3, '2025-02-01T00:00:00Z'),
  (6, NULL, 10, 0, '2024-06-01T00:00:00Z'),
  (7, 'axb', -1, 2, '2024-12-31T00:00:00Z');
CREATE TABLE no_key (a TEXT, b TEXT);
CREATE TABLE two_keys (a TEXT, b TEXT, PRIMARY KEY (a, b));
`;

describe("sqliteSource", () => {
  let demoPath: string;
  let source: Source;

  beforeAll(() => {
    demoPath = dbFile((db) => {
      seedDemo(db, { users: 40, orders: 150, seed: 7 });
      db.exec(THINGS);
    });
    vi.spyOn(console, "warn").mockImplementation(() => {});
    source = open(demoPath);
  });

  describe("schema", () => {
    it("discovers tables with kinds, primary keys and nullability", async () => {
      const schema = await source.schema();
      expect(schema.tables.get("users")).toEqual({
        name: "users",
        primaryKey: "id",
        columns: [
          { name: "id", kind: "text", nullable: false },
          { name: "firstName", kind: "text", nullable: false },
          { name: "lastName", kind: "text", nullable: false },
          { name: "email", kind: "text", nullable: false },
          { name: "createdAt", kind: "date", nullable: false },
        ],
      });
      const things = schema.tables.get("things");
      expect(things?.primaryKey).toBe("id");
      expect(things?.columns).toEqual([
        { name: "id", kind: "number", nullable: false },
        { name: "name", kind: "text", nullable: true },
        { name: "price", kind: "number", nullable: true },
        { name: "qty", kind: "number", nullable: false },
        { name: "seenAt", kind: "date", nullable: true },
        { name: "label", kind: "text", nullable: false },
      ]);
      expect(schema.views.get("usersWithOrders")).toEqual(demoViews[0]);
    });

    it("skips internal tables and tables without a single-column key, warning once", async () => {
      const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
      const fresh = open(demoPath);
      const schema = await fresh.schema();
      await fresh.schema();
      expect([...schema.tables.keys()].sort()).toEqual(["orders", "things", "users"]);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0]?.[0])).toMatch(/no_key, two_keys/);
    });

    it("maps declared types to kinds", () => {
      expect(columnKind("INTEGER")).toBe("number");
      expect(columnKind("decimal(10,2)")).toBe("number");
      expect(columnKind("DOUBLE PRECISION")).toBe("number");
      expect(columnKind("NUMERIC")).toBe("number");
      expect(columnKind("DATETIME")).toBe("date");
      expect(columnKind("timestamp")).toBe("date");
      expect(columnKind("VARCHAR(20)")).toBe("text");
      expect(columnKind("")).toBe("text");
    });

    it("refuses views over missing tables or columns with E_BAD_OPTION", async () => {
      const bad = [
        { name: "v", base: "nope", joins: [] },
        {
          name: "v",
          base: "users",
          joins: [{ as: "o", table: "nope", foreignKey: "userId", references: "id" }],
        },
        {
          name: "v",
          base: "users",
          joins: [{ as: "o", table: "orders", foreignKey: "nope", references: "id" }],
        },
        {
          name: "v",
          base: "users",
          joins: [{ as: "o", table: "orders", foreignKey: "userId", references: "nope" }],
        },
        { name: "v", base: "no_key", joins: [] },
      ];
      for (const view of bad) {
        const s = sqliteSource({ path: demoPath, views: [view] });
        opened.push(s);
        const err = await rejection(s.schema(), "E_BAD_OPTION");
        expect(err.message).toMatch(/^\[edgecache\] \[sqlite\] view "v": /);
      }
    });

    it("validates options when the factory is called", () => {
      expect(() => sqliteSource({ path: "" })).toThrow(
        /option "path": expected a non-empty string/,
      );
      expect(() => sqliteSource({ path: demoPath, views: "x" as never })).toThrow(/option "views"/);
      expect(() => sqliteSource({ database: {} as never })).toThrow(/option "database"/);
    });
  });

  describe("list filters", () => {
    const list = async (filters: Filter[], sort: SortKey[] = []) =>
      ids(await source.list(await resource(source, "things"), query({ filters, sort })));

    it("eq matches text, numbers and dates exactly, never NULL", async () => {
      expect(await list([{ column: "name", op: "eq", value: "a*b" }])).toEqual([1]);
      expect(await list([{ column: "qty", op: "eq", value: 3 }])).toEqual([1, 2, 5]);
      expect(await list([{ column: "price", op: "eq", value: 10 }])).toEqual([2, 6]);
      expect(await list([{ column: "seenAt", op: "eq", value: "2024-06-01T00:00:00Z" }])).toEqual([
        3, 6,
      ]);
      expect(await list([{ column: "name", op: "eq", value: "A*B" }])).toEqual([]);
    });

    it("prefix treats *, ? and [ literally", async () => {
      expect(await list([{ column: "name", op: "prefix", value: "a*" }])).toEqual([1]);
      expect(await list([{ column: "name", op: "prefix", value: "a?" }])).toEqual([2]);
      expect(await list([{ column: "name", op: "prefix", value: "a[" }])).toEqual([3]);
      expect(await list([{ column: "name", op: "prefix", value: "a[d]" }])).toEqual([3]);
    });

    it("prefix is case-sensitive and the empty prefix matches every non-NULL value", async () => {
      expect(await list([{ column: "name", op: "prefix", value: "a" }])).toEqual([1, 2, 3, 5, 7]);
      expect(await list([{ column: "name", op: "prefix", value: "A" }])).toEqual([4]);
      expect(await list([{ column: "name", op: "prefix", value: "" }])).toEqual([1, 2, 3, 4, 5, 7]);
    });

    it("prefix refuses number columns and works on ISO date columns", async () => {
      await rejection(list([{ column: "price", op: "prefix", value: "9" }]), "E_BAD_QUERY");
      expect(await list([{ column: "seenAt", op: "prefix", value: "2024-06" }])).toEqual([3, 6]);
    });

    it("compares number columns numerically, skipping NULL", async () => {
      expect(await list([{ column: "price", op: "gt", value: 9 }])).toEqual([2, 5, 6]);
      expect(await list([{ column: "price", op: "gte", value: 9 }])).toEqual([1, 2, 5, 6]);
      expect(await list([{ column: "price", op: "lt", value: 9.5 }])).toEqual([1, 3, 7]);
      expect(await list([{ column: "price", op: "lte", value: -1 }])).toEqual([7]);
    });

    it("compares date columns as text, even against a bare year", async () => {
      // A DATETIME column has numeric affinity: a naive `seenAt < '2024'` matches nothing.
      expect(await list([{ column: "seenAt", op: "lt", value: "2024" }])).toEqual([1]);
      expect(await list([{ column: "seenAt", op: "gt", value: "2025" }])).toEqual([5]);
      expect(await list([{ column: "seenAt", op: "gte", value: "2024-06-01T00:00:00Z" }])).toEqual([
        3, 5, 6, 7,
      ]);
      expect(await list([{ column: "seenAt", op: "lte", value: "2024-06" }])).toEqual([1, 2]);
    });

    it("combines filters with AND", async () => {
      expect(
        await list([
          { column: "name", op: "prefix", value: "a" },
          { column: "qty", op: "eq", value: 3 },
          { column: "price", op: "lt", value: 50 },
        ]),
      ).toEqual([1, 2]);
    });

    it("refuses unknown filter and sort columns", async () => {
      await rejection(list([{ column: "nope", op: "eq", value: 1 }]), "E_BAD_QUERY");
      await rejection(list([], [{ column: "nope", desc: false }]), "E_BAD_QUERY");
    });
  });

  describe("list order and windows", () => {
    const list = async (sort: SortKey[], limit = 1000, offset = 0) =>
      ids(await source.list(await resource(source, "things"), query({ sort, limit, offset })));

    it("sorts ascending with NULLs first and ties broken by the key", async () => {
      expect(await list([{ column: "price", desc: false }])).toEqual([4, 7, 3, 1, 2, 6, 5]);
      expect(await list([{ column: "qty", desc: false }])).toEqual([6, 3, 7, 1, 2, 5, 4]);
    });

    it("sorts descending with NULLs last", async () => {
      expect(await list([{ column: "price", desc: true }])).toEqual([5, 2, 6, 1, 3, 7, 4]);
      expect(
        await list([
          { column: "qty", desc: true },
          { column: "id", desc: true },
        ]),
      ).toEqual([4, 5, 2, 1, 7, 3, 6]);
    });

    it("sorts text by code point", async () => {
      expect(await list([{ column: "name", desc: false }])).toEqual([6, 4, 1, 2, 3, 5, 7]);
    });

    it("limit and offset cut consecutive windows of one order", async () => {
      const sort = [{ column: "seenAt", desc: true }];
      const all = await list(sort);
      const windows = [];
      for (let offset = 0; offset < all.length + 3; offset += 3) {
        windows.push(...(await list(sort, 3, offset)));
      }
      expect(windows).toEqual(all);
      expect(await list(sort, 0)).toEqual([]);
      expect(await list(sort, 5, 100)).toEqual([]);
    });
  });

  describe("views", () => {
    const ordersOf = (userId: unknown) => {
      const db = new Database(demoPath, { readonly: true });
      try {
        return db.prepare("SELECT * FROM orders WHERE userId = ? ORDER BY id").all(userId);
      } finally {
        db.close();
      }
    };

    it("lists base rows with their orders nested, ordered by order id", async () => {
      const view = await resource(source, "usersWithOrders");
      const rows = await source.list(
        view,
        query({ sort: [{ column: "createdAt", desc: true }], limit: 15 }),
      );
      const users = await source.list(
        await resource(source, "users"),
        query({ sort: [{ column: "createdAt", desc: true }], limit: 15 }),
      );
      expect(rows.map(({ orders: _, ...user }) => user)).toEqual(users);
      for (const row of rows) expect(row.orders).toEqual(ordersOf(row.id));
      expect(rows.some((r) => (r.orders as Row[]).length > 0)).toBe(true);
    });

    it("gives a user without orders an empty array", async () => {
      const created = await source.insert("users", {
        firstName: "Ada",
        lastName: "Lovelace",
        email: "ada@example.com",
        createdAt: "2024-02-02T00:00:00Z",
      });
      const row = await source.get(await resource(source, "usersWithOrders"), created.id as string);
      expect(row).toEqual({ ...created, orders: [] });
      await source.delete("users", created.id as string);
    });

    it("attaches joins for more base rows than one IN list holds", async () => {
      const path = dbFile((db) => seedDemo(db, { users: 1200, orders: 3000, seed: 3 }));
      const big = open(path);
      const rows = await big.list(await resource(big, "usersWithOrders"), query({ limit: 2000 }));
      expect(rows).toHaveLength(1200);
      expect(rows.reduce((n, r) => n + (r.orders as Row[]).length, 0)).toBe(3000);
      for (const row of rows) {
        for (const order of row.orders as Row[]) expect(order.userId).toBe(row.id);
      }
    });

    it("get returns one row with joins, or undefined", async () => {
      const [first] = await source.list(await resource(source, "users"), query({ limit: 1 }));
      const row = await source.get(await resource(source, "usersWithOrders"), first!.id as string);
      expect(row).toEqual({ ...first, orders: ordersOf(first!.id) });
      expect(await source.get(await resource(source, "users"), "0-zzz")).toBeUndefined();
    });

    it("get coerces a numeric id from a URL for a number key", async () => {
      const things = await resource(source, "things");
      expect((await source.get(things, "2"))?.name).toBe("a?c");
      expect(await source.get(things, "two")).toBeUndefined();
    });
  });

  describe("writes", () => {
    it("insert with an id stores it and returns the row", async () => {
      const row = await source.insert("users", {
        id: "999-xyz",
        firstName: "Grace",
        lastName: "Hopper",
        email: "grace@example.com",
        createdAt: "2024-03-01T00:00:00Z",
      });
      expect(row).toEqual({
        id: "999-xyz",
        firstName: "Grace",
        lastName: "Hopper",
        email: "grace@example.com",
        createdAt: "2024-03-01T00:00:00Z",
      });
    });

    it("insert without an id generates a UUID for a text key and lets SQLite number a rowid key", async () => {
      const user = await source.insert("users", {
        firstName: "Alan",
        lastName: "Turing",
        email: "alan@example.com",
        createdAt: "2024-03-02T00:00:00Z",
      });
      expect(user.id).toMatch(
        /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      );
      const thing = await source.insert("things", { name: "new", price: "12.50", qty: 4 });
      expect(thing.id).toBeGreaterThan(7);
      expect(thing).toEqual({
        id: thing.id,
        name: "new",
        price: 12.5,
        qty: 4,
        seenAt: null,
        label: "none",
      });
      await source.delete("things", thing.id as number);
    });

    it("insert coerces values to the column's kind and refuses the rest with E_BAD_BODY", async () => {
      const row = await source.insert("things", { name: 42, qty: "7" });
      expect(row.name).toBe("42");
      expect(row.qty).toBe(7);
      await source.delete("things", row.id as number);
      const flag = await source.insert("things", { qty: true }); // JSON booleans: 1 and 0
      expect(flag.qty).toBe(1);
      await source.delete("things", flag.id as number);
      for (const values of [
        { qty: "seven" },
        { name: { a: 1 } },
        { name: ["a"] },
        { seenAt: "not a date" },
        { qty: null },
        { name: "\ud800" },
      ]) {
        await rejection(source.insert("things", values), "E_BAD_BODY");
      }
    });

    it("refuses a date SQLite would store as a number, storing nothing", async () => {
      const err = await rejection(source.insert("things", { seenAt: "2024" }), "E_BAD_BODY");
      expect(err.message).toMatch(/"seenAt"/);
      const things = await source.list(await resource(source, "things"), query({}));
      expect(things).toHaveLength(7);
    });

    it("refuses an unknown column with E_BAD_BODY naming it", async () => {
      const err = await rejection(source.insert("users", { nickname: "x" }), "E_BAD_BODY");
      expect(err.message).toMatch(/"nickname"/);
      await rejection(source.update("users", "1-abc", { nickname: "x" }), "E_BAD_BODY");
    });

    it("update returns the old and new rows in one step", async () => {
      const [user] = await source.list(await resource(source, "users"), query({ limit: 1 }));
      const id = user!.id as string;
      const result = await source.update("users", id, { lastName: "Updated", id });
      expect(result).toEqual({ old: user, row: { ...user, lastName: "Updated" } });
      expect(await source.update("users", id, {})).toEqual({
        old: result!.row,
        row: result!.row,
      });
      await rejection(source.update("users", id, { id: "other" }), "E_BAD_BODY");
      expect(await source.update("users", "0-none", { lastName: "x" })).toBeUndefined();
    });

    it("replace sets missing columns to their default or NULL and refuses missing required ones", async () => {
      const old = await source.get(await resource(source, "things"), 2);
      const result = await source.replace("things", 2, { name: "replaced", qty: 9 });
      expect(result).toEqual({
        old,
        row: { id: 2, name: "replaced", price: null, qty: 9, seenAt: null, label: "none" },
      });
      await source.replace("things", 2, old!); // restore for the other tests
      const err = await rejection(
        source.replace("users", "1-abc", { firstName: "A", lastName: "B" }),
        "E_BAD_BODY",
      );
      expect(err.message).toMatch(/"email" is required/);
      expect(await source.replace("things", 404, { qty: 1 })).toBeUndefined();
    });

    it("delete returns the old row, then undefined", async () => {
      const created = await source.insert("things", { name: "doomed", qty: 1 });
      expect(await source.delete("things", created.id as number)).toEqual({
        old: created,
        cascaded: [],
      });
      expect(await source.delete("things", created.id as number)).toBeUndefined();
    });

    it("delete reports the rows its ON DELETE actions removed or changed", async () => {
      const db = new Database(join(dir, "cascade.db"));
      db.exec(`
        CREATE TABLE p (id INTEGER PRIMARY KEY);
        CREATE TABLE c (id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p(id) ON DELETE CASCADE);
        CREATE TABLE g (id INTEGER PRIMARY KEY, cid INTEGER REFERENCES c(id) ON DELETE SET NULL);
        INSERT INTO p VALUES (1), (2);
        INSERT INTO c VALUES (10, 1), (11, 1), (12, 2);
        INSERT INTO g VALUES (100, 10), (101, 12);
      `);
      const s = sqliteSource({ database: db });
      const result = await s.delete("p", 1);
      expect(result?.old).toEqual({ id: 1 });
      expect(result?.cascaded).toEqual([
        { table: "c", op: "delete", old: { id: 10, pid: 1 } },
        { table: "g", op: "update", old: { id: 100, cid: 10 }, new: { id: 100, cid: null } },
        { table: "c", op: "delete", old: { id: 11, pid: 1 } },
      ]);
      db.close();
    });

    it("a unique violation is E_CONFLICT naming the column, without SQL", async () => {
      const [user] = await source.list(await resource(source, "users"), query({ limit: 1 }));
      const err = await rejection(
        source.insert("users", {
          firstName: "Dup",
          lastName: "Dup",
          email: user!.email,
          createdAt: "2024-01-01T00:00:00Z",
        }),
        "E_CONFLICT",
      );
      expect(err.message).toMatch(/unique.*"email"/);
      expect(err.message).not.toMatch(SQL_WORDS);
      expect(err.cause).toBeDefined();
      const dupKey = await rejection(source.insert("things", { id: 1, qty: 1 }), "E_CONFLICT");
      expect(dupKey.message).not.toMatch(SQL_WORDS);
    });

    it("a foreign key violation is E_CONFLICT", async () => {
      const err = await rejection(
        source.insert("orders", {
          userId: "0-none",
          total: 1,
          status: "paid",
          createdAt: "2024-01-01T00:00:00Z",
        }),
        "E_CONFLICT",
      );
      expect(err.message).toMatch(/foreign key/);
      expect(err.message).not.toMatch(SQL_WORDS);
    });

    it("a CHECK violation is E_CONFLICT without the constraint's expression", async () => {
      const path = dbFile((db) =>
        db.exec(`CREATE TABLE c (
          id INTEGER PRIMARY KEY,
          total REAL CHECK (total >= 0),
          qty INTEGER CONSTRAINT positive_qty CHECK (qty > 0)
        )`),
      );
      const s = open(path, { views: [] });
      const unnamed = await rejection(s.insert("c", { total: -1 }), "E_CONFLICT");
      expect(unnamed.message).not.toMatch(/total|>=/);
      const named = await rejection(s.insert("c", { qty: 0 }), "E_CONFLICT");
      expect(named.message).toMatch(/"positive_qty"/);
    });

    it("opens files it owns in WAL mode", () => {
      const path = dbFile(() => {});
      open(path, { views: [] });
      const db = new Database(path, { readonly: true });
      expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
      db.close();
    });

    it("binds values: SQL in a value is stored literally", async () => {
      const evil = "'; DROP TABLE users; --";
      const row = await source.insert("users", {
        firstName: evil,
        lastName: 'Robert"); DROP TABLE users;--',
        email: "bobby@example.com",
        createdAt: "2024-01-01T00:00:00Z",
      });
      expect(row.firstName).toBe(evil);
      const users = await resource(source, "users");
      const found = await source.list(
        users,
        query({ filters: [{ column: "firstName", op: "eq", value: evil }] }),
      );
      expect(ids(found)).toEqual([row.id]);
      await source.delete("users", row.id as string);
    });

    it("a read-only source refuses writes", async () => {
      const ro = open(demoPath, { readonly: true });
      await rejection(ro.insert("things", { qty: 1 }), "E_METHOD_NOT_ALLOWED");
      await rejection(ro.delete("things", 1), "E_METHOD_NOT_ALLOWED");
      expect((await ro.list(await resource(ro, "things"), query({ limit: 1 }))).length).toBe(1);
    });

    it("other driver errors are E_SOURCE_UNAVAILABLE without SQL", async () => {
      const path = dbFile((db) => db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY)"));
      const s = open(path, { views: [] });
      const t = await resource(s, "t");
      const raw = new Database(path);
      raw.exec("DROP TABLE t");
      raw.close();
      const err = await rejection(s.list(t, query({})), "E_SOURCE_UNAVAILABLE");
      expect(err.message).not.toMatch(SQL_WORDS);
      expect(err.message).not.toMatch(/no such table/);
    });
  });

  describe("a write lock held by another connection", () => {
    const lockedFile = () =>
      dbFile((db) => {
        db.pragma("journal_mode = WAL");
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL)");
        db.exec("INSERT INTO t (id, qty) VALUES (1, 1)");
      });
    /** Another connection (another process, as far as SQLite's locks go) that writes. */
    const holdLock = (path: string) => {
      const other = new Database(path);
      other.exec("BEGIN IMMEDIATE");
      other.prepare("UPDATE t SET qty = qty + 100 WHERE id = 1").run();
      return {
        release() {
          if (other.inTransaction) other.exec("COMMIT");
          other.close();
        },
      };
    };

    it("a write waits for it, without blocking the event loop, and goes through once it is released", async () => {
      const path = lockedFile();
      const s = sqliteSource({ path, busyTimeout: 10_000 });
      opened.push(s);
      const t = await resource(s, "t");
      const lock = holdLock(path);
      // Every kind of write waits: update (reads its old row first), insert, delete.
      const writes = Promise.all([
        s.update("t", 1, { qty: 2 }),
        s.insert("t", { id: 2, qty: 5 }),
        s.delete("t", 2),
      ]);
      // Reads are answered meanwhile: the wait is between tries, not inside SQLite.
      let ticks = 0;
      const ticking = setInterval(() => ticks++, 5);
      await new Promise((resolve) => setTimeout(resolve, 150));
      clearInterval(ticking);
      expect(ticks).toBeGreaterThan(1);
      expect(await s.get(t, 1)).toEqual({ id: 1, qty: 1 });
      lock.release();
      const [updated] = await writes;
      // The update read its old row inside its own transaction, after the other write.
      expect(updated).toEqual({ old: { id: 1, qty: 101 }, row: { id: 1, qty: 2 } });
      expect(await s.list(t, query({}))).toEqual([{ id: 1, qty: 2 }]);
    });

    it("fails with E_SOURCE_BUSY, no SQL, once busyTimeout has passed", async () => {
      const path = lockedFile();
      const s = sqliteSource({ path, busyTimeout: 50 });
      opened.push(s);
      const lock = holdLock(path);
      try {
        const err = await rejection(s.update("t", 1, { qty: 2 }), "E_SOURCE_BUSY");
        expect(err.message).not.toMatch(SQL_WORDS);
        await rejection(s.insert("t", { qty: 5 }), "E_SOURCE_BUSY");
        await rejection(s.delete("t", 1), "E_SOURCE_BUSY");
      } finally {
        lock.release();
      }
      expect(await s.update("t", 1, { qty: 3 })).toMatchObject({ row: { id: 1, qty: 3 } });
    });

    it.each([-1, Number.NaN, "5000", Number.POSITIVE_INFINITY])(
      "refuses busyTimeout %s",
      (busyTimeout) => {
        expect(() =>
          sqliteSource({ path: ":memory:", busyTimeout: busyTimeout as number }),
        ).toThrow(/option "busyTimeout": expected milliseconds >= 0/);
      },
    );
  });

  describe("change capture's marks", () => {
    it("a write made without capture installed asks the catalog once, in its own transaction, and nothing when recorded", async () => {
      const path = dbFile((db) => db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, qty INTEGER)"));
      const statements: string[] = [];
      const db = new Database(path, { verbose: (sql) => statements.push(String(sql)) });
      const s = sqliteSource({ database: db, views: [] });
      opened.push(s);
      const mark = "a-mark";
      await s.insert("t", { qty: 1 }, { capture: mark });
      await s.update("t", 1, { qty: 2 }, { capture: "another" });
      await s.recorded(mark);
      await s.recorded("another");
      const catalog = statements.filter((sql) => /sqlite_master/.test(sql));
      expect(catalog.filter((sql) => /_edgecache_changes/.test(sql))).toHaveLength(2);
      expect(statements.filter((sql) => /DELETE/.test(sql))).toEqual([]);
      db.close();
    });
  });

  describe("prefix with NUL", () => {
    it("matches the whole prefix, not the part before the NUL", async () => {
      const path = dbFile((db) => {
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)");
        const insert = db.prepare("INSERT INTO t (s) VALUES (?)");
        for (const s of ["a\0b", "a\0c", "a", "ab", "a\0"]) insert.run(s);
      });
      const s = open(path, { views: [] });
      const t = await resource(s, "t");
      const list = async (value: string) =>
        ids(await s.list(t, query({ filters: [{ column: "s", op: "prefix", value }] })));
      expect(await list("a\0b")).toEqual([1]);
      expect(await list("a\0")).toEqual([1, 2, 5]);
    });
  });
});

describe("seedDemo", () => {
  it("is deterministic for a seed and fills the default sizes", () => {
    const a = new Database(":memory:");
    const b = new Database(":memory:");
    expect(isSeeded(a)).toBe(false);
    seedDemo(a);
    seedDemo(b);
    expect(isSeeded(a)).toBe(true);
    const dump = (db: Database.Database) => [
      db.prepare("SELECT * FROM users ORDER BY id").all(),
      db.prepare("SELECT * FROM orders ORDER BY id").all(),
    ];
    expect(dump(a)).toEqual(dump(b));
    const [users, orders] = dump(a) as [Row[], Row[]];
    expect(users).toHaveLength(1000);
    expect(orders).toHaveLength(5000);
    expect(users.filter((u) => u.firstName === "Lane").length).toBeGreaterThan(0);
    for (const u of users) {
      expect(u.id).toMatch(/^\d+-[a-z]{3}$/);
      expect(u.createdAt).toMatch(/^202[45]-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    }
    for (const o of orders) {
      expect(o.id).toMatch(/^o-\d{6}$/);
      expect(["pending", "paid", "shipped", "cancelled"]).toContain(o.status);
      expect(Math.round((o.total as number) * 100) / 100).toBe(o.total);
    }
    seedDemo(a); // already seeded: no duplicate rows
    expect(a.prepare("SELECT count(*) AS n FROM users").get()).toEqual({ n: 1000 });
    a.close();
    b.close();
  });

  it("fills a new file once when several processes start on it at once", async () => {
    const path = join(dir, "raced.sqlite");
    // What three nodes started together do: each opens the file and seeds it if empty.
    const code = `import Database from "better-sqlite3";
import { seedDemo } from ${JSON.stringify(join(process.cwd(), "src/demo/seed.ts"))};
const db = new Database(${JSON.stringify(path)});
db.pragma("journal_mode = WAL");
seedDemo(db, { users: 10000, orders: 20000 });`;
    const exits = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise<number | null>((done) => {
            const child = spawn(
              process.execPath,
              ["--import", "tsx", "--input-type=module", "-e", code],
              { stdio: "ignore" },
            );
            child.on("close", done);
          }),
      ),
    );
    expect(exits).toEqual([0, 0, 0]);
    const db = new Database(path);
    expect(db.prepare("SELECT count(*) AS n FROM users").get()).toEqual({ n: 10000 });
    db.close();
  });

  it("seeds 10,000 users and 50,000 orders", () => {
    const db = new Database(join(dir, "big.sqlite"));
    seedDemo(db, { users: 10_000, orders: 50_000 });
    expect(db.prepare("SELECT count(*) AS n FROM users").get()).toEqual({ n: 10_000 });
    expect(db.prepare("SELECT count(*) AS n FROM orders").get()).toEqual({ n: 50_000 });
    expect(db.prepare("SELECT count(DISTINCT email) AS n FROM users").get()).toEqual({ n: 10_000 });
    db.close();
  });
});

// ---------------------------------------------------------------------------
// Property: list() equals a plain evaluation of the documented semantics.
// ---------------------------------------------------------------------------

// The reference is the core's own predicate evaluator, the one the invalidation planner
// uses: this property proves the SQL the source runs and the planner's view agree.
function reference(rows: Row[], q: ListQuery): Row[] {
  return rows
    .filter((row) => matches(row, q.filters))
    .sort((a, b) => compareSortValues(sortValues(a, q.sort), sortValues(b, q.sort), q.sort))
    .slice(q.offset, q.offset + q.limit);
}

// "k STRING" is text with numeric affinity, where SQLite would turn "12" into 12.
const PROPERTY_TABLE = `CREATE TABLE p (
  id INTEGER PRIMARY KEY, n REAL, i INTEGER, s TEXT, d DATETIME, k STRING
)`;

const CHARS = [
  "a",
  "b",
  "A",
  "z",
  " ",
  "*",
  "?",
  "[",
  "]",
  "é",
  "\uE000",
  "\uFFFD",
  "😀",
  "𝒳",
  "\0",
  "1",
  ".",
];
const text = fc.array(fc.constantFrom(...CHARS), { maxLength: 4 }).map((cs) => cs.join(""));
const number = fc.oneof(
  fc.integer({ min: -12, max: 12 }),
  fc.constantFrom(0.5, -2.25, 3.75, 100, 1e6),
);
const date = fc.constantFrom(
  "2023-12-31T23:59:59Z",
  "2024-01-01T00:00:00Z",
  "2024-06-15T12:00:00Z",
  "2024-06-15",
  "2024-06-15 08:00:00",
  "2025-01-01T00:00:00Z",
);
const dateValue = fc.oneof(date, fc.constantFrom("2024", "2025", "2024-06", "2024-06-15T"));
const nullable = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: null, freq: 4 });

const rowArb = fc.record({
  n: nullable(number),
  i: nullable(fc.integer({ min: -3, max: 3 })),
  s: nullable(text),
  d: nullable(date),
  k: nullable(text),
});

const COLUMNS = {
  n: { ops: ["eq", "gt", "gte", "lt", "lte"], value: number },
  i: { ops: ["eq", "gt", "gte", "lt", "lte"], value: fc.integer({ min: -4, max: 4 }) },
  s: { ops: ["eq", "prefix", "gt", "gte", "lt", "lte"], value: text },
  d: { ops: ["eq", "gt", "gte", "lt", "lte"], value: dateValue },
  k: { ops: ["eq", "prefix", "gt", "gte", "lt", "lte"], value: text },
} as const;

type Column = keyof typeof COLUMNS;

/**
 * Filter values come from the column's pool or from the stored rows (whole values and
 * code-point prefixes of them), so that eq, prefix and ties actually hit rows.
 */
function filterArb(rows: Row[]): fc.Arbitrary<Filter> {
  return fc.constantFrom(...(Object.keys(COLUMNS) as Column[])).chain((column) => {
    const seen = rows.map((r) => r[column]).filter((v): v is string | number => v !== null);
    const fromRows: fc.Arbitrary<string | number>[] =
      seen.length === 0
        ? []
        : [
            fc.constantFrom(...seen),
            fc
              .tuple(fc.constantFrom(...seen), fc.nat(5))
              .map(([v, n]) => (typeof v === "string" ? [...v].slice(0, n).join("") : v)),
          ];
    return fc.record({
      column: fc.constant(column),
      op: fc.constantFrom(...COLUMNS[column].ops),
      value: fc.oneof(COLUMNS[column].value as fc.Arbitrary<string | number>, ...fromRows),
    });
  });
}

function queryArb(rows: Row[]): fc.Arbitrary<ListQuery> {
  return fc
    .record({
      filters: fc.array(filterArb(rows), { maxLength: 3 }),
      sort: fc.array(
        fc.record({ column: fc.constantFrom("n", "i", "s", "d", "k"), desc: fc.boolean() }),
        { maxLength: 2 },
      ),
      keyDesc: fc.boolean(),
      limit: fc.integer({ min: 0, max: 10 }),
      offset: fc.integer({ min: 0, max: 10 }),
    })
    .map(({ sort, keyDesc, ...rest }) => ({
      ...rest,
      sort: [...sort, { column: "id", desc: keyDesc }],
    }));
}

describe("list agrees with the documented semantics (property)", () => {
  it("equals a plain JS filter, sort and window over the same rows", async () => {
    const path = dbFile((db) => db.exec(PROPERTY_TABLE));
    const db = new Database(path);
    const source = sqliteSource({ database: db });
    const p = await resource(source, "p");
    let refusedNumericText = 0;

    await fc.assert(
      fc.asyncProperty(
        fc
          .array(rowArb, { maxLength: 16 })
          .chain((rows) =>
            fc.tuple(fc.constant(rows), fc.array(queryArb(rows), { minLength: 1, maxLength: 6 })),
          ),
        async ([rows, queries]) => {
          db.exec("DELETE FROM p");
          const stored: Row[] = [];
          for (const values of rows) {
            try {
              stored.push(await source.insert("p", values));
            } catch (err) {
              // Only a numeric-looking string in the STRING column may be refused.
              expect((err as EdgecacheError).code).toBe("E_BAD_BODY");
              expect((err as Error).message).toMatch(/"k"/);
              refusedNumericText++;
              stored.push(await source.insert("p", { ...values, k: null }));
            }
          }
          for (const q of queries) {
            expect(await source.list(p, q)).toEqual(reference(stored, q));
          }
        },
      ),
      { numRuns: 500 },
    );
    expect(refusedNumericText).toBeGreaterThan(0);
    await source.close();
    db.close();
  }, 120_000); // 500 runs: about 11 s alone, three times that on a busy machine
});
