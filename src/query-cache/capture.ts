import type { Cache } from "../core/cache/index.ts";
import {
  type CapturedChange,
  type CaptureFeed,
  type CaptureFollower,
  type CarryingFeed,
  followCapture,
  isCarrying,
  unref,
} from "../core/capture.ts";
import type { PlanSchema, WriteEvent } from "../core/deps/planner.ts";
import { type CaptureDrainingLog, drainsCapture } from "../log/contract.ts";
import type { OutsideWrites } from "../log/outside-writes.ts";
import { comparableEvent } from "../sql/analysis/forms.ts";
import type { SqlColumnKind } from "../sql/analysis/shapes.ts";
import type { SqlClient } from "../sql/client.ts";
import { clientKind } from "../sql/client-kind.ts";
import type { D1DatabaseLike } from "../sql/d1/binding.ts";
import { D1_INTERNAL } from "../sql/d1/capture.ts";
import { runStepsAsync } from "../sql/driver.ts";
import { sqlDriver } from "../sql/drivers.ts";
import { nodeRequire } from "../sql/node-require.ts";
import { atMs, captureSchema, EXACT_FLOATS, postgresCaptureFeed } from "../sql/postgres/capture.ts";
import { postgresDialect } from "../sql/postgres/dialect.ts";
import { type ForeignKeyAction, literal, quote } from "../sql/schema.ts";
import {
  type SqliteExecutor,
  sqliteCapturedTables,
  sqliteCaptureInstalled,
  sqliteChangesPending,
  sqliteExecutorFeed,
} from "../sql/sqlite/capture.ts";
import { sqliteDialect } from "../sql/sqlite/dialect.ts";
import {
  type OwnConnection,
  openBetterSqliteCopy,
  openLibsqlCopy,
  ownConnection,
} from "../sql/sqlite/own-connection.ts";
import { plainTableName } from "./columns.ts";

/**
 * Change capture behind a query cache's client (the Drizzle adapter's `db.$client`, the raw
 * SQL entry's client): when `npx edgecache capture install` has put its triggers in the
 * database, every change to a captured table, made through the cache or around it (another
 * connection, psql, the sqlite3 shell), reaches the cache's engine with its old and new
 * rows, planned by primary key like the data API's writes. A mutation through the cache
 * then waits for its own changes to be applied (`settled`) instead of emptying its tables.
 *
 * The client is told by its shape (src/sql/client-kind.ts): a libSQL `Client`, a
 * postgres.js `Sql`, a better-sqlite3 `Database`, or a D1 binding whose cache follows a
 * log that D1's capture drain feeds (`durableChangeLog`: the change log's Durable Object
 * drains the change table, and a mutation asks it to drain at once). Others (node-postgres)
 * stay at table level. Installations are looked for every REFRESH_MS, so an install (or a
 * table added to it) is picked up while running; on D1, when used and at most every
 * D1_REFRESH_MS (no timer: a Worker's outlives no request, and D1 bills rows read).
 */

/** PostgreSQL: changes looked at per change table when asked whether one waits unapplied. */
const PENDING_LOOK = 50;
/** How often the catalog is read again (installs, captured tables, primary keys), ms. */
const REFRESH_MS = 1000;
/** D1: how long a catalog read holds before a call reads it again, ms. */
const D1_REFRESH_MS = 5000;
/**
 * The magnitudes of D1's captured REALs taken as exact. workerd's SQLite writes
 * `printf('%!.17g')` an ulp off for some numbers from about 1e119 and below about 1e-83
 * (found with random numbers of every exponent; none wrong among 116,000 from 1e-82 to
 * 1e118, prices with cents included); D1 itself runs another build, so the band keeps a
 * wide margin. A fraction outside it is not patched.
 */
const EXACT_D1_REALS: readonly [number, number] = [1e-60, 1e60];

/** A captured table as the planner needs it. */
interface TableShape {
  /** Its primary key when it is one column; otherwise changes fall back to the table. */
  primaryKey?: string;
  columns: readonly string[];
}

