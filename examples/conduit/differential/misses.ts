/**
 * Why the cached app's reads miss: each miss of the Drizzle cache is put in one class.
 *
 * - first: this select (its SQL and parameters) was never asked for before.
 * - invalidated: it was stored, and a record of the change log since then concerns it, by
 *   the planner's rule that chose it (`row`: a row it holds, `predicate`/`window`: a list it
 *   registered, `table`: the table fallback) or by a tag an invalidation named (`tag`:
 *   Drizzle's table-level invalidation of a mutation). Counted by the table written.
 * - answered before: asked for before and answered from a held result, never stored itself.
 * - never cached: asked for before, but its last result was not stored (refused by the
 *   write fence, or not encodable), or never handed back to the cache at all.
 * - evicted or expired: stored, no record concerns it, yet gone.
 *
 * All of it from outside the cache: the adapter's `getSelect` and `putSelect` are wrapped (and
 * the engine's `storeLoaded`, for results a write kept: group patches store them again), the
 * engine's change log is followed like any node follows it, and each record is put to the
 * planner (a pure function) against the one entry's registration as stored.
 */
import { getTableConfig, type SQLiteTable } from "drizzle-orm/sqlite-core";
import type { ChangeRecord } from "../../../src/core/change-log/contract.ts";
import type { Registration } from "../../../src/core/deps/index.ts";
import {
  type DependencyLookup,
  type PlanSchema,
  planWrite,
  tagTable,
} from "../../../src/core/deps/planner.ts";
import type { EdgecacheDrizzleCache } from "../../../src/drizzle/index.ts";
import { schema as conduitSchema } from "../schema.ts";

type Known =
  | { state: "asked" }
  | { state: "answered" }
  | { state: "refused"; why: string }
  | { state: "stored"; after: number; registration: Readonly<Registration>; result: string };

/** The keys of the Drizzle adapter's entries (`drizzleCache`'s default prefix). */
const QUERY_KEY = "drizzle:q:";

export class MissCensus {
  /** Misses by class: "first", "never cached: ...", "invalidated: <table> <op> by <rule>"... */
  readonly classes: Record<string, number> = {};
  /**
   * Of the invalidated misses, by class, those whose fresh result equalled the one removed:
   * the invalidations a perfect planner would not have made (a change the entry's rows,
   * predicates or aggregates did not see).
   */
  readonly unchanged: Record<string, number> = {};
  /**
   * Per select (its SQL): lookups that were not the first of their SQL and parameters, and
   * how many of them hit; and its misses by class. Issue 71 measures the main lists by these.
   */
  readonly bySql = new Map<
    string,
    { repeats: number; repeatHits: number; misses: Record<string, number> }
  >();
  /** Invalidated misses waiting for their fresh result, with the result removed. */
  #removed = new Map<string, { what: string; result: string }>();
  /** The position this node had applied at each key's last lookup. */
  #askedAt = new Map<string, number>();
  #known = new Map<string, Known>();
  #records: ChangeRecord[] = [];
  #schema: PlanSchema;
  #cache: EdgecacheDrizzleCache;
  #refusals = { fenced: 0, uncacheable: 0 };

  constructor(cache: EdgecacheDrizzleCache) {
    this.#cache = cache;
    this.#schema = conduitPlanSchema();
    cache.engine.log.follow({
      apply: (record) => {
        this.#records.push(record);
        return Promise.resolve();
      },
      reset: () => {},
    });
    // A result kept by a write (a group patch stores it again, at the position after that
    // write): the records that concern it count from there.
    const storeLoaded = cache.engine.storeLoaded.bind(cache.engine);
    cache.engine.storeLoaded = async (key, init, since, options) => {
      const done = await storeLoaded(key, init, since, options);
      const name = key.startsWith(QUERY_KEY) ? key.slice(QUERY_KEY.length) : undefined;
      const known = name === undefined ? undefined : this.#known.get(name);
      const registration = done.stored ? cache.engine.registration(key) : undefined;
      if (known?.state === "stored" && registration) {
        this.#known.set(name!, { ...known, after: since.seq, registration: { ...registration } });
      }
      return done;
    };
    // A miss the adapter answers itself (a select it ran with hidden keys, see getSelect)
    // is counted as one by the engine, as every miss is.
    const missed = new Set<string>();
    const countRead = cache.engine.countRead.bind(cache.engine);
    cache.engine.countRead = (key, status) => {
      if (status === "miss" && key.startsWith(QUERY_KEY)) missed.add(key.slice(QUERY_KEY.length));
      countRead(key, status);
    };
    // Every lookup goes through getSelect (get too, without the select's SQL).
    const get = cache.getSelect.bind(cache);
    cache.getSelect = async (key, tables, isTag, query) => {
      missed.delete(key);
      // A result is stored as a load that began at its lookup, at the position this node
      // had applied then: the records after it may concern it (the write fence removes it
      // for one the node applies while it ran, even one this census has heard of before).
      const asked = cache.engine.position.seq;
      this.#askedAt.set(key, asked);
      // As it was before the lookup: a result the adapter runs itself is stored during it.
      const before = this.#known.get(key);
      const value = await get(key, tables, isTag, query);
      if (isTag) return value;
      const first = !this.#known.has(key);
      const miss = value === undefined || missed.delete(key);
      const what = miss ? this.#miss(key, before) : undefined;
      if (query) this.#countSql(query.sql, first, what);
      // Run and stored by the adapter: what Drizzle was handed, as it would have put it.
      if (miss && value !== undefined) this.#put(key, JSON.stringify(value), asked);
      // A hit on a select never stored: answered from a held result (held-results.ts).
      else if (value !== undefined && first) this.#known.set(key, { state: "answered" });
      return value;
    };
    const putSelect = cache.putSelect.bind(cache);
    cache.putSelect = async (key, response, tables, isTag, config, query) => {
      await putSelect(key, response, tables, isTag, config, query);
      if (!isTag) this.#put(key, JSON.stringify(response));
    };
  }

