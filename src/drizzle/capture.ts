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
import type { PlanSchema } from "../core/deps/planner.ts";
import { captureSchema, postgresCaptureFeed } from "../sources/postgres-capture.ts";
import {
  betterSqliteExecutor,
  type SqliteExecutor,
  sqliteCapturedTables,
  sqliteCaptureInstalled,
  sqliteExecutorFeed,
} from "../sources/sqlite-capture.ts";
import { clientKind } from "./client-kind.ts";
import { tableName } from "./tables.ts";

/**
 * Change capture behind a Drizzle database: when `npx edgecache capture install` has put
 * its triggers in the database, every change to a captured table, made through Drizzle or
 * around it (another connection, psql, the sqlite3 shell), reaches the adapter's engine
 * with its old and new rows, planned by primary key like the data API's writes. A Drizzle
 * mutation then waits for its own changes to be applied (`settled`) instead of emptying
 * its tables.
 *
 * The client is told by its shape (drizzle-orm's `db.$client`): a libSQL `Client`, a
 * postgres.js `Sql`, a better-sqlite3 `Database`. Others (D1, node-postgres) stay at table
 * level. Installations are looked for every REFRESH_MS, so an install (or a table added
 * to it) is picked up while running.
 */

/** How often the catalog is read again (installs, captured tables, primary keys), ms. */
const REFRESH_MS = 1000;

/** A captured table as the planner needs it. */
interface TableShape {
  /** Its primary key when it is one column; otherwise changes fall back to the table. */
  primaryKey?: string;
  columns: readonly string[];
}

/** One capture installation: a change table and the tables whose triggers feed it. */
interface Installation {
  id: string;
  /** By Drizzle's name of the table (`schema.table` outside PostgreSQL's `public`). */
  tables: Map<string, TableShape>;
  /** Its change table as a feed, events named as Drizzle names their tables. */
  feed(shapes: (table: string) => TableShape | undefined): CaptureFeed;
}

/** What a kind of client tells of capture. */
interface CaptureDriver {
  installations(): Promise<Installation[]>;
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

/**
 * Follows the capture installations of the database behind `client` into `engine`, or
 * returns undefined when the client is none this knows. `setSchema` receives the captured
 * tables' primary keys (left out when the engine is shared, whose schema is its owner's).
 */
export function startCapture(
  client: unknown,
  engine: Cache,
  options: { setSchema?: (schema: PlanSchema) => void; logger: { warn(m: string): void } },
): DrizzleCapture | undefined {
  const driver = captureDriver(client);
  return driver && new DrizzleCapture(driver, engine, options);
}

function captureDriver(client: unknown): CaptureDriver | undefined {
  switch (clientKind(client)) {
    case "postgres.js":
      return postgresDriver(client as unknown as PostgresSql);
    case "libsql":
      return sqliteDriver(libsqlExecutor(client as LibsqlClient));
    case "better-sqlite3": {
      // better-sqlite3's statements wait for a lock up to the database's busy_timeout.
      const db = client as Parameters<typeof betterSqliteExecutor>[0];
      return sqliteDriver(betterSqliteExecutor(db, async (work) => work()));
    }
    default:
      return undefined;
  }
}

/** The follower of every installation, and what the transactions ask of it. */
export class DrizzleCapture {
  #driver: CaptureDriver;
  #engine: Cache;
  #setSchema: ((schema: PlanSchema) => void) | undefined;
  #logger: { warn(m: string): void };
  #followers = new Map<string, { follower: CaptureFollower; tables: Set<string> }>();
  #shapes = new Map<string, TableShape>();
  #found: Installation[] = [];
  #wanted = new Set<string>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #lastError = "";
  /** The first look at the catalog, and then the latest one. */
  ready: Promise<void>;

  constructor(
    driver: CaptureDriver,
    engine: Cache,
    options: { setSchema?: (schema: PlanSchema) => void; logger: { warn(m: string): void } },
  ) {
    this.#driver = driver;
    this.#engine = engine;
    this.#setSchema = options.setSchema;
    this.#logger = options.logger;
    this.ready = this.#refresh();
  }