/** One capture installation: a change table and the tables whose triggers feed it. */
interface Installation {
  id: string;
  /**
   * Its triggers record REALs with every digit (SQLite; see recordsExactReals), or do so
   * for numbers of a bounded size (D1: see EXACT_D1_REALS).
   */
  exactReals?: boolean | "bounded";
  /** By Drizzle's name of the table (`schema.table` outside PostgreSQL's `public`). */
  tables: Map<string, TableShape>;
  /**
   * Follows its change table into `engine`, events named as Drizzle names their tables,
   * then given to `convert`.
   */
  follow(
    engine: Cache,
    shapes: (table: string) => TableShape | undefined,
    logger: { warn(m: string): void },
    convert: (event: WriteEvent) => WriteEvent,
  ): CaptureFollower;
}

/** What a kind of client tells of capture. */
interface CaptureDriver {
  installations(): Promise<Installation[]>;
  /**
   * The database's foreign keys with their actions, tables by Drizzle's names; those of the
   * PostgreSQL `schemas` given (Drizzle's `schema.table`, `public` for a bare name).
   */
  foreignKeys(schemas: readonly string[]): Promise<ForeignKeyAction[]>;
  /**
   * Read the catalog again only when the capture is used, after this many ms, instead of on
   * a timer (D1 on Workers).
   */
  lazyMs?: number;
  /**
   * The engine's log orders captured records itself (D1: the log's object drains the
   * change table, and marks what it drains ordered when no data API write intervened).
   */
  ordersOnLog?: boolean;
  /**
   * Given when the change table's changes are applied in an order patches may follow
   * (SQLite writes one transaction at a time; see PostgreSQL's) and this process follows
   * it itself: whether one waits there (one of `tables`, by Drizzle's names, when given),
   * not counting those `applied` says are applied already (the installation's id, then
   * the change), whose rows only wait to be deleted.
   */
  pendingInOrder?: (
    tables?: readonly string[],
    applied?: (installation: string, change: { seq: number; at: number }) => boolean,
  ) => Promise<boolean>;
  /** Statements run on a connection of the driver's own (SQLite: see ownConnection). */
  statements?(): number;
  /** Closes what the driver opened itself. */
  close?(): Promise<void>;
}

/** What `getStats().capture` says. */
export interface CaptureStats {
  /** Captured tables this node follows as the consumer of their change table. */
  tables: string[];
  /** Changes applied so far. */
  applied: number;
  /** Capture lag, from the database's record to applied here, ms (median and 99th percentile). */
  lagP50?: number;
  lagP99?: number;
  /**
   * Statements capture ran on a connection of its own (SQLite files: every look, read,
   * delete and lease renewal), so they can be weighed against the application's.
   */
  statements?: number;
}

/** Whether an error says the application closed its client: then capture stops too. */
function closedClient(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  return (
    e?.code === "CONNECTION_ENDED" ||
    e?.code === "CLIENT_CLOSED" ||
    /database connection is not open|client is closed/i.test(String(e?.message ?? ""))
  );
}

interface CaptureOptions {
  setSchema?: (schema: PlanSchema) => void;
  /** Receives the database's foreign keys at each look at the catalog (see Cascades). */
  foreignKeys?: (actions: ForeignKeyAction[]) => void;
  /** False: only the catalog is read (foreign keys), no change table is followed. */
  follow?: boolean;
  /** PostgreSQL: schemas whose foreign keys are read, besides those of the tables queried. */
  schemas?: () => Iterable<string>;
  /**
   * The column kinds the cache's planner compares a table's values by: each captured change
   * is put in those forms (see comparableEvent) before the engine applies it.
   */
  kinds?: (table: string) => Readonly<Record<string, SqlColumnKind>> | undefined;
  logger: { warn(m: string): void };
}

/**
 * Follows the capture installations of the database behind `client` into `engine`, or
 * returns undefined when the client is none this knows. `setSchema` receives the captured
 * tables' primary keys (left out when the engine is shared, whose schema is its owner's).
 */
