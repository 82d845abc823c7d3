/**
 * edgecache/prisma: Prisma 7's queries cached by the rows, predicates and windows they
 * read, and invalidated exactly by writes through Prisma and, with change capture, around
 * it. `prismaCache(factory, options)` wraps a driver adapter factory
 * (`@prisma/adapter-better-sqlite3`, `@prisma/adapter-pg`, `@prisma/adapter-d1`) and
 * returns one; every statement Prisma's query compiler sends goes through edgecache's
 * statement cache, as raw SQL and Kysely's do (docs/guides/prisma.md).
 *
 * @example
 * import { PrismaBetterSqlite3 } from "@prisma/adapter-better-sqlite3";
 * import { PrismaClient } from "./generated/prisma/client.js";
 * import { prismaCache } from "edgecache/prisma";
 * import { memoryStore } from "edgecache/stores/memory";
 * const adapter = prismaCache(new PrismaBetterSqlite3({ url: "file:app.db" }), {
 *   tiers: [memoryStore()],
 * });
 * const prisma = new PrismaClient({ adapter });
 */
import type {
  ArgType,
  ColumnType,
  IsolationLevel,
  SqlDriverAdapter,
  SqlDriverAdapterFactory,
  SqlQuery,
  SqlResultSet,
  Transaction,
} from "@prisma/driver-adapter-utils";
import { badOption, checkOptionNames } from "../core/errors.ts";
import type { SqlDialect } from "../database/analysis/parse.ts";
import type { D1QueriesLike } from "../database/d1/binding.ts";
import { countingBinding } from "../database/d1/own-changes.ts";
import { sqlDriver } from "../database/drivers.ts";
import type { Conversion } from "../query-cache/columns.ts";
import { Session } from "../query-cache/session.ts";
import {
  type CachedStatements,
  type ResultForm,
  STATEMENT_CACHE_OPTIONS,
  type StatementCacheOptions,
  type StatementCacheStats,
} from "../query-cache/statement-contract.ts";
import { cachedStatements, StatementCache, UNREAD } from "../query-cache/statements.ts";
import { D1_PATCHABLE, d1Conversion, d1Result } from "./d1-results.ts";

export interface PrismaCacheOptions extends StatementCacheOptions {
  /**
   * The client whose change capture is followed and whose catalog is read. By default the
   * adapter's own (its better-sqlite3 `Database`, its node-postgres `Pool`, its D1
   * binding); give it when the adapter's cannot be reached, or `capture: false` to go by
   * tables alone.
   */
  client?: unknown;
  /** Prefix of this cache's keys ("prisma:"). */
  prefix?: string;
}

export type PrismaCacheStats = StatementCacheStats;

/** What a cached adapter factory offers beside Prisma's own API. */
export type PrismaCache = CachedStatements;

/** A Prisma driver adapter factory whose statements are cached; `cache` reaches its counters. */
export interface CachedAdapterFactory extends SqlDriverAdapterFactory {
  readonly cache: PrismaCache;
}

const COMPONENT = "prisma";

/** What a result keeps: Prisma reads its rows by position, with their columns' names and types. */
const RESULT_SET: ResultForm<SqlResultSet> = {
  kept: (result) => ({
    columnNames: result.columnNames,
    columnTypes: result.columnTypes,
    rows: result.rows,
    ...(result.lastInsertId !== undefined && { lastInsertId: result.lastInsertId }),
  }),
  restored: (kept) => kept as SqlResultSet,
};

/**
 * Wraps a Prisma 7 driver adapter factory so that Prisma's reads are answered from
 * edgecache and its writes invalidate exactly what they change. Reads inside a transaction
 * (interactive or batch) run uncached; its writes are seen when it commits.
 * `prisma.$disconnect()` stops following capture too.
 */
