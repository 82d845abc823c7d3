import type postgres from "postgres";

/**
 * `sql.begin(fn)` that survives the server going away mid-transaction.
 *
 * When a connection closes, postgres.js rejects its queries (CONNECTION_CLOSED, ECONNRESET)
 * and then `begin` rejects through the connection's close. But `begin` also sends ROLLBACK
 * once `fn` rejects, and by then the connection has no socket: postgres.js 3.4 writes it
 * from a `setImmediate` (`socket.write` of null in `nextWrite`), a throw outside any promise
 * that ends the process. So a transaction that failed because its connection is gone never
 * settles its `fn`: nothing is sent on the dead connection, and the caller still gets the
 * error from `begin`. What stays behind is one pending closure per transaction in flight
 * at the moment of a disconnect. Any other error rolls back as usual.
 */
export function transaction<T>(
  sql: postgres.Sql,
  fn: (tx: postgres.TransactionSql) => Promise<T>,
  mode = "",
): Promise<T> {
  const body = (tx: postgres.TransactionSql) =>
    fn(tx).catch((error: unknown) => {
      if (connectionGone(error)) return new Promise<never>(() => {});
      throw error;
    });
  return (mode ? sql.begin(mode, body) : sql.begin(body)) as Promise<T>;
}

/**
 * What postgres.js raises for a query whose connection's socket is already gone: its own
 * CONNECTION_* codes and Node's socket errors (ECONNRESET, EPIPE). A server's shutdown
 * error (57P01) arrives while the socket is open and rolls back normally.
 */
function connectionGone(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("CONNECTION_") || /^E[A-Z]+$/.test(code));
}
