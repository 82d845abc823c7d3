import type { Cache } from "../core/cache/index.ts";
import { type CaptureFollower, followCapture, mapFeed, unref } from "../core/capture-feed.ts";
import {
  type CaptureDrainCounts,
  type CaptureDrainingLog,
  drainsCapture,
} from "../core/change-log/contract.ts";
import type { OutsideWrites } from "../core/change-log/outside-writes.ts";
import type { PlanSchema, WriteEvent } from "../core/deps/planner.ts";
import { settledWithin } from "../core/time/settled-within.ts";
import { comparableEvent } from "../database/analysis/forms.ts";
import type { SqlColumnKind } from "../database/analysis/shapes.ts";
import type {
  CapturedShape,
  CaptureInstallation,
  ClientCapture,
} from "../database/client-capture.ts";
import { clientCapture } from "../database/drivers.ts";
import type { ForeignKeyAction } from "../database/schema.ts";
import { plainTableName } from "./columns.ts";

/**
 * Change capture behind a query cache's client (the Drizzle adapter's `db.$client`, the raw
 * SQL entry's client): when `npx edgecache capture install` has put its triggers in the
 * database, every change to a captured table, made through the cache or around it (another
 * connection, psql, the sqlite3 shell), reaches the cache's engine with its old and new
 * rows, planned by primary key like the data API's writes. A mutation through the cache
 * then waits for its own changes to be applied (`settled`) instead of emptying its tables.
 *
 * What each database tells of capture (its installations, their feeds, foreign keys) is
 * the SQL room's (`clientCapture` in src/database/drivers.ts, one file per database beside its
 * driver): a libSQL `Client` or better-sqlite3 `Database` on a file, a postgres.js `Sql`,
 * or a D1 binding whose cache follows a log that D1's capture drain feeds
 * (`durableChangeLog`: the change log's Durable Object drains the change table, and a
 * mutation asks it to drain at once); so is a postgres.js client's inside a Worker, whose
 * cache follows such a log (`postgresChangeLogObject`). Others (node-postgres) stay at table level.
 * Installations are looked for every REFRESH_MS, so an install (or a table added to it) is
 * picked up while running; on D1, when used and at most every few seconds (no timer: a
 * Worker's outlives no request, and D1 bills rows read).
 */

/** How often the catalog is read again (installs, captured tables, primary keys), ms. */
const REFRESH_MS = 1000;
/**
 * How often a reader of foreign keys alone (capture not followed) reads them again, ms:
 * they change only with the schema, and each look is a statement on the user's database.
 */
const FOREIGN_KEYS_REFRESH_MS = 10_000;
/**
 * How long a read waits for a new follower of its tables to first look at the change table,
 * ms (a few statements). Past it the read goes on at table level, as before capture was
 * followed: a database that does not answer never holds reads up for longer.
 */
const FIRST_LOOK_MS = 1000;
/**
 * The magnitudes of D1's captured REALs taken as exact. workerd's SQLite writes
 * `printf('%!.17g')` an ulp off for some numbers from about 1e119 and below about 1e-83
 * (found with random numbers of every exponent; none wrong among 116,000 from 1e-82 to
 * 1e118, prices with cents included); D1 itself runs another build, so the band keeps a
 * wide margin. A fraction outside it is not patched.
 */
const EXACT_D1_REALS: readonly [number, number] = [1e-60, 1e60];

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
  // In a Worker, a postgres.js client's change table is drained by the log's object, as D1's.
  const drained = drainsCapture(engine.log);
  const capture = clientCapture(client, { drained });
  // D1's change table reaches this cache only through a log whose object drains it.
  if (capture?.drainedByLog && !drained) return undefined;
  return capture && new QueryCapture(capture, engine, options);
}

/** The follower of every installation, and what the transactions ask of it. */
export class QueryCapture {
  #capture: ClientCapture;
  #engine: Cache;
  #setSchema: ((schema: PlanSchema) => void) | undefined;
  #foreignKeys: ((actions: ForeignKeyAction[]) => void) | undefined;
  #convert: (event: WriteEvent) => WriteEvent;
  #logger: { warn(m: string): void };
  #followers = new Map<string, Followed>();
  #shapes = new Map<string, CapturedShape>();
  #found: CaptureInstallation[] = [];
  #wanted = new Set<string>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #lastError = "";
  /** When the catalog was last read (lazy captures), ms. */
  #readAt = Number.NEGATIVE_INFINITY;
  /** The first look at the catalog, and then the latest one. */
  ready: Promise<void>;
  /** The first look at the catalog (resolved at once by a lazy capture's). */
  readonly started: Promise<void>;
  #follow: boolean;
  #knownSchemas: () => Iterable<string>;

