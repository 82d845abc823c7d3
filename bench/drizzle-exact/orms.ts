/**
 * bench:orm-exact's Kysely and Prisma applications in this process: the same reads and
 * writes as the Drizzle one (orm-queries.ts), made through `edgecache/kysely` over a SQLite
 * file (better-sqlite3) or PostgreSQL (node-postgres), and through `edgecache/prisma` over
 * the same two with Prisma 7's adapters; the data and the writes around the ORM are those of
 * databases.ts. Each is a Contestant, so run.ts drives them as it drives Drizzle's. On D1
 * they run inside workerd (d1.ts).
 */
import { PrismaBetterSqlite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaPg } from "@prisma/adapter-pg";
import type { SqlDriverAdapterFactory } from "@prisma/driver-adapter-utils";
import Database from "better-sqlite3";
import { type Dialect, Kysely, PostgresDialect, SqliteDialect, sql } from "kysely";
import pg from "pg";
import { type CachedDialect, kyselyCache } from "../../src/kysely/index.ts";
import { type CachedAdapterFactory, prismaCache } from "../../src/prisma/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import { type AnyPrismaClient, generatedClient } from "../../test/prisma/client.ts";
import type { Mode } from "./app.ts";
import type { Contestant } from "./contestant.ts";
import type { BenchDatabase } from "./databases.ts";
import {
  catchUp,
  countedDialect,
  countedFactory,
  type Db,
  followCapture,
  kyselyQueries,
  type Orm,
  type OrmApp,
  prismaQueries,
} from "./orm-queries.ts";
import { aroundStatement } from "./queries.ts";
import { type StatementCounter, Statements } from "./statements.ts";

export { ORMS, type Orm } from "./orm-queries.ts";

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
    if (mode === "capture") await followCapture(app, orm);
  } catch (err) {
    await db.close();
    throw err;
  }
  const caughtUp = () => catchUp(app, mode);
  return {
    read: (spec) => statements.within(() => app.read(spec)),
    async write(op, values, around) {
      if (!around) return app.write(op, values);
      const { sql, params } = aroundStatement(op, values);
      await db.around(sql, params, statements);
      await caughtUp();
    },
    fresh: (table, id) => app.fresh(table, id),
    entries: async () => app.cache.getStats().keys,
    counts: async () => ({
      statements: statements.total,
      capture: statements.capture,
      removed: app.cache.engine.stats().invalidations,
      stats: app.cache.getStats(),
    }),
    catchUp: caughtUp,
    async close() {
      try {
        await app.close();
      } finally {
        await db.close();
      }
    },
  };
}

function kyselyApp(
  db: BenchDatabase,
  mode: Mode,
  counter: StatementCounter,
  pgCollateC: boolean,
): OrmApp {
  const where = db.location;
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
  const dialect = kyselyCache(countedDialect(mine.dialect, counter), {
    client: mine.client,
    tiers: [memoryStore()],
    capture: mode === "capture",
  });
  // On PostgreSQL the tables are named with their schema (capture names them so).
  const scoped = (k: Db) => ("path" in where ? k : k.withSchema(where.schema));
  const appRoot: Db = new Kysely({ dialect });
  const freshRoot: Db = new Kysely({ dialect: dialectOn().dialect });
  const postgres = !("path" in where);
  const orderKey = (column: string) =>
    postgres && pgCollateC && !["total", "version", "createdAt"].includes(column)
      ? sql`${sql.ref(column)} collate "C"`
      : sql.ref(column);
  return {
    ...kyselyQueries(scoped(appRoot), scoped(freshRoot), orderKey),
    cache: (dialect as CachedDialect).cache,
    async close() {
      await appRoot.destroy();
      await freshRoot.destroy();
    },
  };
}

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
  return {
    ...prismaQueries(app, fresh),
    cache: (adapter as CachedAdapterFactory).cache,
    async close() {
      await app.$disconnect();
      await fresh.$disconnect();
    },
  };
}
