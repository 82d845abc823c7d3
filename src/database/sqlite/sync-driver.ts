import type Database from "better-sqlite3";
import type { Row } from "../../core/data/query.ts";
import type { EdgecacheError } from "../../core/errors.ts";
import { type CatalogColumn, catalogColumns, type SqlResult } from "../client.ts";
import type { ClientKind } from "../client-kind.ts";
import type { Statement, Steps } from "../dialect.ts";
import { runSteps, runStepsAsync, type TransactionDriver, type WriteOptions } from "../driver.ts";
import { MarkedWrites } from "./change-table.ts";
import { isBusy, MAX_IN_PARAMS, toEdgecacheError, whenNotBusy } from "./dialect.ts";
import { PreparedStatements } from "./prepared.ts";

/** A failure after a transaction's work began: not tried again (whenNotBusy sees no code). */
class Begun {
  constructor(readonly cause: unknown) {}
}

/**
 * A synchronous SQLite connection as a driver: better-sqlite3's `Database`, or the `libsql`
 * package's (the same API), which a libSQL client's file is opened with. Statements are
 * prepared once and kept (the least recently used dropped first), and write transactions
 * wait for another connection's lock without blocking the event loop.
 *
 * libSQL does not reset a statement that failed with SQLITE_BUSY: it stays active, and the
 * connection's later writes are answered but never committed. Given `reopen`, a connection
 * that saw SQLITE_BUSY from a statement is closed and another opened before the next try
 * (transactions begin and end through `exec`, whose statements do not outlive it).
 */
export class SyncSqliteDriver implements TransactionDriver {
  readonly maxInParams = MAX_IN_PARAMS;
  readonly dialect = "sqlite";
  readonly kind: ClientKind;
  #db: Database.Database;
  readonly #owned: boolean;
  readonly #busyTimeout: number;
  readonly #reopen: (() => Database.Database) | undefined;
  readonly #guest: boolean;
  readonly #statements = new PreparedStatements((sql) => this.#db.prepare(sql));
  /** The writes whose rows change capture recorded under their mark. */
  readonly marked = new MarkedWrites();
  /**
   * busy_timeout as this driver last left it, on a connection of edgecache's own (`owned`),
   * which only this driver sets: 0 from the start (see #prepare), not read before every
   * write. Forgotten when a statement of the application's runs on it (`run`: it may set
   * it), and read again by the next write.
   */
  #knownTimeout: number | undefined;
  /** The connection's transaction wrapper (see #immediate), and the work it runs next. */
  #transaction!: Database.Transaction<() => unknown>;
  #work: (() => unknown) | undefined;

  constructor(
    db: Database.Database,
    options: {
      /** Closed by close(): opened by edgecache, not handed in by the application. */
      owned: boolean;
      busyTimeout: number;
      /** Opens another connection to the same database, after SQLITE_BUSY (libSQL). */
      reopen?: () => Database.Database;
      /** The client the connection is of: better-sqlite3's (the default), or libSQL's file. */
      kind?: ClientKind;
      /**
       * The application's connection, which edgecache runs the application's statements on
       * (raw SQL) and must leave as it is: foreign keys not switched on.
       */
      guest?: boolean;
    },
  ) {
    this.kind = options.kind ?? "better-sqlite3";
    this.#guest = options.guest ?? false;
    this.#db = db;
    this.#owned = options.owned;
    this.#busyTimeout = options.busyTimeout;
    this.#reopen = options.reopen;
    this.#prepare();
  }

  /** The connection statements run on now. */
  get db(): Database.Database {
    return this.#db;
  }

  /**
   * One statement on the connection as its application would run it (its busy_timeout, no
   * lock of edgecache's): a write's `returning` rows are the rows it changed.
   */
  async run(sql: string, params: readonly unknown[]): Promise<SqlResult> {
    this.#knownTimeout = undefined;
    const statement = this.#statements.get(sql);
    if (!statement.reader) return { rows: [], rowsAffected: statement.run([...params]).changes };
    const rows = statement.all([...params]) as SqlResult["rows"];
    return { rows, rowsAffected: statement.readonly ? 0 : rows.length };
  }

  columns(table: string): Promise<CatalogColumn[]> {
    return catalogColumns(this, table);
  }

