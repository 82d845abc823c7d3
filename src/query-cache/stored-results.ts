import { LRUCache } from "lru-cache";
import type { Cache } from "../core/cache/index.ts";
import type { LogPosition } from "../core/change-log/contract.ts";
import { type ListDependency, tableTag } from "../core/deps/planner.ts";
import { groupPlan } from "../database/analysis/groups.ts";
import { type HiddenKeys, hiddenKeys } from "../database/analysis/hidden-keys.ts";
import { counted } from "../database/analysis/memberships.ts";
import {
  registrationOf,
  resultRows,
  type SqlDialect,
  type SqlShape,
  sqlShape,
  wholeTable,
} from "../database/analysis/shapes.ts";
import { encode, Uncacheable } from "./codec.ts";
import type { GroupRead, Refused } from "./group-patches.ts";
import { HeldResults } from "./held-results.ts";
import { patchableMeta } from "./result-patches.ts";
import type { SearchPathNames } from "./search-path.ts";
import type { ResultForm, StatementDatabase, StoreOptions } from "./statement-contract.ts";
import type { QueryStats } from "./stats.ts";
import type { TableKnowledge } from "./table-knowledge.ts";

const JSON_TYPE = { "content-type": "application/json" };
/** Queries of recent stores remembered for reloading (the least recently used are forgotten). */
const KEPT_RERUNS = 10_000;

/** What a cached query is reloaded from: how it runs and how its result was stored. */
export interface Rerun<R> {
  /** Undefined where it cannot be run again: it is then not kept for reloads. */
  run: (() => Promise<R>) | undefined;
  options: StoreOptions<R> & Partial<GroupRead> & { groupRead?: GroupRead };
}

/** What StoredResults is given by its entry. */
export interface StoredResultsDeps<R> {
  engine: Cache;
  db: () => StatementDatabase<R>;
  form: ResultForm<R>;
  stats: QueryStats;
  tables: TableKnowledge;
  prefix: string;
  ttl: number;
  /** PostgreSQL: where the session's search path places bare names. */
  names: () => SearchPathNames | undefined;
  /** Whether results are patched in place after captured writes. */
  patching: () => boolean;
  /** Whether group patches keep results (see StatementCache's maintains). */
  maintained: () => boolean;
  /** The tables change capture reports on, as it names them. */
  captured: () => readonly string[];
}

/**
 * The results an entry on the statement cache stores: each with what it depends on (its
 * statement's registration, the tables the ORM names, its tags), and what it was read by,
 * to reload it, keep it by group patches, or answer a lookup of one of its rows from it.
 * The tags it stores results with are those `tableTag` and `userTag` give.
 */
export class StoredResults<R> {
  readonly #d: StoredResultsDeps<R>;
  /** Key -> the query behind it, for reloads and group patches. */
  readonly #reruns = new LRUCache<string, Rerun<R>>({ max: KEPT_RERUNS });
  /** Held results that lookups of one row may be answered from. */
  readonly #held: HeldResults<R>;

  constructor(deps: StoredResultsDeps<R>) {
    this.#d = deps;
    this.#held = new HeldResults(() => deps.db().dialect, deps.form);
  }

  /**
   * Whether a read's registration can be trusted: it names its tables, and every table
   * change capture may report on is named exactly as capture names it (a read of `USERS`
   * would be registered on a table capture never reports on).
   */
  cacheable(shape: SqlShape): boolean {
    if (shape.tables.length === 0 || shape.unresolved) return false;
    const captured = this.#d.captured();
    if (captured.length === 0) return true;
    const exact = new Set(captured);
    const folded = new Set(captured.map((t) => t.toLowerCase()));
    return shape.tables.every((t) => exact.has(t) || !folded.has(t.toLowerCase()));
  }