export function prismaCache(
  factory: SqlDriverAdapterFactory,
  options: PrismaCacheOptions,
): CachedAdapterFactory {
  checkOptionNames(COMPONENT, options, STATEMENT_CACHE_OPTIONS);
  if (typeof factory?.connect !== "function") {
    badOption(
      COMPONENT,
      "factory",
      "a Prisma driver adapter factory (new PrismaBetterSqlite3(...), new PrismaPg(...), new PrismaD1(...))",
      factory,
    );
  }
  if (typeof options !== "object" || options === null) {
    badOption(COMPONENT, "options", "an object", options);
  }
  const dialect = dialectOf(factory.provider);
  if (options.client !== undefined && !sqlDriver(options.client)) {
    badOption(
      COMPONENT,
      "client",
      "the client the adapter runs on: a better-sqlite3 Database, a node-postgres Pool or Client, a libSQL Client or a D1 binding",
      options.client,
    );
  }
  const d1 = D1.test(factory.adapterName);
  // The adapter made at each connection runs its statements, one after another connection.
  let inner: SqlDriverAdapter | undefined;
  let connections = 0;
  const zone = new SessionZone(() => void statements.invalidate().catch(() => {}));
  const statements = new StatementCache<SqlResultSet>(
    {
      component: COMPONENT,
      defaultPrefix: "prisma:",
      dialect,
      // A hot read reloaded in the background, as Prisma would run it.
      rerun: (sql, _params, keyed) => {
        if (!inner) throw new Error("[edgecache] [prisma] reloaded while disconnected");
        return inner.queryRaw({ sql, ...(keyed as QueryArgs) });
      },
      // Its better-sqlite3 adapter turns a DateTime stored as a number into ISO text; D1's
      // a number into text where it takes a column for text by its other values.
      converts: BETTER_SQLITE3.test(factory.adapterName)
        ? betterSqlite3Conversion
        : d1
          ? d1Conversion
          : true,
      // Its pg adapter's instants are right (and read) only while the session is in UTC.
      ...(PG.test(factory.adapterName) && { isoInstants: () => zone.utc }),
      form: {
        ...RESULT_SET,
        patchable: (result) =>
          patchable(result.columnTypes, d1 ? D1_PATCHABLE : PATCHABLE[dialect]),
        // D1's adapter types a result's columns by its values: a patched one is typed again.
        ...(d1 && { patched: d1Result }),
      },
    },
    options,
  );
  const cached: CachedAdapterFactory = {
    cache: cachedStatements(statements),
    provider: factory.provider,
    adapterName: factory.adapterName,
    async connect() {
      const adapter = await factory.connect();
      inner = adapter;
      connections++;
      if (PG.test(factory.adapterName)) void zone.read(adapter);
      // The application's client behind the adapter (its capture followed, its catalog
      // read), unless one is given; one edgecache does not know goes by tables.
      const client = options.client ?? underlying(adapter);
      const driver = client === undefined ? undefined : sqlDriver(client);
      if (driver) statements.attach(client, driver);
      // D1's adapter reads updateMany's count from meta.changes, which counts capture's
      // trigger rows too: its binding is given one that sends each write's own count.
      const held = adapter as { client?: unknown };
      if (driver?.kind === "d1" && held.client === client) {
        held.client = countingBinding(client as D1QueriesLike);
      }
      return new CachingAdapter(adapter, statements, dialect, zone, async () => {
        // Capture is followed while a connection is open.
        if (--connections === 0) await statements.close();
      });
    },
  };
  const shadow = (factory as { connectToShadowDb?: () => Promise<SqlDriverAdapter> })
    .connectToShadowDb;
  // Prisma's migrations use a shadow database of their own: not cached.
  if (shadow) Object.assign(cached, { connectToShadowDb: () => shadow.call(factory) });
  return cached;
}

type QueryArgs = Pick<SqlQuery, "args" | "argTypes">;

function dialectOf(provider: unknown): SqlDialect {
  if (provider === "sqlite") return "sqlite";
  if (provider === "postgres") return "postgres";
  return badOption(
    COMPONENT,
    "factory",
    "an adapter of SQLite, D1 or PostgreSQL (its `provider` is sqlite or postgres)",
    provider,
  );
}

/**
 * The adapter's own client: node-postgres' `underlyingDriver()`, or its `client` field
 * (better-sqlite3's `Database`; D1's binding, where D1's HTTP adapter holds an HTTP client
 * edgecache does not know, so that one goes by tables).
 */
function underlying(adapter: SqlDriverAdapter): unknown {
  const a = adapter as { underlyingDriver?: () => unknown; client?: unknown };
  return typeof a.underlyingDriver === "function" ? a.underlyingDriver() : a.client;
}

/**
 * The adapter with its statements through the statement cache: outside a transaction its
 * reads are looked up and its writes settled (a `BEGIN` of the application's own, on a
 * single-connection driver, opens a transaction as Prisma's do).
 */
class CachingAdapter implements SqlDriverAdapter {
  readonly #inner: SqlDriverAdapter;
  readonly #statements: StatementCache<SqlResultSet>;
  readonly #dialect: SqlDialect;
  readonly #session: Session;
  readonly #disposed: () => Promise<void>;
  readonly #zone: SessionZone;
  readonly provider: SqlDriverAdapter["provider"];
  readonly adapterName: string;
  getConnectionInfo?: SqlDriverAdapter["getConnectionInfo"];

  constructor(
    inner: SqlDriverAdapter,
    statements: StatementCache<SqlResultSet>,
    dialect: SqlDialect,
    zone: SessionZone,
    disposed: () => Promise<void>,
  ) {
    this.#inner = inner;
    this.#zone = zone;
    this.#disposed = disposed;
    this.#statements = statements;
    this.#dialect = dialect;
    this.#session = new Session(statements);
    this.provider = inner.provider;
    this.adapterName = inner.adapterName;
    if (inner.getConnectionInfo) this.getConnectionInfo = () => inner.getConnectionInfo!();
  }