export function startCapture(
  client: unknown,
  engine: Cache,
  options: CaptureOptions,
): QueryCapture | undefined {
  const driver = captureDriver(client, engine);
  return driver && new QueryCapture(driver, engine, options);
}

function captureDriver(client: unknown, engine: Cache): CaptureDriver | undefined {
  switch (clientKind(client)) {
    case "postgres.js":
      return postgresDriver(client as unknown as PostgresSql);
    // Capture's statements run on a connection of edgecache's own, never the application's
    // (see ownConnection).
    case "libsql":
      return sqliteDriver(
        ownConnection(() => openLibsqlCopy(client)),
        appReads(client),
      );
    case "better-sqlite3":
      return sqliteDriver(
        ownConnection(() => openBetterSqliteCopy(client)),
        appReads(client),
      );
    case "d1": {
      const log = engine.log;
      return drainsCapture(log) ? d1Driver(client as D1DatabaseLike, log) : undefined;
    }
    default:
      return undefined;
  }
}

/** The follower of every installation, and what the transactions ask of it. */
export class QueryCapture {
  #driver: CaptureDriver;
  #engine: Cache;
  #setSchema: ((schema: PlanSchema) => void) | undefined;
  #foreignKeys: ((actions: ForeignKeyAction[]) => void) | undefined;
  #convert: (event: WriteEvent) => WriteEvent;
  #logger: { warn(m: string): void };
  #followers = new Map<string, { follower: CaptureFollower; tables: Set<string> }>();
  #shapes = new Map<string, TableShape>();
  #found: Installation[] = [];
  #wanted = new Set<string>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #lastError = "";
  /** When the catalog was last read (lazy drivers), ms. */
  #readAt = Number.NEGATIVE_INFINITY;
  /** The first look at the catalog, and then the latest one. */
  ready: Promise<void>;
  /** The first look at the catalog (resolved at once by a lazy driver's). */
  readonly started: Promise<void>;
  #follow: boolean;
  #knownSchemas: () => Iterable<string>;

  constructor(driver: CaptureDriver, engine: Cache, options: CaptureOptions) {
    this.#driver = driver;
    this.#follow = options.follow ?? true;
    this.#knownSchemas = options.schemas ?? (() => []);
    this.#engine = engine;
    this.#setSchema = options.setSchema;
    this.#foreignKeys = options.foreignKeys;
    const kinds = options.kinds;
    this.#convert = kinds ? (e) => comparableEvent(e, kinds(e.table)) : (e) => e;
    this.#logger = options.logger;
    // A lazy driver reads the catalog when first used: on Workers, inside the request that
    // waits for it (a promise left behind by an ended request never settles).
    this.ready = driver.lazyMs === undefined ? this.#refresh() : Promise.resolve();
    this.started = this.ready;
  }

