import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import postgres from "postgres";
import { afterAll, beforeAll, expect, it } from "vitest";
import { compareSortValues, matches, sortValues } from "../../src/core/deps/predicate.ts";
import type { EdgecacheError } from "../../src/core/errors.ts";
import type { Filter, ListQuery, Resource, Row, SortKey } from "../../src/core/query.ts";
import { resolveResource } from "../../src/core/query.ts";
import { demoViews, seedDemo } from "../../src/demo/seed.ts";
import { seedPostgresDemo } from "../../src/demo/seed-postgres.ts";
import { postgresSource } from "../../src/sources/postgres.ts";
import type { Source } from "../../src/sources/source.ts";
import { sqliteSource } from "../../src/sources/sqlite.ts";
import { requirePostgres } from "../helpers/services.ts";

/**
 * The source conformance suite: SQLite and PostgreSQL hold the same demo rows, and every
 * list query, get and write must give the same answer on both, which must also be the
 * answer the invalidation planner computes in memory from all rows.
 */
const pg = await requirePostgres();

const SIZE = { users: 200, orders: 800, seed: 7 };

pg.describe("source conformance: SQLite and PostgreSQL", () => {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-conformance-"));
  const schema = `ec_conformance_${process.pid}_${Date.now() % 100_000}`;
  let admin: postgres.Sql;
  let client: postgres.Sql;
  let sources: { name: string; source: Source }[] = [];

  beforeAll(async () => {
    const db = new Database(join(dir, "demo.db"));
    seedDemo(db, SIZE);
    admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    await admin.unsafe(`CREATE SCHEMA ${schema}`);
    client = postgres(pg.url, {
      max: 4,
      onnotice: () => {},
      connection: { search_path: schema },
    });
    await seedPostgresDemo(client, SIZE);
    // A linguistic collation orders "a" < "B" < "é" < "Z"; the source must still compare
    // by code point, as the planner does, whatever the columns declare.
    for (const [table, column] of [
      ["users", "firstName"],
      ["users", "lastName"],
      ["users", "email"],
      ["orders", "status"],
    ]) {
      await client.unsafe(
        `ALTER TABLE ${table} ALTER COLUMN "${column}" TYPE text COLLATE "und-x-icu"`,
      );
    }
    sources = [
      { name: "sqlite", source: sqliteSource({ database: db, views: demoViews }) },
      { name: "postgres", source: await postgresSource({ sql: client, schema, views: demoViews }) },
    ];
  });

  afterAll(async () => {
    for (const { source } of sources) await source.close();
    await client?.end();
    await admin?.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin?.end();
    rmSync(dir, { recursive: true, force: true });
  });

  async function resource(source: Source, name: string): Promise<Resource> {
    const found = resolveResource(await source.schema(), name);
    if (!found) throw new Error(`no resource ${name}`);
    return found;
  }

  /** Every source's rows for the query, and the planner's answer from all rows. */
  async function answers(name: string, query: ListQuery) {
    const out: Row[][] = [];
    for (const { source } of sources)
      out.push(await source.list(await resource(source, name), query));
    return out;
  }

  it("discovers the same tables, kinds and keys", async () => {
    const [a, b] = await Promise.all(sources.map(({ source }) => source.schema()));
    expect([...b!.tables.keys()].sort()).toEqual([...a!.tables.keys()].sort());
    for (const [name, table] of a!.tables) {
      expect(b!.tables.get(name)).toEqual(table);
    }
    expect([...b!.views.keys()]).toEqual([...a!.views.keys()]);
  });

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
      value: fc.oneof(
        fc.double({ min: 0, max: 600, noNaN: true }),
        fc.integer({ min: 0, max: 600 }),
      ),
    }),
    fc.record({ column: fc.constantFrom("status", "userId"), op, value: text }),
    fc.record({ column: fc.constant("createdAt"), op, value: date }),
  );
  const sortOf = (columns: string[]) =>
    fc.uniqueArray(fc.record({ column: fc.constantFrom(...columns), desc: fc.boolean() }), {
      maxLength: 2,
      selector: (k) => k.column,
    });
  const window = {
    limit: fc.integer({ min: 0, max: 60 }),
    offset: fc.integer({ min: 0, max: 900 }),
  };
  const complete = (sort: SortKey[]): SortKey[] =>
    sort.at(-1)?.column === "id" ? sort : [...sort, { column: "id", desc: false }];

  it("answers every list query alike, as the planner would", async () => {
    const allUsers = (
      await answers("users", { filters: [], sort: complete([]), limit: 10_000, offset: 0 })
    )[0]!;
    const allOrders = (
      await answers("orders", { filters: [], sort: complete([]), limit: 10_000, offset: 0 })
    )[0]!;
    const cases = fc.oneof(
      fc.record({
        name: fc.constantFrom("users", "usersWithOrders"),
        filters: fc.array(userFilter, { maxLength: 2 }),
        sort: sortOf(["firstName", "lastName", "createdAt", "email"]),
        ...window,
      }),
      fc.record({
        name: fc.constant("orders"),
        filters: fc.array(orderFilter, { maxLength: 2 }),
        sort: sortOf(["total", "status", "createdAt", "userId"]),
        ...window,
      }),
    );
    await fc.assert(
      fc.asyncProperty(cases, async ({ name, filters, sort, limit, offset }) => {
        const query: ListQuery = { filters, sort: complete(sort), limit, offset };
        const [a, b] = await answers(name, query);
        expect(b).toEqual(a);
        const all = name === "orders" ? allOrders : allUsers;
        const expected = all
          .filter((row) => matches(row, filters))
          .sort((x, y) =>
            compareSortValues(sortValues(x, query.sort), sortValues(y, query.sort), query.sort),
          )
          .slice(offset, offset + limit)
          .map((row) => row.id);
        expect(a!.map((row) => row.id)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it("gets rows and views by key alike, and misses alike", async () => {
    for (const id of ["1-", "5-", "nope", "", "o-000003"]) {
      const got = [];
      for (const { source } of sources) {
        const users = await resource(source, "usersWithOrders");
        const all = await source.list(users, {
          filters: [{ column: "id", op: "prefix", value: id }],
          sort: complete([]),
          limit: 1,
          offset: 0,
        });
        const key = all[0]?.id ?? id;
        got.push(await source.get(users, key as string));
      }
      expect(got[1]).toEqual(got[0]);
    }
  });

  /** Runs the same write on each source; results (or error codes) must match. */
  async function write(work: (source: Source) => Promise<unknown>): Promise<unknown> {
    const results: unknown[] = [];
    for (const { source } of sources) {
      results.push(await work(source).catch((error: EdgecacheError) => ({ error: error.code })));
    }
    expect(results[1]).toEqual(results[0]);
    return results[0];
  }

  it("writes return the same old and new rows, cascades and errors", async () => {
    const created = (await write((s) =>
      s.insert("users", {
        id: "zz-1",
        firstName: "Ada",
        lastName: "Lovelace",
        email: "ada@example.com",
        createdAt: "2025-02-03T04:05:06Z",
      }),
    )) as Row;
    expect(created.firstName).toBe("Ada");
    await write((s) =>
      s.insert("orders", {
        id: "zz-o1",
        userId: "zz-1",
        total: 12.5,
        status: "paid",
        createdAt: "2025-02-04T00:00:00Z",
      }),
    );
    await write((s) =>
      s.insert("orders", {
        id: "zz-o2",
        userId: "zz-1",
        total: 7,
        status: "paid",
        createdAt: "2025-02-05T00:00:00Z",
      }),
    );
    // Constraint violations and bad bodies map to the same codes.
    await write((s) =>
      s.insert("users", { id: "zz-2", firstName: "B", lastName: "C", email: "ada@example.com" }),
    );
    await write((s) =>
      s.insert("users", { id: "zz-1", firstName: "B", lastName: "C", email: "b@example.com" }),
    );
    await write((s) => s.insert("users", { id: "zz-3", firstName: "B" }));
    await write((s) =>
      s.insert("users", { id: "zz-3", firstName: 5, lastName: "C", email: "c@x", nope: 1 }),
    );
    await write((s) =>
      s.insert("orders", { id: "zz-o3", userId: "missing", total: 1, status: "x" }),
    );
    await write((s) =>
      s.insert("orders", { id: "zz-o4", userId: "zz-1", total: "many", status: "x" }),
    );
    await write((s) => s.update("users", "zz-1", { lastName: "Byron" }));
    await write((s) => s.update("users", "zz-1", { id: "other" }));
    await write((s) => s.update("users", "missing", { lastName: "Byron" }));
    await write((s) =>
      s.replace("orders", "zz-o2", {
        userId: "zz-1",
        total: 8,
        status: "shipped",
        createdAt: "2025-03-01T00:00:00Z",
      }),
    );
    const deleted = (await write((s) => s.delete("users", "zz-1"))) as { cascaded: unknown[] };
    expect(deleted.cascaded).toHaveLength(2);
    await write((s) => s.delete("users", "zz-1"));
    await write((s) => s.update("users", "1-", { lastName: "x" }));
  });
});
