/**
 * bench:orm-exact's Kysely and Prisma reads and writes (the Drizzle application's, queries.ts,
 * made through each ORM), over a cached client and an uncached one, and their statements
 * counted. Imports nothing of Node's, so the applications in this process (orms.ts) and the
 * D1 Workers inside workerd (d1-kysely-entry.ts, d1-prisma-entry.ts) make the same queries.
 */
import type {
  SqlDriverAdapter,
  SqlDriverAdapterFactory,
  Transaction,
} from "@prisma/driver-adapter-utils";
import type { DatabaseConnection, Dialect, Driver, Kysely, RawBuilder } from "kysely";
import { sql } from "kysely";
import type { CachedStatements } from "../../src/query-cache/statement-contract.ts";
import type { WriteOp } from "../workload/generate.ts";
import type { ReadSpec, Row, Table } from "../workload/oracle.ts";
import type { Mode } from "./app.ts";
import type { ReadResult } from "./queries.ts";
import type { StatementCounter } from "./statements.ts";

export const ORMS = ["drizzle", "kysely", "prisma"] as const;
export type Orm = (typeof ORMS)[number];

/** Each table's columns, in the order the reads select them. */
const COLUMNS: Record<Table, string[]> = {
  users: ["id", "firstName", "lastName", "email", "createdAt", "version"],
  orders: ["id", "userId", "total", "status", "createdAt", "version"],
};

/** What one ORM's application does, over its cached client and an uncached one. */
export interface OrmApp {
  read(spec: ReadSpec): Promise<ReadResult>;
  write(op: WriteOp, values: Row | undefined): Promise<void>;
  /** The row as the uncached client reads it. */
  fresh(table: Table, id: string): Promise<Row | undefined>;
  cache: CachedStatements;
  close(): Promise<void>;
}

/**
 * Resolves once `app`'s cache follows capture on both tables: an installation is followed
 * once the application queries one of its tables.
 */