  /**
   * Keeps `result` as a load that began at `since` (undefined: refused as fenced), with what
   * it depends on: its statement's registration (rows, predicate, window), the tables the
   * ORM names, its tags; and kept for reloads by `rerun`.
   */
  async store(
    key: string,
    result: R,
    since: LogPosition | undefined,
    rerun: Rerun<R>,
  ): Promise<boolean> {
    return (await this.#store(key, result, since, rerun, false)) === true;
  }

  /** `store`, and with `follow`, what a refusal for later records names (see Refused). */
  async #store(
    key: string,
    result: R,
    since: LogPosition | undefined,
    rerun: Rerun<R>,
    follow: boolean,
  ): Promise<boolean | Refused> {
    const { stats } = this.#d;
    const options = rerun.options;
    // Before anything awaits: the caller gets `result` back and may change it.
    const kept = this.#d.form.kept(result);
    let body: string;
    try {
      body = encode(kept);
    } catch (err) {
      if (!(err instanceof Uncacheable)) throw err;
      stats.uncacheable(err);
      return false;
    }
    if (since === undefined) {
      stats.counts.fenced++;
      return false;
    }
    const ttl = options.ttl?.() ?? this.#d.ttl;
    if (ttl <= 0) return false;
    try {
      const named = options.tables ?? [];
      if (this.#d.names()?.changed && named.some((t) => !t.includes("."))) {
        stats.uncacheable(new Error("a statement changed the session's search_path"));
        return false;
      }
      const registered = this.#registered(rerun, result, kept, named);
      if (registered === undefined) {
        // The ORM names the tables of its FROM and joins only: a subquery or a `sql`
        // fragment may read others, which only the parser would have found.
        stats.uncacheable(new Error("its SQL could not be read for the tables it reads"));
        return false;
      }
      const { tags, lists, meta, tables } = registered;
      // A result registered on no table (Drizzle's `autoInvalidate: false`: its tags alone)
      // is not current after a write, so it answers no other lookup.
      const read = tables.length > 0 ? this.#groupRead(options) : undefined;
      // Only a count kept by a write's rows needs its load exact (see toldValues, and
      // count-deltas.ts for a count of the select's rows).
      const tallied =
        read !== undefined &&
        this.#d.maintained() &&
        (!!groupPlan(read.shape)?.tallies.length || counted(read.shape));
      const { stored, entry, followed } = await this.#d.engine.storeLoaded(
        key,
        {
          body,
          headers: JSON_TYPE,
          tags: [
            ...tables.map((t) => this.tableTag(t)),
            ...(options.tags ?? []).map((t) => this.userTag(t)),
            ...tags,
          ],
          ...(lists.length > 0 && { lists }),
          ...(meta && { meta }),
          ttl,
          staleWhileRevalidate: 0,
        },
        since,
        // Only a result that may be patched needs the log's word on whether its load was
        // exact (with capture, a look at the change table), and a row patch's before the
        // select returns: a write right after it would otherwise remove what it could patch.
        // A result with counts group patches keep by a write's rows (only where the load
        // was exact) is told later, by capture's next look (no statement). Others are never
        // asked, and do not wait for the shared tiers either.
        {
          ...(this.#d.db().storesLater &&
            meta === undefined && {
              later: true,
              ...(tallied ? { patient: true } : { exact: false }),
            }),
          follow,
        },
      );
      if (!stored) {
        stats.counts.fenced++;
        return followed ? { entry, followed } : false;
      }
      stats.stored(tables);
      if (rerun.run) this.#reruns.set(key, rerun);
      if (read) this.#held.stored(key, read);
      options.stored?.(ttl);
      return true;
    } catch (err) {
      stats.fault("put", err);
      return false;
    }
  }

  /**
   * Stores `result` for a key stored before, as that store did but for `ttl` ms (a group
   * patch's, which keeps the entry's expiry); false where its read is forgotten, or
   * what it was refused for where records since `at` concern it and can be followed.
   */
  storeAgain(key: string, result: R, at: LogPosition, ttl: number): Promise<boolean | Refused> {
    const rerun = this.#reruns.get(key);
    if (!rerun) return Promise.resolve(false);
    const options = { ...rerun.options, ttl: () => ttl };
    return this.#store(key, result, at, { ...rerun, options }, true);
  }

  /** How a key's result is run again, where it is still known. */
  rerunOf(key: string): Rerun<R> | undefined {
    return this.#reruns.get(key);
  }

  /** The statement a key's result was read by, where it is still known (group patches). */
  readOf(key: string): GroupRead | undefined {
    const o = this.#reruns.get(key)?.options;
    return o && this.#groupRead(o);
  }

  /** An ORM's statement as group patches and held answers read it. */
  ormRead(q: NonNullable<StoreOptions<R>["query"]>): GroupRead {
    const resolve = this.#d.names()?.resolve;
    const shape = sqlShape(q.sql, q.params, q.dialect, this.#d.tables.schema, resolve);
    return { sql: q.sql, params: q.params, shape };
  }

  /**
   * An ORM's statement as run with the base columns it does not show carried after its own
   * (see database/analysis/hidden-keys.ts), and its read; undefined where nothing is gained.
   */
  hiddenRead(
    read: GroupRead,
    dialect: SqlDialect,
  ): { hidden: HiddenKeys; read: GroupRead } | undefined {
    const resolve = this.#d.names()?.resolve;
    const schema = this.#d.tables.schema;
    const reshape = (sql: string) => sqlShape(sql, read.params, dialect, schema, resolve);
    const hidden = hiddenKeys(read.shape, read.sql, read.params, dialect, reshape);
    if (!hidden) return undefined;
    return { hidden, read: { sql: hidden.sql, params: hidden.params, shape: hidden.shape } };
  }

  /**
   * A lookup `read` answered from a held result of the same rows source that shows its row
   * (see HeldResults), counted as a hit under `sql`; undefined when none does.
   */
  async answered(read: GroupRead, sql: string | undefined): Promise<R | undefined> {
    const { engine, stats } = this.#d;
    try {
      const result = await this.#held.answer(read, (k) => engine.getEntry(k, { count: false }));
      if (result === undefined) return undefined;
      stats.lookup(true, sql);
      stats.groups.answered++;
      return result;
    } catch (err) {
      stats.fault("get", err);
      return undefined;
    }
  }

  /**
   * The tag `execute` and `invalidate` remove a table's reads by. Names are folded to lower
   * case: an unquoted name is one table in any case (SQLite; PostgreSQL folds it), and two
   * quoted names that differ only in case merely share a tag.
   */
  tableTag(table: string): string {
    return `${this.#d.prefix}table:${table.toLowerCase()}`;
  }

  /** The tag of an ORM's user tag (Drizzle's `$withCache({ tag })`, `onMutate({ tags })`). */
  userTag(tag: string): string {
    return `${this.#d.prefix}tag:${tag}`;
  }

  /** The statement a result was read by, for group patches and held answers. */
  #groupRead(o: Rerun<R>["options"]): GroupRead | undefined {
    if (o.sql !== undefined && o.shape && o.params) return o as GroupRead;
    // An ORM's statement (Drizzle's), read once it is asked for.
    const q = o.query;
    if (!q) return undefined;
    o.groupRead ??= this.ormRead(q);
    return o.groupRead;
  }

  /**
   * What a result depends on, in the planner's tags (`users`, `users#1`) and lists, and the
   * tables it reads (table tags stay beside them, for `invalidate` and the stats), from its
   * statement's shape, and the tables the ORM `named` as every row of each, where the parser
   * found them not: a write it cannot analyse drops the table tag, any other the list.
   * Undefined when the ORM's statement cannot be read.
   */
  /**
   * An ORM statement's shape, read once for its query (a result stored again after each
   * write, by a group patch, reads the same) while what the tables are known to be holds.
   */
  #shapeOf(query: NonNullable<StoreOptions<R>["query"]>) {
    const version = this.#d.tables.version;
    const known = this.#shapes.get(query);
    if (known?.version === version) return known.shape;
    const shape = sqlShape(query.sql, query.params, query.dialect, this.#d.tables.schema);
    this.#shapes.set(query, { version, shape });
    return shape;
  }

  readonly #shapes = new WeakMap<object, { version: number; shape: SqlShape }>();

  #registered(rerun: Rerun<R>, result: R, kept: unknown, named: readonly string[]) {
    const { shape: read, query, sql, asked } = rerun.options;
    const schema = this.#d.tables.schema;
    // An ORM's statement is read where it names tables (with Drizzle's automatic
    // invalidation off it names none, and the result depends on its tags alone).
    const shape = read ?? (query && named.length > 0 ? this.#shapeOf(query) : undefined);
    if (shape === undefined) return { ...wholeTables(named), meta: undefined, tables: named };
    if (!read && shape.fallback === "parse") return undefined;
    const registration = registrationOf(shape, resultRows(kept));
    this.#d.stats.registrations.count(shape, registration.widened, sql ?? asked ?? query?.sql);
    // Patched only once the table's column kinds are known: a patch writes captured values
    // back in the forms those kinds say (an instant as the driver gives it).
    const table = shape.lists?.table;
    const patchable =
      this.#d.patching() &&
      table !== undefined &&
      this.#d.tables.kindsKnown(table) &&
      (this.#d.form.patchable?.(result) ?? true);
    const meta = patchable ? patchableMeta(shape, schema) : undefined;
    for (const t of named) {
      if (shape.tables.includes(t)) continue;
      registration.tags.push(tableTag(t));
      registration.lists.push(wholeTable(t));
    }
    return { ...registration, meta, tables: [...new Set([...named, ...shape.tables])] };
  }
}

/**
 * What a query that read `tables` depends on when its SQL is not known: every row of each
 * table (a list without filter or bound), and the table tag for writes the planner cannot
 * analyse. A captured change to any row of them removes it.
 */
function wholeTables(tables: readonly string[]): { tags: string[]; lists: ListDependency[] } {
  return { tags: tables.map(tableTag), lists: tables.map(wholeTable) };
}