  queryRaw(query: SqlQuery): Promise<SqlResultSet> {
    this.#zone.heard(query.sql);
    const run = () => this.#inner.queryRaw(query);
    return this.#session.statement(query.sql, run, () =>
      this.#statements.read(query.sql, comparedArgs(query, this.#dialect), run, keyOf(query)),
    );
  }

  executeRaw(query: SqlQuery): Promise<number> {
    this.#zone.heard(query.sql);
    const run = () => this.#inner.executeRaw(query);
    return this.#session.statement(query.sql, run, () =>
      this.#statements.write(query.sql, query.args, run),
    );
  }

  executeScript(script: string): Promise<void> {
    this.#zone.heard(script);
    // Several statements: the tables they write cannot all be told, so every read goes.
    return this.#statements.write(script, [], () => this.#inner.executeScript(script));
  }

  async startTransaction(isolationLevel?: IsolationLevel): Promise<Transaction> {
    const tx = await this.#inner.startTransaction(isolationLevel);
    return new CachingTransaction(tx, new Session(this.#statements), this.#zone);
  }

  async dispose(): Promise<void> {
    await this.#disposed();
    await this.#inner.dispose();
  }
}

/**
 * One of Prisma's transactions: its statements run as they are (its reads may see its own
 * writes), and what its writes named is settled once it commits, by the `COMMIT` Prisma
 * sends or by `commit()` where the adapter commits itself.
 */
class CachingTransaction implements Transaction {
  readonly #inner: Transaction;
  readonly #session: Session;
  readonly provider: Transaction["provider"];
  readonly adapterName: string;
  readonly options: Transaction["options"];
  createSavepoint?: Transaction["createSavepoint"];
  rollbackToSavepoint?: Transaction["rollbackToSavepoint"];
  releaseSavepoint?: Transaction["releaseSavepoint"];

  readonly #zone: SessionZone;

  constructor(inner: Transaction, session: Session, zone: SessionZone) {
    this.#inner = inner;
    this.#zone = zone;
    this.#session = session;
    session.begin();
    this.provider = inner.provider;
    this.adapterName = inner.adapterName;
    this.options = inner.options;
    // Only what the adapter has: Prisma asks for nested transactions by their presence.
    for (const name of ["createSavepoint", "rollbackToSavepoint", "releaseSavepoint"] as const) {
      const step = inner[name];
      if (step) this[name] = (savepoint: string) => step.call(inner, savepoint);
    }
  }

  queryRaw(query: SqlQuery): Promise<SqlResultSet> {
    this.#zone.heard(query.sql);
    const run = () => this.#inner.queryRaw(query);
    return this.#session.statement(query.sql, run, run);
  }

  executeRaw(query: SqlQuery): Promise<number> {
    this.#zone.heard(query.sql);
    const run = () => this.#inner.executeRaw(query);
    return this.#session.statement(query.sql, run, run);
  }

  async commit(): Promise<void> {
    // Empty when Prisma's `COMMIT` went through `executeRaw` and settled it already.
    const written = this.#session.end();
    try {
      await this.#inner.commit();
    } finally {
      // Also after a failure: a driver error may come after the commit.
      await this.#session.settle(written);
    }
  }

  async rollback(): Promise<void> {
    const written = this.#session.end();
    try {
      await this.#inner.rollback();
    } finally {
      // An adapter without transactions (D1's: `usePhantomQuery`) ran each statement as it
      // came and undoes none: what they wrote stands, and is settled as if committed.
      if (this.options.usePhantomQuery) await this.#session.settle(written);
    }
  }
}

/** A statement's cache key beside its SQL: its arguments and how Prisma typed them. */
function keyOf(query: SqlQuery): QueryArgs {
  return { args: query.args, argTypes: query.argTypes };
}

/**
 * The arguments as the database compares them, for reading what a select depends on.
 * Prisma gives some in another form than the adapter binds (a boolean SQLite stores as 1,
 * a date or a Decimal as a string the adapter converts): those are UNREAD, and a condition
 * on them matches any row.
 */
function comparedArgs(query: SqlQuery, dialect: SqlDialect): unknown[] {
  return query.args.map((arg, i) => compared(arg, query.argTypes[i], dialect));
}

function compared(arg: unknown, type: ArgType | undefined, dialect: SqlDialect): unknown {
  if (arg === null) return null;
  if (type?.arity !== "scalar") return UNREAD;
  switch (type.scalarType) {
    case "string":
    case "enum":
    case "uuid":
      return typeof arg === "string" ? arg : UNREAD;
    case "int":
    case "bigint": {
      const n = typeof arg === "string" && arg.trim() !== "" ? Number(arg) : arg;
      return typeof n === "number" && Number.isSafeInteger(n) ? n : UNREAD;
    }
    case "float":
    // A raw query's JavaScript number ($queryRaw, $queryRawUnsafe) comes typed decimal; the
    // adapters bind a number as it is (a Decimal comes as a string: the adapter parses it).
    case "decimal":
      return typeof arg === "number" && Number.isFinite(arg) ? arg : UNREAD;
    case "boolean":
      if (typeof arg !== "boolean") return UNREAD;
      return dialect === "sqlite" ? (arg ? 1 : 0) : arg;
    default:
      return UNREAD;
  }
}

const BETTER_SQLITE3 = /^@prisma\/adapter-better-sqlite3\b/;
const PG = /^@prisma\/adapter-pg\b/;

/**
 * Whether the pg adapter's sessions are in UTC: it gives an instant as the server's text
 * with a `T` and the offset replaced by `+00:00`, the instant only then. Read from the
 * server at each connect (its TimeZone, as the server, database, role or the pool's
 * options set it for every connection); false for good once a statement through the
 * adapter names the time zone (a `SET` on one pooled connection, even `AT TIME ZONE`),
 * when every cached read goes (`lost`).
 */
class SessionZone {
  utc = false;
  #heard = false;
  readonly #lost: () => void;

  constructor(lost: () => void) {
    this.#lost = lost;
  }

  async read(adapter: SqlDriverAdapter): Promise<void> {
    try {
      const { rows } = await adapter.queryRaw({
        sql: "SELECT current_setting('TimeZone')",
        args: [],
        argTypes: [],
      });
      const zone = rows[0]?.[0];
      if (!this.#heard) this.utc = typeof zone === "string" && UTC.has(zone.toLowerCase());
    } catch {
      // Unknown: instants are not read, as before.
    }
  }

  heard(sql: string): void {
    if (!/time\s*zone/i.test(sql)) return;
    const was = this.utc;
    this.#heard = true;
    this.utc = false;
    if (was) this.#lost();
  }
}

/** PostgreSQL's names of UTC (lower case). */
const UTC = new Set(
  ["utc", "etc/utc", "uct", "etc/uct", "universal", "etc/universal", "zulu", "etc/zulu"].concat(
    ["gmt", "gmt0", "gmt+0", "gmt-0", "greenwich"].flatMap((z) => [z, `etc/${z}`]),
  ),
);

/**
 * What @prisma/adapter-better-sqlite3 converts of a column, by its declared type (its
 * mapDeclType and mapRow): a DATETIME's or TIMESTAMP's numbers to ISO text, an integer
 * type's fractions cut and bigints made numbers; other values come as stored.
 */
function betterSqlite3Conversion(declared: string): Conversion {
  const type = declared.toUpperCase();
  if (type === "DATETIME" || type === "TIMESTAMP") return "numbers-as-iso";
  return INTEGER_TYPES.has(type) ? "any" : "none";
}

const INTEGER_TYPES = new Set([
  "TINYINT",
  "SMALLINT",
  "MEDIUMINT",
  "INT",
  "INTEGER",
  "SERIAL",
  "INT2",
  "BIGINT",
  "UNSIGNED BIG INT",
  "INT8",
]);

/**
 * Column types whose values capture records as the adapter returns them. On SQLite a
 * DateTime (a DATETIME column) too: its text comes as stored, and a value that may be a
 * converted number is told by its form (patch.ts, SqlTable's `numberTexts`).
 */
const PATCHABLE: Record<SqlDialect, ReadonlySet<ColumnType>> = {
  // 0 Int32, 1 Int64, 2 Float, 3 Double, 5 Boolean, 6 Character, 7 Text, 10 DateTime,
  // 12 Enum, 15 Uuid
  sqlite: new Set<ColumnType>([0, 1, 2, 3, 5, 6, 7, 10, 12, 15]),
  // node-postgres gives int8 as text, which capture records as a number. A DateTime comes
  // as text read only in a UTC session (SessionZone, SqlTable's `isoInstants`).
  postgres: new Set<ColumnType>([0, 2, 3, 5, 6, 7, 10, 12, 15]),
};

/**
 * The adapter that types a column by the values it returns (see d1-results.ts): its results
 * are typed again when patched.
 */
const D1 = /^@prisma\/adapter-d1\b/;

/**
 * Whether a result may be patched in place from captured rows: only when each column's
 * values come back from the adapter as capture records them (not dates, decimals, JSON or
 * bytes, which the adapters convert), or as the adapter's result form makes them again.
 */
function patchable(types: readonly ColumnType[], safe: ReadonlySet<ColumnType>): boolean {
  return types.every((t) => safe.has(t));
}