  /**
   * Whether every one of `tables` is captured and this node consumes its change table:
   * then its changes reach the planner here, and a mutation need not empty the tables.
   */
  covers(tables: readonly string[]): boolean {
    if (this.#closed || tables.length === 0) return false;
    return tables.every((t) => this.#followerOf(t) !== undefined);
  }

  /**
   * Resolves true once the changes to `tables` committed before the call are applied to
   * the engine (the mutation's own among them); false when that cannot be promised (a
   * table not captured, another node consumes, the database out of reach), and the caller
   * then invalidates the tables.
   */
  async settled(tables: readonly string[]): Promise<boolean> {
    if (this.#driver.lazyMs !== undefined) await this.#fresh();
    if (!this.covers(tables)) return false;
    const followers = new Set(tables.map((t) => this.#followerOf(t)!));
    const done = await Promise.all([...followers].map((f) => f.sync()));
    return done.every(Boolean);
  }

  /** Resolves once every captured change committed before the call is applied (true), or false. */
  async catchUp(): Promise<boolean> {
    await this.#fresh();
    const all = [...this.#followers.values()].map((f) => f.follower);
    if (all.length === 0) return false;
    return (await Promise.all(all.map((f) => f.sync()))).every(Boolean);
  }

  /**
   * The captured writes as the adapter's own in-process log asks of them, when this process
   * consumes the change table itself (SQLite, PostgreSQL): their records are then ordered
   * and may patch cached results, and a load is exact when no change waits. Undefined
   * otherwise (D1's changes go through its log's object).
   */
  orderedWrites(): OutsideWrites | undefined {
    const pending = this.#driver.pendingInOrder;
    if (!pending) return undefined;
    return {
      active: () => {
        if (this.#closed) return false;
        for (const { follower } of this.#followers.values()) {
          if (follower.installed && follower.leading) return true;
        }
        return false;
      },
      pending: (tables) =>
        pending(tables, (id, change) => {
          const follower = this.#followers.get(id)?.follower;
          return follower?.applied?.(change) === true;
        }),
      ordered: true,
    };
  }

  /**
   * Whether every installation's triggers record PostgreSQL's floats with every digit and
   * timestamps they cannot write as ISO text (infinity, BC) as text the planner refuses:
   * only then are "float" and "instant" columns compared (installs from before both were
   * so are not; install again).
   */
  recordsForms(): boolean {
    return this.#found.length > 0 && this.#found.every((i) => i.exactReals === true);
  }

  /** Whether captured records are ordered by the engine's log itself (D1). */
  ordersOnLog(): boolean {
    return this.#driver.ordersOnLog === true;
  }

  /**
   * For which numbers a captured fraction is the value the database holds: those every
   * installation followed records with every digit (see recordsExactReals).
   */
  exactReals(): (value: number) => boolean {
    const found = this.#found;
    if (found.length === 0 || found.some((i) => !i.exactReals)) return () => false;
    if (found.every((i) => i.exactReals === true)) return () => true;
    return (v) => Math.abs(v) >= EXACT_D1_REALS[0] && Math.abs(v) <= EXACT_D1_REALS[1];
  }

  /** "capture" while some captured table's changes are applied here. */
  mode(): "capture" | "tables" {
    return this.stats().tables.length > 0 ? "capture" : "tables";
  }

  stats(): CaptureStats {
    const tables: string[] = [];
    let applied = 0;
    let lagP50: number | undefined;
    let lagP99: number | undefined;
    for (const { follower, tables: own } of this.#followers.values()) {
      const s = follower.stats();
      applied += s.applied;
      if (s.lagP50 !== undefined) lagP50 = Math.max(lagP50 ?? 0, s.lagP50);
      if (s.lagP99 !== undefined) lagP99 = Math.max(lagP99 ?? 0, s.lagP99);
      if (!this.#closed && follower.installed && follower.leading) tables.push(...own);
    }
    const statements = this.#driver.statements?.();
    return {
      tables: tables.sort(),
      applied,
      ...(lagP50 !== undefined && { lagP50 }),
      ...(lagP99 !== undefined && { lagP99 }),
      ...(statements !== undefined && { statements }),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.ready.catch(() => {});
    await Promise.all([...this.#followers.values()].map((f) => f.follower.close()));
    await this.#driver.close?.();
  }

  /**
   * Tables the application queries: an installation is followed once one of its tables is
   * wanted, so that a process never takes the change table of tables it does not use from
   * another consumer (another application's, a data API node's). Resolves at once, or, with
   * a lazy driver (D1), once the catalog read and the first word from the followers it
   * needed are in: a Worker's promise must settle within the request that made it.
   */
  want(tables: readonly string[]): Promise<void> {
    const fresh = this.#fresh();
    for (const table of tables) {
      const name = nameOf(table);
      if (name === undefined || this.#wanted.has(name)) continue;
      this.#wanted.add(name);
      const inst = this.#found.find((i) => i.tables.has(name));
      if (inst && this.#follow && !this.#followers.has(inst.id) && !this.#closed) {
        this.#start(inst);
      }
    }
    if (this.#driver.lazyMs === undefined) return Promise.resolve();
    return fresh.then(async () => {
      await Promise.all([...this.#followers.values()].map((f) => f.follower.caughtUp));
    });
  }

  #start(inst: Installation): void {
    this.#followers.set(inst.id, {
      follower: inst.follow(this.#engine, (t) => this.#shapes.get(t), this.#logger, this.#convert),
      tables: new Set(inst.tables.keys()),
    });
  }

  /** The latest look at the catalog; a lazy driver's is read again once it is old. */
  #fresh(): Promise<void> {
    const lazyMs = this.#driver.lazyMs;
    if (lazyMs !== undefined && !this.#closed && Date.now() - this.#readAt >= lazyMs) {
      this.#readAt = Date.now();
      // Not chained to the last one: one left unsettled by an ended request is not waited on
      // past D1_REFRESH_MS.
      this.ready = this.#refresh();
    }
    return this.ready;
  }

  /** The schemas of the tables the application queries (PostgreSQL's; `public` for bare names). */
  #schemas(): string[] {
    const schemas = new Set(["public", ...this.#knownSchemas()]);
    for (const t of this.#wanted) if (t.includes(".")) schemas.add(t.slice(0, t.indexOf(".")));
    return [...schemas];
  }

  #followerOf(table: string): CaptureFollower | undefined {
    const name = nameOf(table);
    if (name === undefined) return undefined;
    for (const { follower, tables } of this.#followers.values()) {
      if (tables.has(name)) return follower.installed && follower.leading ? follower : undefined;
    }
    return undefined;
  }

  async #refresh(): Promise<void> {
    if (this.#closed) return;
    try {
      const found = await this.#driver.installations();
      if (this.#closed) return;
      const shapes = new Map<string, TableShape>();
      for (const inst of found) for (const [name, shape] of inst.tables) shapes.set(name, shape);
      this.#shapes = shapes;
      this.#setSchema?.({
        primaryKey: (table) => this.#shapes.get(table)?.primaryKey,
        joinColumns: () => [],
      });
      this.#found = found;
      const ids = new Set(found.map((i) => i.id));
      for (const [id, f] of this.#followers) if (!ids.has(id)) f.tables.clear();
      for (const inst of found) {
        const known = this.#followers.get(inst.id);
        if (known) known.tables = new Set(inst.tables.keys());
        else if (this.#follow && [...inst.tables.keys()].some((t) => this.#wanted.has(t))) {
          this.#start(inst);
        }
      }
      // After the installations: a catalog that refuses these reads leaves capture working.
      if (this.#foreignKeys) this.#foreignKeys(await this.#driver.foreignKeys(this.#schemas()));
      this.#lastError = "";
    } catch (err) {
      if (closedClient(err)) {
        void this.close();
        return;
      }
      const message = `[edgecache] [drizzle] change capture: ${(err as Error).message ?? err}`;
      if (message !== this.#lastError) this.#logger.warn(message);
      this.#lastError = message;
    }
    if (this.#driver.lazyMs !== undefined) this.#readAt = Date.now();
    else if (!this.#closed) {
      this.#timer = unref(
        setTimeout(() => {
          this.ready = this.#refresh();
        }, REFRESH_MS),
      );
    }
  }
}

/** A table's name as the caches key it, or undefined for an empty one. */
function nameOf(table: string): string | undefined {
  return table === "" ? undefined : plainTableName(table);
}

/**
 * A feed whose events are given to `convert` (named as Drizzle names their tables, say). A
 * late data API change (read after its write's record never came) loses its rows: its
 * place among the changes applied before it is not known, so it concerns its table as a
 * whole instead of patching.
 */
function converted(feed: CaptureFeed, convert: (event: WriteEvent) => WriteEvent): CaptureFeed {
  const named = (c: CapturedChange): CapturedChange => {
    const event = convert(c.event);
    return { ...c, event: c.late ? { table: event.table, op: event.op } : event };
  };
  const out: CaptureFeed = {
    ...feed,
    async read(limit, urgent) {
      return (await feed.read(limit, urgent)).map(named);
    },
  };
  if (!isCarrying(feed)) return out;
  // Carried changes too: the spread's `carry` would hand them over under the database's names.
  const carrying: CarryingFeed = {
    ...out,
    carry: (apply) => feed.carry((changes) => apply(changes.map(named))),
  };
  return carrying;
}

// SQLite (libSQL, better-sqlite3).

/** Reads on a connection; on an application's only where edgecache can have none (in memory). */
type AppReads = (sql: string, params: readonly unknown[]) => Promise<Record<string, unknown>[]>;

/** Reads on the application's client, through the one client contract (sql/client.ts). */
function appReads(client: unknown): AppReads {
  return clientExecutor(sqlDriver(client)!).all;
}

/**
 * A SQLite file's change table, followed in this process (libSQL, better-sqlite3), on a
 * connection of edgecache's own. A database in memory has no second connection (nor can
 * anything write it around the application): its foreign keys alone are read, on the
 * application's connection (a read, which no other connection can make fail).
 */
function sqliteDriver(exec: OwnConnection, appReads: AppReads): CaptureDriver {
  const catalog = sqliteCatalog(
    exec,
    (engine, shapes, logger, convert) =>
      followCapture(
        engine,
        converted(
          sqliteExecutorFeed(exec, (t) => shapes(t)?.columns, { unref: true, own: true }),
          convert,
        ),
        logger,
        { unref: true },
      ),
    /^sqlite_/,
  );
  // The catalog is read again only when the schema changed (one look a second otherwise).
  let schema: unknown;
  let installations: Promise<Installation[]> | undefined;
  let foreignKeys: Promise<ForeignKeyAction[]> | undefined;
  const reads = async () => ((await exec.available()) ? exec.all : appReads);
  return {
    async installations() {
      const read = await reads();
      const [row] = await read("PRAGMA schema_version", []);
      const now = row === undefined ? undefined : Object.values(row)[0];
      if (now === undefined || now !== schema) {
        schema = now;
        // A database in memory has no second connection: nothing else can write it either.
        installations = read === exec.all ? catalog.installations() : Promise.resolve([]);
        foreignKeys = undefined;
        // A failed read is tried again by the next look.
        installations.catch(() => {
          schema = undefined;
        });
      }
      return installations!;
    },
    async foreignKeys() {
      foreignKeys ??= sqliteForeignKeys(await reads());
      foreignKeys.catch(() => {
        foreignKeys = undefined;
      });
      return foreignKeys;
    },
    pendingInOrder: (tables, applied) =>
      sqliteChangesPending(exec, tables, applied && ((change) => applied("main", change))),
    statements: () => exec.statements,
    close: () => exec.close(),
  };
}

/** A SQLite database's foreign keys, read by `all`; `internal` as in sqliteCatalog. */
function sqliteForeignKeys(all: AppReads, internal = /^sqlite_/): Promise<ForeignKeyAction[]> {
  const dialect = sqliteDialect("drizzle", internal);
  return runStepsAsync(dialect.foreignKeyActions(), (s) => all(s.sql, s.params));
}

/**
 * SQLite's capture catalog (the change table, the triggers, primary keys) and foreign keys,
 * over any driver; `internal` names the tables of the database's own that are never read.
 */
function sqliteCatalog(
  exec: SqliteExecutor,
  follow: Installation["follow"],
  internal: RegExp,
): CaptureDriver {
  return {
    foreignKeys: () => sqliteForeignKeys(exec.all, internal),
    async installations() {
      if (!(await sqliteCaptureInstalled(exec))) return [];
      const tables = new Map<string, TableShape>();
      const captured = await sqliteCapturedTables(exec);
      for (const name of captured.tables) {
        // A literal argument: D1 refuses a bound one to pragma_table_info.
        const info = await exec.all(
          `SELECT name, pk FROM pragma_table_info(${literal(name)}) ORDER BY cid`,
          [],
        );
        const keys = info.filter((c) => Number(c.pk) > 0);
        tables.set(name, {
          columns: info.map((c) => String(c.name)),
          ...(keys.length === 1 && { primaryKey: String(keys[0]!.name) }),
        });
      }
      return [{ id: "main", tables, follow, exactReals: captured.exactReals }];
    },
  };
}

// D1 (on Workers, through the change log's Durable Object).

/** A client (sql/client.ts) as what the capture catalog reads and writes through. */
function clientExecutor(client: SqlClient): SqliteExecutor {
  return {
    all: async (sql, params) => (await client.run(sql, params)).rows,
    run: async (sql, params) => (await client.run(sql, params)).rowsAffected,
    async write(sql, params) {
      await client.run(sql, params);
    },
  };
}

/**
 * D1's change table is drained by the Durable Object that holds `log`, not here: the engine
 * applies its records as it syncs. Following it is asking the object to drain now (`sync`),
 * which tells whether it drains at all (an object without the D1 binding does not).
 */
function d1Driver(db: D1DatabaseLike, log: CaptureDrainingLog): CaptureDriver {
  const catalog = sqliteCatalog(
    clientExecutor(sqlDriver(db)!),
    () => drainedFollower(log),
    D1_INTERNAL,
  );
  return {
    foreignKeys: catalog.foreignKeys,
    installations: async () =>
      (await catalog.installations()).map((i) => ({
        ...i,
        exactReals: i.exactReals === true ? ("bounded" as const) : false,
      })),
    lazyMs: D1_REFRESH_MS,
    ordersOnLog: true,
  };
}

function drainedFollower(log: CaptureDrainingLog): CaptureFollower {
  let leading = false;
  let counts: { applied: number; lagP50?: number; lagP99?: number } | undefined;
  const sync = async () => {
    try {
      counts = await log.drainCapture();
    } catch {
      counts = undefined;
    }
    leading = counts !== undefined;
    return leading;
  };
  // Whether the object drains is known once it has been asked.
  const first = sync();
  return {
    // Found in the catalog: the refresh drops its tables once it is gone.
    installed: true,
    get leading() {
      return leading;
    },
    caughtUp: first.then(() => {}),
    sync,
    stats: () => ({
      applied: counts?.applied ?? 0,
      lagP50: counts?.lagP50,
      lagP99: counts?.lagP99,
    }),
    async close() {},
  };
}

// PostgreSQL (postgres.js).

type PostgresSql = Parameters<typeof postgresCaptureFeed>[0];

/** Tables with capture's trigger whose schema's change table exists, with columns and keys. */
const CAPTURED_TABLES = `
  SELECT n.nspname AS schema, c.relname AS name,
    ARRAY(SELECT a.attname::text FROM pg_attribute a
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum) AS columns,
    ARRAY(SELECT a.attname::text FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
           WHERE i.indrelid = c.oid AND i.indisprimary) AS pk,
    coalesce(${literal(EXACT_FLOATS.replaceAll(" ", ""))} = ANY (p.proconfig), false) AS exact_reals
    FROM pg_trigger t
    JOIN pg_proc p ON p.oid = t.tgfoid
    JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE t.tgname = 'edgecache_capture'
     AND to_regclass(format('%I.changes',
           CASE WHEN n.nspname = 'public' THEN 'edgecache' ELSE 'edgecache_' || n.nspname END))
         IS NOT NULL`;

function postgresDriver(sql: PostgresSql): CaptureDriver {
  // The consumer holds its lock on a one-connection client of its own (see
  // postgresCaptureFeed), made by the application's postgres.js.
  let factory: ((options: unknown) => PostgresSql) | undefined;
  /** The schemas whose change tables the installations last found have. */
  let schemas: string[] = [];
  const drizzleName = (schema: string, table: string) =>
    schema === "public" ? table : `${schema}.${table}`;
  return {
    async foreignKeys(wanted) {
      const all: ForeignKeyAction[] = [];
      for (const schema of wanted) {
        const steps = postgresDialect(schema).foreignKeyActions();
        const actions = await runStepsAsync(steps, (s) => sql.unsafe(s.sql, s.params as never[]));
        for (const a of actions) {
          const [parent, child] = [drizzleName(schema, a.parent), drizzleName(schema, a.child)];
          all.push({ ...a, parent, child });
        }
      }
      return all;
    },
    async installations() {
      const rows = await sql.unsafe(CAPTURED_TABLES);
      schemas = [...new Set(rows.map((r) => String(r.schema)))];
      if (rows.length === 0) return [];
      factory ??= loadPostgres();
      const bySchema = new Map<string, Map<string, TableShape>>();
      const exactReals = new Map<string, boolean>();
      for (const r of rows) {
        const schema = String(r.schema);
        const tables = bySchema.get(schema) ?? new Map<string, TableShape>();
        bySchema.set(schema, tables);
        exactReals.set(schema, (exactReals.get(schema) ?? true) && r.exact_reals === true);
        const pk = r.pk as string[];
        tables.set(drizzleName(schema, String(r.name)), {
          columns: r.columns as string[],
          ...(pk.length === 1 && { primaryKey: pk[0]! }),
        });
      }
      const connect = () =>
        factory!({
          ...(sql as unknown as { options: object }).options,
          max: 1,
          onnotice: () => {},
          shared: { retries: 0, typeArrayMap: {} },
        });
      return [...bySchema].map(([schema, tables]) => ({
        id: captureSchema(schema),
        tables,
        exactReals: exactReals.get(schema) === true,
        follow: (
          engine: Cache,
          shapes: (t: string) => TableShape | undefined,
          logger: { warn(m: string): void },
          convert: (event: WriteEvent) => WriteEvent,
        ) => {
          const feed = postgresCaptureFeed(
            sql,
            schema,
            (t) => shapes(drizzleName(schema, t))?.columns,
            connect,
            { unref: true },
          );
          const named = converted(feed, (e) =>
            convert({ ...e, table: drizzleName(schema, e.table) }),
          );
          return followCapture(engine, named, logger, { unref: true });
        },
      }));
    },
    // The consumer applies changes as they become visible, each deleted once applied, so
    // a load after which the change tables hold no change it has not applied saw exactly
    // the changes applied before it. Changes of concurrent transactions may be applied in another order than
    // their commits, but then they change other rows (one row's changes are ordered by its
    // lock, and the deferred trigger numbers them at the commit), and each record's patch
    // is exact for the rows it carries whatever the others' order.
    async pendingInOrder(tables, applied) {
      const reads: string[] = [];
      const params: string[][] = [];
      for (const schema of schemas) {
        const id = captureSchema(schema);
        let where = "";
        if (tables !== undefined) {
          // The change table names its tables without their schema.
          const names = tables.flatMap((t) => {
            const bare = t.slice(t.indexOf(".") + 1);
            return drizzleName(schema, bare) === t ? [bare] : [];
          });
          if (names.length === 0) continue;
          params.push(names);
          where = `WHERE tbl = ANY ($${params.length})`;
        }
        // As the feed reads them (seq and at), so that `applied` knows them.
        reads.push(`(SELECT ${literal(id)} AS id, seq::float8 AS seq, ${atMs("at")} AS at
          FROM ${quote(id)}.changes ${where} ORDER BY seq LIMIT ${PENDING_LOOK})`);
      }
      if (reads.length === 0) return false;
      const rows = await sql.unsafe(reads.join(" UNION ALL "), params as never[]);
      const seen = new Map<string, number>();
      for (const r of rows) {
        const id = String(r.id);
        seen.set(id, (seen.get(id) ?? 0) + 1);
        if (!applied?.(id, { seq: Number(r.seq), at: Number(r.at) })) return true;
      }
      // A full look may have left out a change that waits.
      return [...seen.values()].some((n) => n >= PENDING_LOOK);
    },
  };
}

/** postgres.js's factory (see nodeRequire). Only reached with a postgres.js client, so only on Node. */
function loadPostgres(): (options: unknown) => PostgresSql {
  const loaded = nodeRequire(import.meta.url)("postgres") as {
    default?: (options: unknown) => PostgresSql;
  };
  return loaded.default ?? (loaded as unknown as (options: unknown) => PostgresSql);
}
