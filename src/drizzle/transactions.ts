import type { Cache as DrizzleCacheContract, MutationOption } from "drizzle-orm/cache/core";
import { badOption, checkOptionNames, EdgecacheError, type OptionNames } from "../core/errors.ts";
import type { SqlDialect } from "../database/analysis/shapes.ts";
import { clientKind } from "../database/client-kind.ts";
import type { D1QueriesLike } from "../database/d1/binding.ts";
import { countingBinding } from "../database/d1/own-changes.ts";
import type { QueryCapture } from "../query-cache/query-capture.ts";
import { EdgecacheDrizzleCache } from "./cache.ts";
import { type ProxiedClient, proxiedOf } from "./proxied.ts";
import { dialectOf, learnTable, shapeSelect } from "./selects.ts";

/**
 * The parts of a Drizzle database this reaches: its session (which hands each prepared
 * query its cache) and `transaction`. Drizzle marks `session` internal; these are the one
 * place edgecache touches it, and a test per driver checks that they still hold.
 */
interface SessionLike {
  cache?: DrizzleCacheContract;
  /** sqlite-proxy's callback (see proxied.ts). */
  client?: unknown;
  prepareQuery: (...args: unknown[]) => object;
}
interface DatabaseLike {
  $cache?: unknown;
  $client?: unknown;
  session?: SessionLike;
  /** Drizzle's own: `fullSchema` holds the schema given to `drizzle(client, { schema })`. */
  _?: { fullSchema?: Record<string, unknown> };
  transaction?: (run: (tx: DatabaseLike) => unknown, config?: unknown) => Promise<unknown>;
}

/**
 * drizzle-orm's better-sqlite3 driver (0.45) runs its queries synchronously and never asks a
 * cache: it drops the `cache` option given to `drizzle()`. What to do instead, in the error.
 */
function betterSqliteRefused(): EdgecacheError {
  return new EdgecacheError(
    "E_BAD_OPTION",
    "drizzle",
    'option "db": drizzle-orm/better-sqlite3 runs queries synchronously and drops the `cache` option, so no cache can see them; give the same Database to drizzle-orm/sqlite-proxy through betterSqliteProxy (import { betterSqliteProxy } from "edgecache/drizzle/better-sqlite3"; const proxy = betterSqliteProxy(database); drizzle(proxy, proxy.batch, { cache: drizzleCache(...) }))',
  );
}

const MUTATIONS = new Set(["insert", "update", "delete"]);
const EXECUTORS = ["execute", "run", "all", "get", "values"] as const;
const WRAPPED = Symbol("edgecache.withTransactions");
const IS_TABLE = Symbol.for("drizzle:IsDrizzleTable");

/** Whether a value of Drizzle's schema is a table (not its relations). */
function isTable(value: unknown): value is object {
  return typeof value === "object" && value !== null && IS_TABLE in value;
}

export interface WithTransactionsOptions {
  /**
   * Follow change capture when it is installed in the database (true by default): see
   * `withTransactions`. False keeps table-level invalidation.
   */
  capture?: boolean;
}

/** Every option of WithTransactionsOptions: checkOptionNames refuses any other. */
const OPTIONS: OptionNames<WithTransactionsOptions> = {
  capture: true,
};
/**
 * Makes a Drizzle database built with `drizzleCache` exact where Drizzle's cache hooks
 * alone cannot be, and returns it:
 *
 * - a mutation's tables are invalidated again once the statement has finished, so a select
 *   that ran while it was in flight (Drizzle invalidates when it starts) cannot leave the
 *   old rows cached (the write fence refuses them, or this removes them);
 * - inside `db.transaction(...)`, selects are neither served from the cache nor stored,
 *   and the transaction's invalidations wait for its commit (dropped on rollback);
 * - with change capture installed in the database (`npx edgecache capture install --db
 *   ...`; libSQL on a file, postgres.js, better-sqlite3), it follows capture: every change
 *   to a captured table, through Drizzle or around it, reaches the planner with its old and
 *   new rows, and a mutation, instead of emptying its tables, returns once capture has
 *   applied its own changes (a transaction, at commit). `getStats().writes` says which.
 *
 * Drizzle's `Cache` interface is not told when a statement ends or which transaction it
 * belongs to, so this wraps the database's session and `transaction`.
 *
 * @example
 * const db = withTransactions(drizzle(client, { cache: drizzleCache({ tiers: [memoryStore()] }) }));
 */