export async function followCapture(app: OrmApp, orm: Orm): Promise<void> {
  await app.read({ kind: "item", table: "users", id: "" });
  await app.read({ kind: "item", table: "orders", id: "" });
  const until = Date.now() + 15_000;
  while ((app.cache.getStats().capture?.tables.length ?? 0) < 2) {
    if (Date.now() > until) throw new Error(`[bench] ${orm}: capture not followed`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves once the writes committed so far reach `app`'s cache (capture), at once otherwise. */
export async function catchUp(app: OrmApp, mode: Mode): Promise<void> {
  if (mode === "capture" && !(await app.cache.catchUp())) {
    throw new Error("[bench] capture could not catch up");
  }
}

// --- Kysely ----------------------------------------------------------------------------

// biome-ignore lint/suspicious/noExplicitAny: the workload's tables, typed loosely.
export type Db = Kysely<any>;

/**
 * The reads and writes through Kysely: `app` cached, `fresh` not; `orderKey` is how a
 * column is ordered by (by default plainly).
 */
export function kyselyQueries(
  app: Db,
  fresh: Db,
  orderKey: (column: string) => RawBuilder<unknown> = (column) => sql.ref(column),
): Pick<OrmApp, "read" | "write" | "fresh"> {
  const select = (k: Db, table: Table) => k.selectFrom(table).select(COLUMNS[table]);
  return {
    async read(spec) {
      const table = spec.view || spec.table === "users" ? "users" : "orders";
      if (spec.kind === "item") {
        const row = normal(await select(app, table).where("id", "=", spec.id).executeTakeFirst());
        if (!row) return { status: 404, body: undefined };
        if (spec.view) {
          row.orders = (await select(app, "orders").where("userId", "=", spec.id).execute()).map(
            normal,
          );
        }
        return { status: 200, body: row };
      }
      let q = select(app, table);
      const f = spec.filter;
      if (f)
        q = q.where(
          f.column,
          f.op === "eq" ? "=" : "like",
          f.op === "eq" ? f.value : `${f.value}%`,
        );
      for (const s of spec.sort) q = q.orderBy(orderKey(s.column), s.desc ? "desc" : "asc");
      const rows = (await q.limit(spec.limit).offset(spec.offset).execute()).map(normal) as Row[];
      if (spec.view && rows.length > 0) {
        const ids = rows.map((r) => r.id as string);
        const theirs = (await select(app, "orders").where("userId", "in", ids).execute()).map(
          normal,
        ) as Row[];
        for (const r of rows) r.orders = theirs.filter((o) => o.userId === r.id);
      }
      return { status: 200, body: { data: rows } };
    },
    async write(op, values) {
      if (op.method === "PATCH") {
        await app.updateTable(op.table).set(values!).where("id", "=", op.id).execute();
      } else if (op.method === "POST") {
        await app.insertInto(op.table).values(values!).execute();
      } else await app.deleteFrom(op.table).where("id", "=", op.id).execute();
    },
    fresh: async (table, id) =>
      normal(await select(fresh, table).where("id", "=", id).executeTakeFirst()),
  };
}

/** A dialect whose statements `counter` counts (the cache's misses and writes, reloads). */
export function countedDialect(dialect: Dialect, counter: StatementCounter): Dialect {
  return {
    createAdapter: () => dialect.createAdapter(),
    createIntrospector: (db) => dialect.createIntrospector(db),
    createQueryCompiler: () => dialect.createQueryCompiler(),
    createDriver(): Driver {
      const driver = dialect.createDriver();
      const wrapped = new WeakSet<DatabaseConnection>();
      return new Proxy(driver, {
        get(target, name) {
          if (name !== "acquireConnection") {
            // Bound to the driver itself: its methods read private fields.
            const value = Reflect.get(target, name, target);
            return typeof value === "function" ? value.bind(target) : value;
          }
          return async (...args: unknown[]) => {
            const connection = await (
              target.acquireConnection as (...a: unknown[]) => Promise<DatabaseConnection>
            ).apply(target, args);
            if (!wrapped.has(connection)) {
              wrapped.add(connection);
              const execute = connection.executeQuery.bind(connection);
              connection.executeQuery = ((query, ...rest: unknown[]) => {
                counter.count(query.sql);
                return (execute as (...a: unknown[]) => ReturnType<typeof execute>)(query, ...rest);
              }) as typeof connection.executeQuery;
            }
            return connection;
          };
        },
      });
    },
  };
}

// --- Prisma ----------------------------------------------------------------------------

// biome-ignore lint/suspicious/noExplicitAny: the generated client's types exist only once generated.
type Client = any;

/** The reads and writes through Prisma: `app` cached, `fresh` not (generated from the bench's schemas). */
export function prismaQueries(
  app: Client,
  fresh: Client,
): Pick<OrmApp, "read" | "write" | "fresh"> {
  const model = (p: Client, table: Table) => (table === "users" ? p.users : p.orders);
  return {
    async read(spec) {
      const table = spec.view || spec.table === "users" ? "users" : "orders";
      if (spec.kind === "item") {
        // findFirst, not findUnique: Prisma batches concurrent findUniques into one
        // statement, which would be counted for one request only.
        const row = normal(await model(app, table).findFirst({ where: { id: spec.id } }));
        if (!row) return { status: 404, body: undefined };
        if (spec.view) {
          row.orders = (await app.orders.findMany({ where: { userId: spec.id } })).map(normal);
        }
        return { status: 200, body: row };
      }
      const f = spec.filter;
      const rows = (
        await model(app, table).findMany({
          ...(f && {
            where: { [f.column]: f.op === "eq" ? f.value : { startsWith: f.value } },
          }),
          orderBy: spec.sort.map((s) => ({ [s.column]: s.desc ? "desc" : "asc" })),
          take: spec.limit,
          skip: spec.offset,
        })
      ).map(normal) as Row[];
      if (spec.view && rows.length > 0) {
        const ids = rows.map((r) => r.id as string);
        const theirs = (await app.orders.findMany({ where: { userId: { in: ids } } })).map(
          normal,
        ) as Row[];
        for (const r of rows) r.orders = theirs.filter((o) => o.userId === r.id);
      }
      return { status: 200, body: { data: rows } };
    },
    async write(op, values) {
      const m = model(app, op.table);
      // The ...Many forms: a row a write looks for may be gone (as Drizzle's, no error).
      if (op.method === "PATCH") await m.updateMany({ where: { id: op.id }, data: values });
      else if (op.method === "POST") await m.create({ data: values });
      else await m.deleteMany({ where: { id: op.id } });
    },
    fresh: async (table, id) => normal(await model(fresh, table).findFirst({ where: { id } })),
  };
}

/**
 * An adapter factory whose statements `counter` counts, in and out of transactions. The
 * adapter is the factory's own, its methods wrapped in place, so prismaCache still finds
 * the client behind it.
 */
export function countedFactory(
  factory: SqlDriverAdapterFactory,
  counter: StatementCounter,
): SqlDriverAdapterFactory {
  const count = <T extends SqlDriverAdapter | Transaction>(queryable: T): T => {
    const queryRaw = queryable.queryRaw.bind(queryable);
    const executeRaw = queryable.executeRaw.bind(queryable);
    queryable.queryRaw = (query) => {
      counter.count(query.sql);
      return queryRaw(query);
    };
    queryable.executeRaw = (query) => {
      counter.count(query.sql);
      return executeRaw(query);
    };
    return queryable;
  };
  return {
    provider: factory.provider,
    adapterName: factory.adapterName,
    async connect() {
      const adapter = count(await factory.connect());
      const start = adapter.startTransaction.bind(adapter);
      adapter.startTransaction = async (level) => count(await start(level));
      return adapter;
    },
  };
}

/** A row as the data API answers it: instants as ISO text, so they order as text. */
function normal(row: unknown): Row | undefined {
  if (!row) return undefined;
  const out: Row = {};
  for (const [k, v] of Object.entries(row as Row)) out[k] = v instanceof Date ? v.toISOString() : v;
  return out;
}
