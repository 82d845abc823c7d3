import type { Row } from "../core/data/query.ts";
import type { EdgecacheError } from "../core/errors.ts";
import type { SqlClient } from "./client.ts";
import type { Statement, Steps } from "./dialect.ts";

/** What a write asks of the driver beyond its statements. */
export interface WriteOptions {
  /**
   * Marks the rows change capture records for this write (see CapturingSource.recorded):
   * the data API's writes are recorded by the data API itself, and captured only if that
   * never happens (the node died between the commit and the record).
   */
  capture?: string;
}

/**
 * How statements reach a database, one per client (better-sqlite3, libSQL, postgres.js,
 * node-postgres, D1), whatever the entry point: a client (one statement as the application
 * would run it, the catalog), that also runs steps (see Steps) and maps its errors. What it
 * can do for writes is a capability: interactive transactions (TransactionDriver) or one
 * batch of statements (BatchDriver).
 */
export interface SqlDriver extends SqlClient {
  /** Bound values one IN list of a join's lookup takes at most. */
  readonly maxInParams: number;
  /** Runs steps outside a write transaction: reads and discovery. */
  read<T>(steps: Steps<T>): Promise<T>;
  /** Anything the driver threw as an EdgecacheError without SQL text. */
  error(cause: unknown): EdgecacheError;
  close(): Promise<void>;
}

/** A driver with interactive transactions (better-sqlite3, libSQL, postgres.js, node-postgres). */
export interface TransactionDriver extends SqlDriver {
  /**
   * Runs steps in one write transaction, with the rows change capture records marked with
   * `options.capture` inside it (the built-in drivers do; a driver of your own given to
   * `sqliteSource` need not: the source marks them in the steps it hands over); a throw
   * from the steps rolls it back.
   */
  transaction<T>(steps: Steps<T>, options?: WriteOptions): Promise<T>;
}

/**
 * A driver without interactive transactions (D1): a write is statements that do not
 * depend on each other's rows, run together in one batch, which is one transaction.
 */
export interface BatchDriver extends SqlDriver {
  /** Runs the statements in one batch, with the rows change capture records marked `options.capture`. */
  batch(statements: Statement[], options?: WriteOptions): Promise<Row[][]>;
}

/** Every driver has one of the two ways to write. */
export type Driver = TransactionDriver | BatchDriver;

/**
 * Whether `value` is a driver already (one written outside edgecache, see
 * sqlDriverConformance), not a library's client: no built-in client has `run`, `columns`,
 * `read` and `error` beside a way to write.
 */
export function isDriver(value: unknown): value is Driver {
  if (typeof value !== "object" || value === null) return false;
  const d = value as Record<string, unknown>;
  const writes = typeof d.transaction === "function" || typeof d.batch === "function";
  return (
    writes &&
    ["run", "columns", "read", "error", "close"].every((m) => typeof d[m] === "function") &&
    (d.dialect === "sqlite" || d.dialect === "postgres")
  );
}

export function isTransactional(driver: Driver): driver is TransactionDriver {
  return typeof (driver as Partial<TransactionDriver>).transaction === "function";
}

/** Runs steps synchronously (better-sqlite3, inside its transaction function). */
export function runSteps<T>(steps: Steps<T>, run: (statement: Statement) => Row[]): T {
  let next = steps.next();
  while (!next.done) next = steps.next(run(next.value));
  return next.value;
}

/** Runs steps one statement after another (postgres.js, D1). */
export async function runStepsAsync<T>(
  steps: Steps<T>,
  run: (statement: Statement) => Promise<Row[]>,
): Promise<T> {
  let next = steps.next();
  while (!next.done) next = steps.next(await run(next.value));
  return next.value;
}
