/**
 * bench:orm-exact's Kysely and Prisma applications: the same reads and writes as the
 * Drizzle one (queries.ts), made through `edgecache/kysely` over a SQLite file
 * (better-sqlite3) or PostgreSQL (node-postgres), and through `edgecache/prisma` over the
 * same two with Prisma 7's adapters; the data and the writes around the ORM are those of
 * databases.ts. Each is a Contestant, so run.ts drives them as it drives Drizzle's.
 */
import { PrismaBetterSqlite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaPg } from "@prisma/adapter-pg";
import type {
  SqlDriverAdapter,
  SqlDriverAdapterFactory,
  Transaction,
} from "@prisma/driver-adapter-utils";
import Database from "better-sqlite3";
import {
  type DatabaseConnection,
  type Dialect,
  type Driver,
  Kysely,
  PostgresDialect,
  SqliteDialect,
  sql,
} from "kysely";
import pg from "pg";
import { type CachedDialect, kyselyCache } from "../../src/kysely/index.ts";
import { type CachedAdapterFactory, prismaCache } from "../../src/prisma/index.ts";
import type { CachedStatements } from "../../src/query-cache/statements.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { type AnyPrismaClient, generatedClient } from "../../test/prisma/client.ts";
import type { WriteOp } from "../workload/generate.ts";
import type { ReadSpec, Row, Table } from "../workload/oracle.ts";
import type { Mode } from "./app.ts";
import type { Contestant } from "./contestant.ts";
import type { BenchDatabase } from "./databases.ts";
import { aroundStatement, type ReadResult } from "./queries.ts";
import { type StatementCounter, Statements } from "./statements.ts";

export const ORMS = ["drizzle", "kysely", "prisma"] as const;
export type Orm = (typeof ORMS)[number];

/** Each table's columns, in the order the reads select them. */
const COLUMNS: Record<Table, string[]> = {
  users: ["id", "firstName", "lastName", "email", "createdAt", "version"],
  orders: ["id", "userId", "total", "status", "createdAt", "version"],
};

/** What one ORM's application does, over its cached client and an uncached one. */
interface OrmApp {
  read(spec: ReadSpec): Promise<ReadResult>;
  write(op: WriteOp, values: Row | undefined): Promise<void>;
  /** The row as the uncached client reads it. */
  fresh(table: Table, id: string): Promise<Row | undefined>;
  cache: CachedStatements;
  close(): Promise<void>;
}