  constructor(capture: ClientCapture, engine: Cache, options: CaptureOptions) {
    this.#capture = capture;
    this.#follow = options.follow ?? true;
    this.#knownSchemas = options.schemas ?? (() => []);
    this.#engine = engine;
    this.#setSchema = options.setSchema;
    this.#foreignKeys = options.foreignKeys;
    const kinds = options.kinds;
    this.#convert = kinds ? (e) => comparableEvent(e, kinds(e.table)) : (e) => e;
    this.#logger = options.logger;
    // A lazy capture reads the catalog when first used: on Workers, inside the request that
    // waits for it (a promise left behind by an ended request never settles).
    this.ready = capture.lazyMs === undefined ? this.#refresh() : Promise.resolve();
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
    if (this.#capture.lazyMs !== undefined) await this.#fresh();
    if (!this.covers(tables) || this.#missesReplaces(tables)) return false;
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
    const pending = this.#capture.pendingInOrder;
    if (!pending) return undefined;
    const settled = this.#capture.settledInOrder;
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
      ...(settled && { settled }),
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
    return this.#capture.drainedByLog === true;
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
      // Each follower counts what this node applied (its log's records), not what it read:
      // the same count, not to be added up.
      applied = Math.max(applied, s.applied);
      if (s.lagP50 !== undefined) lagP50 = Math.max(lagP50 ?? 0, s.lagP50);
      if (s.lagP99 !== undefined) lagP99 = Math.max(lagP99 ?? 0, s.lagP99);
      if (!this.#closed && follower.installed && follower.leading) tables.push(...own);
    }
    const statements = this.#capture.statements?.();
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
    await this.#capture.close?.();
  }

  /**
   * Tables the application queries: an installation is followed once one of its tables is
   * wanted, so that a process never takes the change table of tables it does not use from
   * another consumer (another application's, a data API node's). Resolves once the followers
   * of `tables` have first looked at their change table (at most FIRST_LOOK_MS), so that a
   * process's first read takes the mode the next reads find: stored while following, not at
   * table level and then emptied. With a lazy capture (D1), once the catalog read and the
   * first word from the followers it needed are in: a Worker's promise must settle within
   * the request that made it.
   */
  want(tables: readonly string[]): Promise<void> {
    const fresh = this.#fresh();
    const names: string[] = [];
    for (const table of tables) {
      const name = nameOf(table);
      if (name === undefined) continue;
      names.push(name);
      if (this.#wanted.has(name)) continue;
      this.#wanted.add(name);
      const inst = this.#found.find((i) => i.tables.has(name));
      if (inst && this.#follow && !this.#followers.has(inst.id) && !this.#closed) {
        this.#start(inst);
      }
    }
    if (this.#capture.lazyMs === undefined) {
      // Those started by this read, or by another one still waiting for the same look.
      const looking: Promise<void>[] = [];
      for (const f of this.#followers.values()) {
        if (f.looking && names.some((n) => f.tables.has(n))) looking.push(f.looking);
      }
      return looking.length === 0 ? Promise.resolve() : Promise.all(looking).then(() => {});
    }
    return fresh.then(async () => {
      await Promise.all([...this.#followers.values()].map((f) => f.follower.caughtUp));
    });
  }

  #start(inst: CaptureInstallation): void {
    const follower = inst.feed
      ? followCapture(
          this.#engine,
          mapFeed(
            inst.feed((t) => this.#shapes.get(t)),
            this.#convert,
          ),
          this.#logger,
          { unref: true },
        )
      : drainedFollower(this.#engine.log as CaptureDrainingLog);
    const followed: Followed = { follower, tables: new Set(inst.tables.keys()) };
    // One bound for every read that waits: once it passed, no read waits for that look.
    followed.looking = settledWithin([follower.looked], FIRST_LOOK_MS).then(() => {
      followed.looking = undefined;
    });
    this.#followers.set(inst.id, followed);
  }

  /** The latest look at the catalog; a lazy capture's is read again once it is old. */
  #fresh(): Promise<void> {
    const lazyMs = this.#capture.lazyMs;
    if (lazyMs !== undefined && !this.#closed && Date.now() - this.#readAt >= lazyMs) {
      this.#readAt = Date.now();
      // Not chained to the last one: one left unsettled by an ended request is not waited on
      // past D1_REFRESH_MS.
      this.ready = this.#refresh();
    }
    return this.ready;
  }

  /**
   * Returns once the foreign keys of every schema named so far are read: a table of a schema
   * first named by a write has its keys read before the write's cascades are told.
   */
  async foreignKeysRead(): Promise<void> {
    if (!this.#foreignKeys || this.#closed) return;
    const schemas = this.#schemas();
    if (schemas.every((s) => this.#keysRead.has(s))) return;
    try {
      await this.#readForeignKeys();
    } catch (err) {
      this.#logger.warn(`[edgecache] [capture] ${(err as Error).message ?? err}`);
    }
  }

  /** The schemas whose foreign keys the last read covered. */
  #keysRead = new Set<string>();

  async #readForeignKeys(): Promise<void> {
    if (!this.#foreignKeys) return;
    const schemas = this.#schemas();
    this.#foreignKeys(await this.#capture.foreignKeys(schemas));
    this.#keysRead = new Set(schemas);
  }

  /** The schemas of the tables the application queries (PostgreSQL's; `public` for bare names). */
  #schemas(): string[] {
    const schemas = new Set(["public", ...this.#knownSchemas()]);
    for (const t of this.#wanted) if (t.includes(".")) schemas.add(t.slice(0, t.indexOf(".")));
    return [...schemas];
  }

  /**
   * Whether an installation of `tables` misses the rows a REPLACE deletes (an earlier
   * version's): the write may have been one, by its text or by its table's constraints.
   */
  #missesReplaces(tables: readonly string[]): boolean {
    const names = tables.map(nameOf);
    return this.#found.some(
      (i) => i.replaces === false && names.some((n) => n !== undefined && i.tables.has(n)),
    );
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
      // Not following: the foreign keys alone are read (see below).
      const found = this.#follow ? await this.#capture.installations() : [];
      if (this.#closed) return;
      const shapes = new Map<string, CapturedShape>();
      for (const inst of found) for (const [name, shape] of inst.tables) shapes.set(name, shape);
      this.#shapes = shapes;
      this.#setSchema?.({
        primaryKey: (table) => this.#shapes.get(table)?.primaryKey,
        joinColumns: () => [],
        // Captured without a single-column key (a link table keyed by two columns): its
        // changes carry whole rows, planned by the lists of the entries that read it.
        keyless: (table) => {
          const shape = this.#shapes.get(table);
          return shape !== undefined && shape.primaryKey === undefined;
        },
        keys: (table) => this.#shapes.get(table)?.keys,
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
      await this.#readForeignKeys();
      this.#lastError = "";
    } catch (err) {
      if (closedClient(err)) {
        void this.close();
        return;
      }
      const message = `[edgecache] [capture] ${(err as Error).message ?? err}`;
      if (message !== this.#lastError) this.#logger.warn(message);
      this.#lastError = message;
    }
    if (this.#capture.lazyMs !== undefined) this.#readAt = Date.now();
    else if (!this.#closed) {
      this.#timer = unref(
        setTimeout(
          () => {
            this.ready = this.#refresh();
          },
          this.#follow ? REFRESH_MS : FOREIGN_KEYS_REFRESH_MS,
        ),
      );
    }
  }
}

/** A follower of one installation. */
interface Followed {
  follower: CaptureFollower;
  /** The installation's tables, as the catalog last told them. */
  tables: Set<string>;
  /**
   * Until the follower has first looked at the change table (see CaptureFollower.looked), or
   * FIRST_LOOK_MS passed: what a read of its tables waits for.
   */
  looking?: Promise<void>;
}

/** A table's name as the caches key it, or undefined for an empty one. */
function nameOf(table: string): string | undefined {
  return table === "" ? undefined : plainTableName(table);
}

/** How long after a failed drain a drained follower is asked again (see drainedFollower). */
const DRAIN_RETRY_MS = 1000;

/**
 * The follower of a change table the change log's object drains (D1): following it is
 * asking the object to drain now (`sync`), which tells whether it drains at all (an object
 * without the D1 binding does not).
 */
function drainedFollower(log: CaptureDrainingLog): CaptureFollower {
  let leading = false;
  /** When a drain last failed: asked again (by the next write) once DRAIN_RETRY_MS passed. */
  let failedAt: number | undefined;
  let counts: { lagP50?: number; lagP99?: number } | undefined;
  const sync = async () => {
    let drained: CaptureDrainCounts | undefined;
    try {
      drained = await log.drainCapture();
    } catch {
      drained = undefined;
    }
    counts = drained ?? counts;
    // A drain that failed (the database out of reach) promises nothing: the caller then
    // invalidates, as without capture.
    leading = drained !== undefined && drained.failed !== true;
    failedAt = drained?.failed === true ? Date.now() : undefined;
    return leading;
  };
  // Whether the object drains is known once it has been asked.
  const first = sync();
  return {
    // Found in the catalog: the refresh drops its tables once it is gone.
    installed: true,
    get leading() {
      // After a failed drain, offered again a while later: the next settle asks for a drain,
      // and invalidates if that one fails too.
      return leading || (failedAt !== undefined && Date.now() - failedAt >= DRAIN_RETRY_MS);
    },
    caughtUp: first.then(() => {}),
    looked: first.then(() => {}),
    sync,
    // Applied here: every captured record this node took from the log, the drains it did not
    // ask for included (the object's alarm, other isolates'), not only its own mutations'.
    stats: () => ({
      applied: log.capturedApplied(),
      lagP50: counts?.lagP50,
      lagP99: counts?.lagP99,
    }),
    async close() {},
  };
}