export function withTransactions<DB extends object>(
  db: DB,
  options: WithTransactionsOptions = {},
): DB {
  checkOptionNames("drizzle", options, OPTIONS);
  const d = db as DatabaseLike;
  const cache = d.$cache;
  if (!(cache instanceof EdgecacheDrizzleCache)) {
    if (clientKind(d.$client) === "better-sqlite3") throw betterSqliteRefused();
    badOption("drizzle", "db", "a Drizzle database made with { cache: drizzleCache(...) }", cache);
  }
  const session = d.session;
  if (
    !session ||
    typeof session.prepareQuery !== "function" ||
    typeof d.transaction !== "function"
  ) {
    badOption("drizzle", "db", "a Drizzle database with a session and transactions", db);
  }
  // drizzle-orm's sqlite-proxy driver keeps no $client: edgecache's proxy names its own.
  const proxied = proxiedOf(session);
  const client = d.$client ?? proxied?.client;
  const follow = options?.capture ?? true;
  if (typeof follow !== "boolean") badOption("drizzle", "capture", "true or false", follow);
  if ((d as Record<symbol, unknown>)[WRAPPED]) return db;
  (d as Record<symbol, unknown>)[WRAPPED] = true;
  // The application's own tables teach their foreign keys (cascades) up front, and their
  // schemas, whose catalog is then read; and their keys and column kinds, for the tables
  // a select reads only in a subquery or a `sql` fragment (a link table, say).
  const dialect = dialectOf(d);
  for (const table of Object.values(d._?.fullSchema ?? {})) {
    if (!isTable(table)) continue;
    cache.learnForeignKeys(table);
    if (dialect) learnTable(table, cache, dialect);
  }
  // On edgecache's proxy, the cache's own selects wait, as Drizzle's do, for a transaction
  // that has the one connection: run beside it, they would read its uncommitted rows.
  const run = proxied && ((sql: string, params: readonly unknown[]) => proxied.read(sql, params));
  const capture = follow
    ? cache.followCapture(client, run || undefined, proxied !== undefined)
    : undefined;
  if (!follow) cache.readCatalog(client);
  settleMutations(session, cache, dialect, capture, client, proxied);
  // D1's meta.changes counts capture's trigger rows too: the session's statements go to a
  // binding that sends each write's own count (drizzle-orm/d1 prepares on `session.client`).
  if (clientKind(client) === "d1" && session.client === client) {
    session.client = countingBinding(client as D1QueriesLike);
  }
  const bound = d.transaction.bind(d);
  // On one connection shared by every request (the proxy), a transaction has it to itself.
  const transaction: typeof bound = proxied
    ? (run, config) => proxied.exclusive(() => bound(run, config))
    : bound;
  d.transaction = async (run, config) => {
    const scope = new TransactionScope();
    const restore: (() => void)[] = [];
    try {
      const result = await transaction((tx) => {
        enter(tx, scope, restore);
        return run(tx);
      }, config);
      // Committed: the transaction's changes are visible, so now they invalidate (with
      // capture: once capture has applied them; only tags named inside remain to go).
      for (const undo of restore) undo();
      const held = scope.invalidations();
      await settle(cache, capture, await cache.cascadeKnown(held.tables as string[]));
      await cache.onMutate({ tags: held.tags });
      return result;
    } catch (err) {
      // Rolled back: nothing it wrote was ever visible outside it.
      for (const undo of restore) undo();
      throw err;
    }
  };
  return db;
}

/** The cache a transaction's queries see: never serves, never stores, holds invalidations. */
class TransactionScope implements DrizzleCacheContract {
  #tables = new Set<unknown>();
  #tags = new Set<string>();

  strategy(): "explicit" {
    return "explicit";
  }

  async get(): Promise<undefined> {
    return undefined;
  }

  async put(): Promise<void> {}

  async onMutate(params: MutationOption): Promise<void> {
    for (const t of [params.tables ?? []].flat()) this.#tables.add(t);
    for (const t of [params.tags ?? []].flat()) this.#tags.add(t);
  }