/** `orm` (Kysely or Prisma) in `mode` over `db`, in this process; closing it closes `db`. */
export async function openOrm(
  orm: Exclude<Orm, "drizzle">,
  db: BenchDatabase,
  mode: Exclude<Mode, "table-keyed">,
  pgCollateC: boolean,
): Promise<Contestant> {
  const statements = new Statements();
  let app: OrmApp;
  try {
    if (mode === "capture") await db.installCapture();
    app =
      orm === "kysely"
        ? kyselyApp(db, mode, statements, pgCollateC)
        : await prismaApp(db, mode, statements);
    if (mode === "capture") {
      // An installation is followed once the application queries one of its tables.
      await app.read({ kind: "item", table: "users", id: "" });
      await app.read({ kind: "item", table: "orders", id: "" });
      const until = Date.now() + 15_000;
      while ((app.cache.getStats().capture?.tables.length ?? 0) < 2) {
        if (Date.now() > until) throw new Error(`[bench] ${orm}: capture not followed`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  } catch (err) {
    await db.close();
    throw err;
  }
  const catchUp = async () => {
    if (mode === "capture" && !(await app.cache.catchUp())) {
      throw new Error("[bench] capture could not catch up");
    }
  };
  return {
    read: (spec) => statements.within(() => app.read(spec)),
    async write(op, values, around) {
      if (!around) return app.write(op, values);
      const { sql, params } = aroundStatement(op, values);
      await db.around(sql, params, statements);
      await catchUp();
    },
    fresh: (table, id) => app.fresh(table, id),
    entries: async () => app.cache.getStats().keys,
    counts: async () => ({
      statements: statements.total,
      capture: statements.capture,
      removed: app.cache.engine.stats().invalidations,
      stats: app.cache.getStats(),
    }),
    catchUp,
    async close() {
      try {
        await app.close();
      } finally {
        await db.close();
      }
    },
  };
}

// --- Kysely ----------------------------------------------------------------------------

// biome-ignore lint/suspicious/noExplicitAny: the workload's tables, typed loosely.
type Db = Kysely<any>;

function kyselyApp(
  db: BenchDatabase,
  mode: Mode,
  counter: StatementCounter,
  pgCollateC: boolean,
): OrmApp {
  const where = db.location;
  const closers: (() => Promise<void>)[] = [];
  const dialectOn = (): { dialect: Dialect; client: unknown } => {
    if ("path" in where) {
      const database = new Database(where.path);
      database.pragma("busy_timeout = 10000");
      return { dialect: new SqliteDialect({ database }), client: database };
    }
    const pool = new pg.Pool({ connectionString: where.url, max: 4 });
    return { dialect: new PostgresDialect({ pool }), client: pool };
  };
  const mine = dialectOn();
  const dialect = kyselyCache(counted(mine.dialect, counter), {
    client: mine.client,
    tiers: [memoryStore()],
    capture: mode === "capture",
  });
  // On PostgreSQL the tables are named with their schema (capture names them so).
  const scoped = (k: Db) => ("path" in where ? k : k.withSchema(where.schema));
  const appRoot: Db = new Kysely({ dialect });
  const freshRoot: Db = new Kysely({ dialect: dialectOn().dialect });
  const app = scoped(appRoot);
  const fresh = scoped(freshRoot);
  closers.push(
    () => appRoot.destroy(),
    () => freshRoot.destroy(),
  );
  const postgres = !("path" in where);
  const orderKey = (column: string) =>
    postgres && pgCollateC && !["total", "version", "createdAt"].includes(column)
      ? sql`${sql.ref(column)} collate "C"`
      : sql.ref(column);
  const select = (k: Db, table: Table) => k.selectFrom(table).select(COLUMNS[table]);
  return {
    cache: (dialect as CachedDialect).cache,
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
    async close() {
      for (const close of closers) await close();
    },
  };
}

/** A dialect whose statements `counter` counts (the cache's misses and writes, reloads). */
function counted(dialect: Dialect, counter: StatementCounter): Dialect {
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

const SCHEMAS = new URL("./prisma/", import.meta.url).pathname;

async function prismaApp(
  db: BenchDatabase,
  mode: Mode,
  counter: StatementCounter,
): Promise<OrmApp> {
  const where = db.location;
  const sqlite = "path" in where;
  const PrismaClient = await generatedClient(
    `${SCHEMAS}schema.${sqlite ? "sqlite" : "postgresql"}.prisma`,
  );
  const factory = (): SqlDriverAdapterFactory =>
    "path" in where
      ? new PrismaBetterSqlite3({ url: `file:${where.path}`, timeout: 10_000 })
      : new PrismaPg({ connectionString: where.url, max: 4 }, { schema: where.schema });
  const adapter = prismaCache(countedFactory(factory(), counter), {
    tiers: [memoryStore()],
    capture: mode === "capture",
  });
  const app: AnyPrismaClient = new PrismaClient({ adapter });
  const fresh: AnyPrismaClient = new PrismaClient({ adapter: factory() });
  const model = (p: AnyPrismaClient, table: Table) => (table === "users" ? p.users : p.orders);
  return {
    cache: (adapter as CachedAdapterFactory).cache,
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
    async close() {
      await app.$disconnect();
      await fresh.$disconnect();
    },
  };
}

/** An adapter factory whose statements `counter` counts, in and out of transactions. */
function countedFactory(
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
