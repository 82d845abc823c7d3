import { type Cache, createCache } from "../core/cache/index.ts";
import type { ChangeLog } from "../core/change-log/contract.ts";
import { localChangeLog } from "../core/change-log/in-process.ts";
import type { OutsideWrites } from "../core/change-log/outside-writes.ts";
import type { PlanSchema } from "../core/deps/planner.ts";
import { badOption } from "../core/errors.ts";
import { rateLimited, type Warner } from "../core/report.ts";
import { hitRate } from "../core/stats.ts";
import type { Store } from "../core/store.ts";
import {
  RegistrationCounts,
  type RegistrationStats,
  type ShapeStats,
} from "../database/analysis/registrations.ts";
import type { CaptureStats, QueryCapture } from "./query-capture.ts";

/** A query cache's time to live unless a query says otherwise: an hour. */
const DEFAULT_TTL_MS = 60 * 60_000;

/** The options both query caches (Drizzle, raw SQL) take for their engine. */
export interface QueryEngineOptions {
  tiers?: Store[];
  cache?: Cache;
  log?: ChangeLog;
  ttl?: number;
  prefix?: string;
  now?: () => number;
}

/**
 * Checks a query cache's engine options (as `component`, "expected X, got Y") and makes its
 * engine, or takes the shared one: `owns` says which. `schema` is the planner's, for an
 * engine of its own (a shared engine's schema is its owner's).
 */
export function queryEngine(
  component: string,
  options: QueryEngineOptions,
  defaultPrefix: string,
  schema: PlanSchema,
): { engine: Cache; ttl: number; prefix: string; owns: boolean; outside?: CapturedWrites } {
  const c = component;
  if ((options?.tiers === undefined) === (options?.cache === undefined)) {
    badOption(c, "tiers | cache", "exactly one of tiers and cache", "both or neither");
  }
  const ttl = options.ttl ?? DEFAULT_TTL_MS;
  if (!(ttl > 0)) badOption(c, "ttl", "a positive number of ms", ttl);
  const prefix = options.prefix ?? defaultPrefix;
  if (typeof prefix !== "string" || prefix === "") {
    badOption(c, "prefix", "a non-empty string", prefix);
  }
  if (options.log !== undefined && options.cache !== undefined) {
    badOption(c, "log", "no log with cache (the cache has its own)", "both");
  }
  // An engine of its own on the in-process log hears of captured writes (once followed).
  const outside = options.cache || options.log ? undefined : new CapturedWrites();
  const engine =
    options.cache ??
    createCache({
      tiers: options.tiers!,
      ttl,
      log: options.log ?? localChangeLog({ outside }),
      schema,
      ...(options.now ? { now: options.now } : {}),
    });
  return { engine, ttl, prefix, owns: options.cache === undefined, ...(outside && { outside }) };
}

/**
 * The writes change capture feeds into an adapter's own in-process log, as that log asks
 * of them (`OutsideWrites`): none until the adapter follows capture (`follow`).
 */
export class CapturedWrites implements OutsideWrites {
  #by: OutsideWrites | undefined;

  get ordered(): boolean {
    return this.#by?.ordered === true;
  }

  follow(by: OutsideWrites): void {
    this.#by = by;
  }

  active(): boolean {
    return this.#by?.active() ?? false;
  }

  pending(tables?: readonly string[]): Promise<boolean> {
    return this.#by?.pending(tables) ?? Promise.resolve(false);
  }

  settled(): Promise<boolean> {
    return this.#by?.settled?.() ?? Promise.resolve(false);
  }
}

/**
 * What the Drizzle adapter's and the raw SQL entry's `getStats()` say (docs/guides/drizzle.md).
 */
export interface QueryCacheStats {
  /** Cached queries this node has registered. */
  keys: number;
  /** Per table: cached queries that read it (and go when it changes). */
  tables: Record<string, number>;
  hits: number;
  misses: number;
  /** `hits / (hits + misses)`, between 0 and 1; null before the first read (see `hitRate`). */
  hitRate: number | null;
  /** Results stored. */
  stored: number;
  /** Results not stored since a mutation may have made them stale (the write fence). */
  fenced: number;
  /** Results not stored since their values cannot be restored exactly. */
  uncacheable: number;
  /**
   * Cached results patched in place after a captured write instead of removed (SQLite
   * capture; see `patchInPlace` and docs/guides/drizzle.md).
   */
  patched: number;
  /**
   * Results kept after a write by their statement run for the changed rows alone (group
   * patches: a favourite's count, a tag list, an author's name; docs/guides/sql.md).
   */
  groupPatches: GroupCounts;
  /** Faults of the adapter (a damaged entry, the change log out of reach): each cost a miss or a store, never a query. */
  faults: number;
  /** Faults of the engine's tiers (a tier down): each cost a miss or a store, never a query. */
  tierErrors: number;
  /**
   * How stored selects were registered (docs/guides/drizzle.md, "What a read depends on"):
   * `exact` (its rows, predicate and window), `widened` (a predicate or window wider than
   * the query's: more invalidations, never a stale read), `table` (its tables only), and
   * `reasons`: how many registrations each reason widened or sent to table level.
   */
  registrations: RegistrationStats;
  /**
   * Per query (its SQL: a shape, its parameters bound), the last 200 stored: how exactly it
   * is followed (`row`, `predicate`, `join`, `table`), why below that (`reasons`), how
   * many of its results were stored, and how many of its lookups hit and missed (its share
   * of the reads); the most stored first (see `edgecache explain`).
   */
  shapes: ShapeStats[];
  /**
   * How writes invalidate: "capture" while change capture installed in the database feeds
   * this node (row level, writes around Drizzle included; see `withTransactions`),
   * "tables" otherwise (a mutation empties its tables).
   */
  writes: "capture" | "tables";
  /** Change capture, when `withTransactions` follows it: captured tables, changes applied, lag in ms. */
  capture?: CaptureStats;
}

