/**
 * Counts the statements an app sends to its database: a proxy over the libSQL client the
 * app hands to Drizzle. Whatever else runs on that client is counted too, which is how a
 * cache that runs its own statements on the app's connection shows up here: statements on
 * edgecache's tables or SQLite's catalog are counted apart, as edgecache's.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Client, InStatement, Transaction } from "@libsql/client";

export interface StatementCounts {
  /** Statements of the app's own SQL (BEGIN and COMMIT of its transactions included). */
  app: number;
  /** Statements on edgecache's tables or the catalog, run on the app's client. */
  edgecache: number;
  /** Of `app`, the selects. */
  reads?: number;
  /**
   * With `seen`: the app's statements a perfect cache would still send, every write and each
   * distinct read (its SQL and arguments) once: a floor no cache goes below (a read a
   * write has changed must be read again, which this does not count).
   */
  floor?: number;
  seen?: Set<string>;
}

/** A request's own count, for the `x-statements` header. */
const request = new AsyncLocalStorage<{ statements: number }>();

/** Runs `work` with a count of the statements it sends, returned with its result. */
export async function countingRequest<T>(
  work: () => Promise<T>,
): Promise<{ result: T; statements: number }> {
  const counter = { statements: 0 };
  const result = await request.run(counter, work);
  return { result, statements: counter.statements };
}

const EDGECACHE_SQL = /_edgecache|sqlite_master|sqlite_schema|\bpragma\b/i;

function sqlOf(stmt: InStatement): string {
  return typeof stmt === "string" ? stmt : stmt.sql;
}

/** The client, counting into `counts` every statement sent through it. */
export function countingClient(client: Client, counts: StatementCounts): Client {
  const count = (sql: string, args?: unknown) => {
    if (EDGECACHE_SQL.test(sql)) counts.edgecache++;
    else {
      counts.app++;
      if (/^\s*select\b/i.test(sql)) counts.reads = (counts.reads ?? 0) + 1;
    }
    if (counts.seen && !EDGECACHE_SQL.test(sql)) {
      const read = /^\s*select\b/i.test(sql);
      const key = `${sql}\u0000${JSON.stringify(args ?? null)}`;
      if (!read || !counts.seen.has(key)) counts.floor = (counts.floor ?? 0) + 1;
      if (read) counts.seen.add(key);
    }
    const current = request.getStore();
    if (current) current.statements++;
  };
  const counted = <T>(sql: string, send: () => T): T => {
    count(sql);
    return send();
  };
  const argsOf = (stmt: InStatement) => (typeof stmt === "string" ? undefined : stmt.args);
  const countAll = (stmts: readonly InStatement[]) => {
    for (const s of stmts) count(sqlOf(s), argsOf(s));
  };
  const wrapTransaction = (tx: Transaction): Transaction =>
    new Proxy(tx, {
      get(target, prop) {
        switch (prop) {
          case "execute":
            return (stmt: InStatement) => {
              count(sqlOf(stmt), argsOf(stmt));
              return target.execute(stmt);
            };
          case "batch":
            return (stmts: InStatement[]) => {
              countAll(stmts);
              return target.batch(stmts);
            };
          case "executeMultiple":
            return (sql: string) => counted(sql, () => target.executeMultiple(sql));
          case "commit":
            return () => counted("COMMIT", () => target.commit());
          case "rollback":
            return () => counted("ROLLBACK", () => target.rollback());
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  return new Proxy(client, {
    get(target, prop) {
      switch (prop) {
        case "execute":
          return (stmt: InStatement, args?: never) => {
            count(sqlOf(stmt), args ?? argsOf(stmt));
            return args === undefined ? target.execute(stmt) : target.execute(stmt as string, args);
          };
        case "batch":
          return (stmts: InStatement[], mode?: never) => {
            // A batch runs in a transaction of its own: BEGIN and COMMIT besides its statements,
            // counted as the first statement's.
            const first = stmts[0] === undefined ? "" : sqlOf(stmts[0]);
            count(first);
            countAll(stmts);
            count(first);
            return target.batch(stmts, mode);
          };
        case "executeMultiple":
          return (sql: string) => counted(sql, () => target.executeMultiple(sql));
        case "transaction":
          return async (mode?: never) => {
            count("BEGIN");
            return wrapTransaction(await target.transaction(mode));
          };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