  /** The classes, largest first, each with how many of its misses found the result unchanged. */
  sorted(): [string, number, number][] {
    return Object.entries(this.classes)
      .sort((a, b) => b[1] - a[1])
      .map(([what, n]) => [what, n, this.unchanged[what] ?? 0]);
  }

  #count(what: string): void {
    this.classes[what] = (this.classes[what] ?? 0) + 1;
  }

  #countSql(sql: string, first: boolean, miss: string | undefined): void {
    const counts = this.bySql.get(sql) ?? { repeats: 0, repeatHits: 0, misses: {} };
    this.bySql.set(sql, counts);
    if (!first) {
      counts.repeats++;
      if (miss === undefined) counts.repeatHits++;
    }
    if (miss !== undefined) counts.misses[miss] = (counts.misses[miss] ?? 0) + 1;
  }

  #miss(key: string, known = this.#known.get(key)): string {
    this.#known.set(key, known?.state === "refused" ? known : { state: "asked" });
    const what = !known
      ? "first"
      : known.state === "asked"
        ? "never cached: not handed back to the cache"
        : known.state === "answered"
          ? "answered from a held result before, never stored"
          : known.state === "refused"
            ? `never cached: ${known.why}`
            : this.#removedBy(key, known.after, known.registration);
    this.#count(what);
    if (known?.state === "stored" && what.startsWith("invalidated"))
      this.#removed.set(key, { what, result: known.result });
    return what;
  }

  #put(key: string, result: string, asked = this.#askedAt.get(key)): void {
    const removed = this.#removed.get(key);
    if (removed) {
      this.#removed.delete(key);
      if (removed.result === result)
        this.unchanged[removed.what] = (this.unchanged[removed.what] ?? 0) + 1;
    }
    const registration = this.#cache.engine.registration(QUERY_KEY + key);
    if (registration) {
      const after = asked ?? this.#records.at(-1)?.seq ?? 0;
      this.#known.set(key, { state: "stored", after, registration: { ...registration }, result });
      return;
    }
    const stats = this.#cache.getStats();
    const why =
      stats.fenced > this.#refusals.fenced
        ? "refused by the write fence"
        : stats.uncacheable > this.#refusals.uncacheable
          ? "not encodable or its SQL unread"
          : "not stored";
    this.#refusals = { fenced: stats.fenced, uncacheable: stats.uncacheable };
    this.#known.set(key, { state: "refused", why });
  }

  /** The first record since `after` that concerns the entry, and how. */
  #removedBy(key: string, after: number, registration: Readonly<Registration>): string {
    const lookup = singleEntry(key, registration);
    for (const record of this.#records) {
      if (record.seq <= after) continue;
      for (const op of record.ops) {
        if ("event" in op) {
          const plan = planWrite(op.event, this.#schema, lookup);
          if (plan.keys.size === 0) continue;
          const rule = Object.entries(plan.rules).find(([, n]) => n > 0)?.[0] ?? "?";
          return `invalidated: ${op.event.table} ${op.event.op} by ${rule}`;
        }
        if ("tags" in op) {
          const tag = op.tags.find((t) => registration.tags.includes(t));
          if (tag) return `invalidated: ${tagTable(tag.replace(/^drizzle:table:/, ""))} by tag`;
        } else if ("keys" in op) {
          if (op.keys.includes(QUERY_KEY + key)) return "invalidated: by key";
        } else return "invalidated: by prefix or pattern";
      }
    }
    return "evicted or expired";
  }
}

/** A dependency lookup holding one entry: what the planner would find of it. */
function singleEntry(key: string, registration: Readonly<Registration>): DependencyLookup {
  return {
    keysForTag: (tag) => (registration.tags.includes(tag) ? [key] : []),
    listsOn: (table) =>
      registration.lists.filter((l) => l.table === table).map((l) => [key, l] as const),
    listedOn: (_, table) => registration.lists.some((l) => l.table === table),
  };
}

/** The planner's schema as the adapter knows Conduit's: single-column primary keys, the rest keyless. */
function conduitPlanSchema(): PlanSchema {
  const keys = new Map<string, string>();
  for (const value of Object.values(conduitSchema)) {
    if (!isTable(value)) continue;
    const config = getTableConfig(value);
    const primary = config.columns.filter((c) => c.primary);
    if (primary.length === 1) keys.set(config.name, primary[0]!.name);
  }
  return {
    primaryKey: (table) => keys.get(table),
    joinColumns: () => [],
    keyless: (table) => !keys.has(table),
  };
}

function isTable(value: unknown): value is SQLiteTable {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as Record<symbol, unknown>)[Symbol.for("drizzle:IsDrizzleTable")] === true
  );
}