  invalidations(): MutationOption {
    return { tables: [...this.#tables] as string[], tags: [...this.#tags] };
  }
}

/** Points a transaction (and the nested ones it opens) at the scope. */
function enter(tx: DatabaseLike, scope: TransactionScope, restore: (() => void)[]): void {
  const session = tx.session;
  if (session && session.cache !== scope) {
    // Some drivers run a transaction on the database's own session (node-postgres on a
    // single Client): its cache is put back once the transaction ends.
    const previous = session.cache;
    session.cache = scope;
    restore.push(() => {
      if (session.cache === scope) session.cache = previous;
    });
  }
  const nested = tx.transaction;
  if (typeof nested === "function" && !(tx as Record<symbol, unknown>)[WRAPPED]) {
    (tx as Record<symbol, unknown>)[WRAPPED] = true;
    // A savepoint's invalidations stay held even if it rolls back alone: at worst a few
    // entries go that did not need to.
    tx.transaction = (run, config) =>
      nested.call(
        tx,
        (inner) => {
          enter(inner, scope, restore);
          return run(inner);
        },
        config,
      );
  }
}

/**
 * Wraps the session's prepared mutations so that, once one has finished, its tables are
 * invalidated again before the caller sees the result; with capture covering its tables,
 * so that it returns once capture has applied its changes instead.
 */
function settleMutations(
  session: SessionLike,
  cache: EdgecacheDrizzleCache,
  dialect: SqlDialect | undefined,
  capture: QueryCapture | undefined,
  client: unknown,
  proxied: ProxiedClient | undefined,
): void {
  const prepareQuery = session.prepareQuery;
  session.prepareQuery = function (this: SessionLike, ...args: unknown[]) {
    const prepared = prepareQuery.apply(this, args) as Record<string, unknown>;
    const text = (args[0] as { sql?: unknown } | undefined)?.sql;
    if (typeof text === "string") cache.seen(text);
    // A query from outside an open transaction that shares this session (the proxy) is
    // not the transaction's: it gets the database's cache, not the transaction's scope.
    if (proxied && !proxied.inTransaction() && prepared.cache instanceof TransactionScope) {
      prepared.cache = cache;
    }
    // Every driver's prepareQuery takes the query's metadata sixth: { type, tables }.
    const meta =
      (args[5] as { type?: string; tables?: string[] } | undefined) ??
      (dialect && relationalQuery(prepared, args, cache, dialect));
    // Selects hand their SQL and parameters to the cache's put (fields come second).
    if (meta?.type === "select" && dialect) shapeSelect(prepared, args[1], cache, dialect);
    if (!meta?.type || !MUTATIONS.has(meta.type) || !meta.tables?.length) return prepared;
    // Its own tables and those its foreign keys' actions may change (cascades).
    const tables = cache.cascade(meta.tables);
    void capture?.want(tables);
    // The cache of a statement run against the database itself (in a transaction it is the
    // transaction's scope). Drizzle's own invalidation, made as the statement starts, covers
    // the cascades too, and leaves out tables whose changes capture applies.
    let own: unknown = cache;
    if (prepared.cache === cache) own = prepared.cache = mutationCache(cache, capture, tables);
    let depth = 0;
    for (const name of EXECUTORS) {
      const method = prepared[name];
      if (typeof method !== "function") continue;
      prepared[name] = function (this: unknown, ...callArgs: unknown[]) {
        const outer = depth === 0;
        depth++;
        let result: unknown;
        try {
          result = method.apply(this, callArgs);
        } finally {
          depth--;
        }
        // Only a statement run against the database itself: one inside a transaction has
        // the transaction's scope as its cache and invalidates at commit.
        if (!outer || !(result instanceof Promise) || prepared.cache !== own) return result;
        return result.then(
          async (value) => {
            await settle(cache, capture, await cache.cascadeKnown(tables));
            return value;
          },
          async (err) => {
            cache.statementFailed(client, err);
            // A failed statement may still have changed rows (a driver error after commit).
            await settle(cache, capture, await cache.cascadeKnown(tables));
            throw err;
          },
        );
      };
    }
    return prepared;
  };
}

/**
 * Once a statement (or a transaction) that changed `tables` has finished: tables whose
 * changes this node applies through capture wait for them (exact, by rows); the others, or
 * all of them when capture cannot promise it, are invalidated as tables.
 */
async function settle(
  cache: EdgecacheDrizzleCache,
  capture: QueryCapture | undefined,
  tables: readonly string[],
): Promise<void> {
  const covered = capture ? tables.filter((t) => covers(cache, capture, t)) : [];
  let left = tables.filter((t) => !covered.includes(t));
  if (covered.length > 0 && !(await capture!.settled(covered))) left = [...tables];
  if (left.length > 0) await cache.onMutate({ tables: left });
}

/** Whether capture applies the changes of `table` here, under the name Drizzle gives it. */
function covers(cache: EdgecacheDrizzleCache, capture: QueryCapture, table: string): boolean {
  return capture.covers([table]) && cache.capturedAs(table);
}

/**
 * The adapter as a mutation's prepared query sees it: Drizzle's invalidation as the
 * statement starts goes to `tables` (the statement's own and its cascades), less those
 * capture covers (capture removes what their rows touch).
 */
function mutationCache(
  cache: EdgecacheDrizzleCache,
  capture: QueryCapture | undefined,
  tables: readonly string[],
): DrizzleCacheContract {
  return {
    strategy: () => cache.strategy(),
    get: (...args) => cache.get(...args),
    put: (...args) => cache.put(...args),
    onMutate: (params) =>
      cache.onMutate({
        tables: capture ? tables.filter((t) => !covers(cache, capture, t)) : [...tables],
        tags: params.tags,
      }),
  };
}

/**
 * A relational query (`db.query.users.findMany(...)`): Drizzle prepares it without
 * metadata (no fields, a result mapper, the rows in array mode), so its cache never sees
 * it. Given metadata as a select of the tables its SQL reads, it is cached like one, on
 * the raw rows the mapper then reads. Undefined for anything else, or when the SQL's tables
 * cannot be read (it stays uncached).
 */
function relationalQuery(
  prepared: Record<string, unknown>,
  args: unknown[],
  cache: EdgecacheDrizzleCache,
  dialect: SqlDialect,
): { type: "select"; tables: string[] } | undefined {
  const [query, fields, , arrayMode, mapper] = args;
  if (fields !== undefined || arrayMode !== true || typeof mapper !== "function") return undefined;
  const sql = (query as { sql?: unknown } | undefined)?.sql;
  if (typeof sql !== "string" || !("queryMetadata" in prepared)) return undefined;
  const tables = cache.tablesRead(sql, dialect);
  if (!tables) return undefined;
  const meta = { type: "select" as const, tables };
  prepared.queryMetadata = meta;
  return meta;
}