  async read<T>(steps: Steps<T>): Promise<T> {
    // On a connection whose busy_timeout is 0 (edgecache's own, see #prepare), a read that
    // found the database busy (rollback-journal mode, a WAL being recovered) read nothing:
    // it is tried again after a pause (on a fresh connection, where one is opened anew),
    // as a write is. Elsewhere it waits as its application set the connection to.
    if (!this.#reopen && !this.#owned) return runSteps(steps, (s) => this.#run(s));
    return runStepsAsync(steps, (s) =>
      whenNotBusy(() => this.#repaired(() => this.#run(s)), this.#busyTimeout),
    );
  }

  async transaction<T>(steps: Steps<T>, options?: WriteOptions): Promise<T> {
    return this.locked(() =>
      runSteps(this.marked.steps(steps, options?.capture), (s) => this.#run(s)),
    );
  }

  error(cause: unknown): EdgecacheError {
    return toEdgecacheError(cause);
  }

  async close(): Promise<void> {
    this.#statements.clear();
    if (this.#owned && this.#db.open) this.#db.close();
  }

  /**
   * Runs `work` in a write transaction. BEGIN IMMEDIATE takes the write lock first: a
   * deferred transaction that reads before it writes would fail at once with SQLITE_BUSY when
   * another connection writes (SQLite calls no busy handler for a read lock's upgrade). Each
   * try gives up at once if the lock is taken (busy_timeout 0: SQLite's own wait would block
   * the event loop, and every request with it); the next comes after a pause, until
   * busyTimeout has passed. A try that failed was rolled back, so trying again is safe.
   */
  async locked<T>(work: () => T): Promise<T> {
    // Only a try whose work has not begun is tried again (its steps run once): a busy COMMIT
    // (rollback-journal mode) fails the write, rolled back.
    let began = false;
    try {
      return await whenNotBusy(
        () =>
          this.#repaired(() => {
            const saved =
              this.#knownTimeout ?? (this.#db.pragma("busy_timeout", { simple: true }) as number);
            if (this.#owned) this.#knownTimeout = saved;
            // Set only where it is not 0 already: each pragma took ~20 us in a busy server.
            if (saved !== 0) this.#setTimeout(0);
            try {
              return this.#immediate(() => {
                began = true;
                return work();
              });
            } catch (err) {
              throw began ? new Begun(err) : err;
            } finally {
              if (saved !== 0) this.#setTimeout(saved);
            }
          }),
        this.#busyTimeout,
      );
    } catch (err) {
      throw err instanceof Begun ? err.cause : err;
    }
  }

  /**
   * Runs `work` in an IMMEDIATE transaction, through one wrapper made per connection
   * (better-sqlite3 makes a wrapper's BEGIN, COMMIT and ROLLBACK statements when it is made:
   * a third of a small write's time, made anew for each). Not re-entered: `locked` is
   * synchronous inside, and better-sqlite3 runs a nested call as a savepoint of the outer.
   */
  #immediate<T>(work: () => T): T {
    this.#work = work;
    try {
      return this.#transaction.immediate() as T;
    } finally {
      this.#work = undefined;
    }
  }

  /** Runs `work`; after SQLITE_BUSY, a reopenable connection is replaced (see the class). */
  #repaired<T>(work: () => T): T {
    try {
      return work();
    } catch (err) {
      if (this.#reopen && isBusy(err instanceof Begun ? err.cause : err)) {
        this.#statements.clear();
        try {
          this.#db.close();
        } catch {
          // Closed already.
        }
        this.#db = this.#reopen();
        this.#prepare();
      }
      throw err;
    }
  }

  /** What every connection is given: foreign keys on, its transaction wrapper, busy_timeout 0 if owned. */
  #prepare(): void {
    const db = this.#db;
    // Off by default in SQLite; without it REFERENCES clauses are not enforced.
    if (!this.#guest) this.#guard(() => db.pragma("foreign_keys = ON"));
    this.#transaction = db.transaction(() => this.#work!());
    this.#knownTimeout = undefined;
    // A connection of edgecache's own keeps busy_timeout 0 (until a statement of the
    // application's runs on it: see run): a write takes no statements to set it and set it
    // back, and reads wait for a lock as writes do (see read).
    if (this.#owned) {
      this.#setTimeout(0);
      this.#knownTimeout = 0;
    }
  }

  /**
   * Sets busy_timeout. A pragma is compiled each time it is run: SQLite applies the setting
   * when it prepares the statement, and a prepared one re-prepares itself on its next run
   * (so it was not worth keeping; and the first run of a prepared read of the setting gives
   * what it was when prepared, not what it is).
   */
  #setTimeout(ms: number): void {
    this.#db.pragma(`busy_timeout = ${Math.trunc(ms)}`);
  }

  #run({ sql, params }: Statement): Row[] {
    const statement = this.#statements.get(sql);
    // A statement without rows (capture's DDL) is run; all() refuses it.
    if (!statement.reader) {
      statement.run(params);
      return [];
    }
    return statement.all(params) as Row[];
  }

  /** Runs driver work and turns anything thrown into an EdgecacheError without SQL text. */
  #guard<T>(work: () => T): T {
    try {
      return work();
    } catch (err) {
      throw toEdgecacheError(err);
    }
  }
}
