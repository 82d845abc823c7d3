import type { Cache as DrizzleCacheContract, MutationOption } from "drizzle-orm/cache/core";
import { badOption } from "../core/errors.ts";
import { EdgecacheDrizzleCache } from "./cache.ts";

/**
 * The parts of a Drizzle database this reaches: its session (which hands each prepared
 * query its cache) and `transaction`. Drizzle marks `session` internal; these are the one
 * place edgecache touches it, and a test per driver checks that they still hold.
 */
interface SessionLike {
  cache?: DrizzleCacheContract;
  prepareQuery: (...args: unknown[]) => object;
}
interface DatabaseLike {
  $cache?: unknown;
  session?: SessionLike;
  transaction?: (run: (tx: DatabaseLike) => unknown, config?: unknown) => Promise<unknown>;
}

const MUTATIONS = new Set(["insert", "update", "delete"]);
const EXECUTORS = ["execute", "run", "all", "get", "values"] as const;
const WRAPPED = Symbol("edgecache.withTransactions");

/**
 * Makes a Drizzle database built with `drizzleCache` exact where Drizzle's cache hooks
 * alone cannot be, and returns it:
 *
 * - a mutation's tables are invalidated again once the statement has finished, so a select
 *   that ran while it was in flight (Drizzle invalidates when it starts) cannot leave the
 *   old rows cached (the write fence refuses them, or this removes them);
 * - inside `db.transaction(...)`, selects are neither served from the cache nor stored,
 *   and the transaction's invalidations wait for its commit (dropped on rollback).
 *
 * Drizzle's `Cache` interface is not told when a statement ends or which transaction it
 * belongs to, so this wraps the database's session and `transaction`.
 *
 * @example
 * const db = withTransactions(drizzle(client, { cache: drizzleCache({ tiers: [memoryStore()] }) }));
 */
export function withTransactions<DB extends object>(db: DB): DB {
  const d = db as DatabaseLike;
  const cache = d.$cache;
  if (!(cache instanceof EdgecacheDrizzleCache)) {
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
  if ((d as Record<symbol, unknown>)[WRAPPED]) return db;
  (d as Record<symbol, unknown>)[WRAPPED] = true;
  settleMutations(session, cache);
  const transaction = d.transaction.bind(d);
  d.transaction = async (run, config) => {
    const scope = new TransactionScope();
    const restore: (() => void)[] = [];
    try {
      const result = await transaction((tx) => {
        enter(tx, scope, restore);
        return run(tx);
      }, config);
      // Committed: the transaction's changes are visible, so now they invalidate.
      for (const undo of restore) undo();
      await cache.onMutate(scope.invalidations());
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
 * invalidated again before the caller sees the result.
 */
function settleMutations(session: SessionLike, cache: EdgecacheDrizzleCache): void {
  const prepareQuery = session.prepareQuery;
  session.prepareQuery = function (this: SessionLike, ...args: unknown[]) {
    const prepared = prepareQuery.apply(this, args) as Record<string, unknown>;
    // Every driver's prepareQuery takes the query's metadata sixth: { type, tables }.
    const meta = args[5] as { type?: string; tables?: string[] } | undefined;
    if (!meta?.type || !MUTATIONS.has(meta.type) || !meta.tables?.length) return prepared;
    const tables = meta.tables;
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
        if (!outer || !(result instanceof Promise) || prepared.cache !== cache) return result;
        const settle = () => cache.onMutate({ tables });
        return result.then(
          async (value) => {
            await settle();
            return value;
          },
          async (err) => {
            // A failed statement may still have changed rows (a driver error after commit).
            await settle();
            throw err;
          },
        );
      };
    }
    return prepared;
  };
}