  /**
   * Whether every one of `tables` is captured and this node consumes its change table:
   * then its changes reach the planner here, and a mutation need not empty the tables.
   */
  covers(tables: readonly unknown[]): boolean {
    if (this.#closed || tables.length === 0) return false;
    return tables.every((t) => this.#followerOf(t) !== undefined);
  }

  /**
   * Resolves true once the changes to `tables` committed before the call are applied to
   * the engine (the mutation's own among them); false when that cannot be promised (a
   * table not captured, another node consumes, the database out of reach), and the caller
   * then invalidates the tables.
   */
  async settled(tables: readonly unknown[]): Promise<boolean> {
    if (!this.covers(tables)) return false;
    const followers = new Set(tables.map((t) => this.#followerOf(t)!));
    const done = await Promise.all([...followers].map((f) => f.sync()));
    return done.every(Boolean);
  }

  /** Resolves once every captured change committed before the call is applied (true), or false. */
  async catchUp(): Promise<boolean> {
    await this.ready;
    const all = [...this.#followers.values()].map((f) => f.follower);
    if (all.length === 0) return false;
    return (await Promise.all(all.map((f) => f.sync()))).every(Boolean);
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
    return {
      tables: tables.sort(),
      applied,
      ...(lagP50 !== undefined && { lagP50 }),
      ...(lagP99 !== undefined && { lagP99 }),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.ready.catch(() => {});
    await Promise.all([...this.#followers.values()].map((f) => f.follower.close()));
  }

  /**
   * Tables the application queries: an installation is followed once one of its tables is
   * wanted, so that a process never takes the change table of tables it does not use from
   * another consumer (another application's, a data API node's).
   */
  want(tables: readonly unknown[]): void {
    for (const table of tables) {
      const name = nameOf(table);
      if (name === undefined || this.#wanted.has(name)) continue;
      this.#wanted.add(name);
      const inst = this.#found.find((i) => i.tables.has(name));
      if (inst && !this.#followers.has(inst.id) && !this.#closed) this.#start(inst);
    }
  }

  #start(inst: Installation): void {
    const feed = inst.feed((t) => this.#shapes.get(t));
    this.#followers.set(inst.id, {
      follower: followCapture(this.#engine, feed, this.#logger, { unref: true }),
      tables: new Set(inst.tables.keys()),
    });
  }

  #followerOf(table: unknown): CaptureFollower | undefined {
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
        else if ([...inst.tables.keys()].some((t) => this.#wanted.has(t))) this.#start(inst);
      }
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
    if (!this.#closed) {
      this.#timer = unref(
        setTimeout(() => {
          this.ready = this.#refresh();
        }, REFRESH_MS),
      );
    }
  }
}

/** A table's name as Drizzle gives it, or undefined for something that names none. */
function nameOf(table: unknown): string | undefined {
  try {
    return tableName(table as string | object);
  } catch {
    return undefined;
  }
}

/** Renames a feed's events as Drizzle names their tables. */
function renamed(feed: CaptureFeed, rename: (table: string) => string): CaptureFeed {
  const named = (c: CapturedChange): CapturedChange => ({
    ...c,
    event: { ...c.event, table: rename(c.event.table) },
  });
  const out: CaptureFeed = {
    ...feed,
    async read(limit) {
      return (await feed.read(limit)).map(named);
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

interface LibsqlClient {
  execute(stmt: { sql: string; args: unknown[] }): Promise<{
    rows: Record<string, unknown>[];
    rowsAffected: number;
  }>;
}

function libsqlExecutor(client: LibsqlClient): SqliteExecutor {
  return {
    async all(sql, params) {
      return (await client.execute({ sql, args: [...params] })).rows;
    },
    async run(sql, params) {
      return (await client.execute({ sql, args: [...params] })).rowsAffected;
    },
    async write(sql, params) {
      await client.execute({ sql, args: [...params] });
    },
  };
}

function sqliteDriver(exec: SqliteExecutor): CaptureDriver {
  return {
    async installations() {
      if (!(await sqliteCaptureInstalled(exec))) return [];
      const tables = new Map<string, TableShape>();
      for (const name of await sqliteCapturedTables(exec)) {
        const info = await exec.all("SELECT name, pk FROM pragma_table_info(?) ORDER BY cid", [
          name,
        ]);
        const keys = info.filter((c) => Number(c.pk) > 0);
        tables.set(name, {
          columns: info.map((c) => String(c.name)),
          ...(keys.length === 1 && { primaryKey: String(keys[0]!.name) }),
        });
      }
      return [
        {
          id: "main",
          tables,
          feed: (shapes) => sqliteExecutorFeed(exec, (t) => shapes(t)?.columns, { unref: true }),
        },
      ];
    },
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
           WHERE i.indrelid = c.oid AND i.indisprimary) AS pk
    FROM pg_trigger t
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
  const drizzleName = (schema: string, table: string) =>
    schema === "public" ? table : `${schema}.${table}`;
  return {
    async installations() {
      const rows = await sql.unsafe(CAPTURED_TABLES);
      if (rows.length === 0) return [];
      factory ??= loadPostgres();
      const bySchema = new Map<string, Map<string, TableShape>>();
      for (const r of rows) {
        const schema = String(r.schema);
        const tables = bySchema.get(schema) ?? new Map<string, TableShape>();
        bySchema.set(schema, tables);
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
        feed: (shapes) =>
          renamed(
            postgresCaptureFeed(
              sql,
              schema,
              (t) => shapes(drizzleName(schema, t))?.columns,
              connect,
              { unref: true },
            ),
            (t) => drizzleName(schema, t),
          ),
      }));
    },
  };
}

/**
 * postgres.js's factory, required through Node's own `module` so that no import names it: a
 * Worker's bundler would follow one (and fail on postgres.js's Node built-ins), and workerd
 * refuses a computed `import()`. Only reached with a postgres.js client, so only on Node.
 */
function loadPostgres(): (options: unknown) => PostgresSql {
  const node = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const module = node?.getBuiltinModule?.("node:module") as
    | { createRequire(from: string): (id: string) => unknown }
    | undefined;
  if (!module) throw new Error("needs Node 20.16 or later (process.getBuiltinModule)");
  const loaded = module.createRequire(import.meta.url)("postgres") as {
    default?: (options: unknown) => PostgresSql;
  };
  return loaded.default ?? (loaded as unknown as (options: unknown) => PostgresSql);
}
