/**
 * What bench:drizzle-exact's application does, as Drizzle queries: its reads, its writes
 * through the ORM and the straight SQL of those made around it, and which statements are
 * capture's own. Imports nothing of Node's, so the D1 Worker (d1-entry.ts) bundles the same
 * queries the runs in this process make.
 */
import { type AnyColumn, asc, desc, eq, inArray, like, type SQLWrapper } from "drizzle-orm";
import { integer, real, sqliteTable, text } from "drizzle-orm/sqlite-core";
import type { WriteOp } from "../workload/generate.ts";
import type { ReadSpec, Row, Table } from "../workload/oracle.ts";

// biome-ignore lint/suspicious/noExplicitAny: the same queries run on SQLite and PostgreSQL databases
export type AnyDb = any;
// biome-ignore lint/suspicious/noExplicitAny: a SQLite or a PostgreSQL table
export type AnyTable = any;

/** The workload's tables as one database's Drizzle schema declares them. */
export interface DrizzleTables {
  users: AnyTable;
  orders: AnyTable;
  /**
   * What a read orders by for `column`: the column, or on PostgreSQL with `collateC` a text
   * column `collate "C"` (docs/guides/drizzle.md: PostgreSQL orders text by its collation,
   * and the planner follows a text order only by code point).
   */
  orderKey(column: AnyTable): AnyColumn | SQLWrapper;
}

/** The demo's users and orders (plus the version column the oracle reads) on SQLite and D1. */
export const sqliteTables: DrizzleTables = {
  users: sqliteTable("users", {
    id: text("id").primaryKey(),
    firstName: text("firstName").notNull(),
    lastName: text("lastName").notNull(),
    email: text("email").notNull(),
    createdAt: text("createdAt").notNull(),
    version: integer("version").notNull(),
  }),
  orders: sqliteTable("orders", {
    id: text("id").primaryKey(),
    userId: text("userId").notNull(),
    total: real("total").notNull(),
    status: text("status").notNull(),
    createdAt: text("createdAt").notNull(),
    version: integer("version").notNull(),
  }),
  orderKey: (column) => column,
};

/** A read's answer as the data API gives it. */
export interface ReadResult {
  status: number;
  body: unknown;
}

/** One read of the sequence as a Drizzle application makes it; `body` as the data API answers. */
export async function readQuery(
  app: AnyDb,
  db: DrizzleTables,
  spec: ReadSpec,
): Promise<ReadResult> {
  const { users, orders } = db;
  const table = spec.view || spec.table === "users" ? users : orders;
  if (spec.kind === "item") {
    const [row] = await app.select().from(table).where(eq(table.id, spec.id));
    if (!row) return { status: 404, body: undefined };
    // The join view as two statements: the user, then their orders.
    if (spec.view) row.orders = await app.select().from(orders).where(eq(orders.userId, spec.id));
    return { status: 200, body: row };
  }
  const f = spec.filter;
  const where =
    f && (f.op === "eq" ? eq(table[f.column], f.value) : like(table[f.column], `${f.value}%`));
  const order = spec.sort.map((s) => {
    const key = db.orderKey(table[s.column]);
    return s.desc ? desc(key) : asc(key);
  });
  const rows: Row[] = await app
    .select()
    .from(table)
    .where(where)
    .orderBy(...order)
    .limit(spec.limit)
    .offset(spec.offset);
  if (spec.view && rows.length > 0) {
    const ids = rows.map((r) => r.id as string);
    const theirs: Row[] = await app.select().from(orders).where(inArray(orders.userId, ids));
    for (const r of rows) r.orders = theirs.filter((o) => o.userId === r.id);
  }
  return { status: 200, body: { data: rows } };
}

/** A write through Drizzle: `values` are the new row (POST) or the changed columns (PATCH). */
export async function writeThroughDrizzle(
  app: AnyDb,
  db: DrizzleTables,
  op: WriteOp,
  values: Row | undefined,
): Promise<void> {
  const table = db[op.table];
  if (op.method === "PATCH") await app.update(table).set(values).where(eq(table.id, op.id));
  else if (op.method === "POST") await app.insert(table).values(values);
  else await app.delete(table).where(eq(table.id, op.id));
}

/** The same write as straight SQL (`?` placeholders), as made around the ORM. */
export function aroundStatement(
  op: WriteOp,
  values: Row | undefined,
): { sql: string; params: unknown[] } {
  const q = (name: string) => `"${name}"`;
  const columns = Object.keys(values ?? {});
  const params = columns.map((k) => values![k]);
  if (op.method === "PATCH") {
    const set = columns.map((k) => `${q(k)} = ?`).join(", ");
    return { sql: `UPDATE ${q(op.table)} SET ${set} WHERE "id" = ?`, params: [...params, op.id] };
  }
  if (op.method === "POST") {
    const marks = columns.map(() => "?").join(", ");
    return {
      sql: `INSERT INTO ${q(op.table)} (${columns.map(q).join(", ")}) VALUES (${marks})`,
      params,
    };
  }
  return { sql: `DELETE FROM ${q(op.table)} WHERE "id" = ?`, params: [op.id] };
}

/** The row `id` of `table` as an uncached Drizzle database reads it. */
export async function freshRow(
  fresh: AnyDb,
  db: DrizzleTables,
  table: Table,
  id: string,
): Promise<Row | undefined> {
  const t = db[table];
  const [row] = await fresh.select().from(t).where(eq(t.id, id));
  return row;
}

/**
 * Capture's own statements on the application's client: its change table and the catalog
 * it reads (SQLite's and D1's pragmas, PostgreSQL's triggers).
 */
const CAPTURE_SQL =
  /edgecache|sqlite_master|pragma_table_info|pragma_table_list|data_version|pg_trigger/i;

export function isCaptureStatement(sql: string): boolean {
  return CAPTURE_SQL.test(sql);
}
