/**
 * What a proxy callback of edgecache's (drizzle-orm's sqlite-proxy driver, see
 * better-sqlite3.ts) tells `withTransactions`, without importing it (it is Node only): the
 * client behind it, and how a transaction takes the connection to itself.
 */

/** Set on the callback: `db.session.client[PROXIED]`. */
export const PROXIED = Symbol.for("edgecache.drizzle.proxied");

export interface ProxiedClient {
  /** The application's client the statements run on (a better-sqlite3 `Database`). */
  readonly client: unknown;
  /** Runs `work` (a transaction) once the connection is free, with it to itself. */
  exclusive<T>(work: () => Promise<T>): Promise<T>;
  /**
   * Whether the caller runs inside such a transaction. The transaction shares the
   * database's session (sqlite-proxy runs it there), so a query prepared outside it while
   * it is open must not take the transaction's cache.
   */
  inTransaction(): boolean;
  /**
   * Runs a select of the cache's own (a group patch's) as a statement from outside every
   * transaction, whatever context it was started from (a capture follower first started
   * inside a transaction carries it): it waits while one has the connection.
   */
  read(sql: string, params: readonly unknown[]): Promise<unknown[]>;
}

/** The proxied client behind a Drizzle session's callback, if it is one of edgecache's. */
export function proxiedOf(session: { client?: unknown } | undefined): ProxiedClient | undefined {
  const callback = session?.client;
  if (typeof callback !== "function") return undefined;
  return (callback as unknown as Record<symbol, ProxiedClient | undefined>)[PROXIED];
}