/** How group patches went. */
export interface GroupCounts {
  /** Results kept by a group patch. */
  patched: number;
  /**
   * Of the results kept, those told by the write's rows with no statement (a favourite's
   * count and flag, a follow's flag).
   */
  told: number;
  /**
   * Of the results kept, those a write's base rows were told outside of by one read of
   * their `IN (select ...)` table, shared (a new article by an author a viewer does not
   * follow, in that viewer's feed; see database/analysis/memberships.ts).
   */
  outside: number;
  /**
   * Of the results kept, counts (`select count(*) ...`) moved by the base rows a write
   * brought in or took out, told by the same reads (see database/analysis/count-deltas.ts).
   */
  counted: number;
  /**
   * Of the results kept, windows whose rows a write deleted: those rows left, and rows from
   * past the window's end came in, read by one statement shared by the select list's
   * results (see database/analysis/window-slides.ts).
   */
  slid: number;
  /**
   * Jobs overtaken by a later write that concerns their result (its record was applied
   * while they ran): each result was brought through that record as well, and then kept
   * or dropped as any (counted there).
   */
  followed: number;
  /** Statements run for them: one serves every result of a write that needs the same. */
  statements: number;
  /**
   * Of the results kept, those kept by a statement run with another result's parameters
   * (another viewer's): their per-viewer columns kept, or told by the write.
   */
  shared: number;
  /** Group patches given up (a row left the result, a statement failed): those results went. */
  dropped: number;
  /**
   * Lookups of one row answered from a held result of the same select list that shows it
   * (the single article from a list), counted among the hits.
   */
  answered: number;
}

/**
 * The counters of a query cache (the Drizzle adapter, the raw SQL entry), its tables, and
 * its one policy for faults: count, report at most once a while, let the query go on.
 */
export class QueryStats {
  readonly counts = { hits: 0, misses: 0, stored: 0, fenced: 0, uncacheable: 0, faults: 0 };
  readonly registrations = new RegistrationCounts();
  readonly groups: GroupCounts = {
    patched: 0,
    told: 0,
    outside: 0,
    counted: 0,
    slid: 0,
    followed: 0,
    statements: 0,
    shared: 0,
    dropped: 0,
    answered: 0,
  };
  /** Tables of stored results, for `tables` in the stats. */
  #tables = new Set<string>();
  #component: string;
  #report: ReturnType<typeof rateLimited>;

  constructor(component: string, logger: Warner) {
    this.#component = component;
    this.#report = rateLimited(logger, () => performance.now());
  }

  /** A lookup hit or missed; with its `sql`, counted under that query's shape too. */
  lookup(hit: boolean, sql?: string): void {
    if (hit) this.counts.hits++;
    else this.counts.misses++;
    if (sql !== undefined) this.registrations.lookup(sql, hit);
  }

  /** A result of `tables` was stored. */
  stored(tables: readonly string[]): void {
    this.counts.stored++;
    for (const t of tables) this.#tables.add(t);
  }

  /** A result could not be encoded exactly, so it was not stored. */
  uncacheable(err: Error): void {
    this.counts.uncacheable++;
    const c = this.#component;
    this.#report("uncacheable", `[edgecache] [${c}] a result was not cached: ${err.message}`);
  }

  fault(op: string, err: unknown): void {
    this.counts.faults++;
    const c = this.#component;
    this.#report(`${c}:${op}`, `[edgecache] [${c}] ${op} failed; the query went on`, err);
  }

  stats(
    engine: Cache,
    prefix: string,
    tableTag: (table: string) => string,
    capture: QueryCapture | undefined,
  ): QueryCacheStats {
    const tables: Record<string, number> = {};
    for (const t of this.#tables) {
      const n = engine.registered({ tag: tableTag(t) });
      if (n > 0) tables[t] = n;
      else this.#tables.delete(t);
    }
    const { tiers, patches } = engine.stats();
    return {
      keys: engine.registered({ prefix }),
      tables,
      ...this.counts,
      hitRate: hitRate(this.counts.hits, this.counts.misses),
      tierErrors: tiers.reduce((n, t) => n + t.errors, 0),
      patched: patches,
      groupPatches: { ...this.groups },
      writes: capture?.mode() ?? "tables",
      ...(capture && { capture: capture.stats() }),
      registrations: this.registrations.stats(),
      shapes: this.registrations.shapes(),
    };
  }
}

/** A shape's stats without what group patches would keep: for an entry that runs none. */
export function unmaintainedShape({
  maintained: _,
  unmaintained: __,
  memberships: ___,
  ...shape
}: ShapeStats): ShapeStats {
  return shape;
}
