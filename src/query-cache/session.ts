import { isRead, transactionControl } from "../database/analysis/writes.ts";
import type { StatementCache } from "./statements.ts";

/**
 * What one connection of the application is in, for the statement cache: outside a
 * transaction its statements are cached reads and settled writes; inside one (opened by
 * the ORM, or by the application's own `begin`) its reads run as they are, never served
 * nor stored (they may see the transaction's own writes), and its writes are settled when
 * it commits, forgotten when it rolls back.
 */
/** What a session asks of its statement cache. */
type Entry = Pick<StatementCache<unknown>, "written" | "tablesWritten" | "seen">;

export class Session {
  readonly #statements: Entry;
  /** While a transaction is open: what each of its writes named (undefined: cannot tell). */
  #written: (readonly string[] | undefined)[] | undefined;

  constructor(statements: Entry) {
    this.#statements = statements;
  }

  /** A transaction opened (by the ORM's driver). */
  begin(): void {
    this.#written = [];
  }

  /** The transaction ended; what its writes named, for `settle` once it committed. */
  end(): (readonly string[] | undefined)[] {
    const written = this.#written ?? [];
    this.#written = undefined;
    return written;
  }

  /** Returns once the cache has seen a committed transaction's writes. */
  async settle(written: readonly (readonly string[] | undefined)[]): Promise<void> {
    if (written.length === 0) return;
    const tables = written.includes(undefined)
      ? undefined
      : [...new Set(written.flatMap((t) => t ?? []))];
    await this.#statements.written(tables);
  }

  /**
   * One statement of the application: `run` runs it as it is, `cached` through the
   * statement cache. Its own `begin`, `commit` and `rollback` open and end a transaction
   * (a savepoint's `rollback to` does not).
   */
  async statement<T>(sql: string, run: () => Promise<T>, cached: () => Promise<T>): Promise<T> {
    const control = transactionControl(sql);
    if (control === "begin") {
      const result = await run();
      this.begin();
      return result;
    }
    if (control && this.#written) {
      const written = this.end();
      try {
        return await run();
      } finally {
        // Also after a failure: a driver error may come after the commit.
        if (control === "commit") await this.settle(written);
      }
    }
    if (this.#written) {
      const written = this.#written;
      // Placed before it runs: a statement that changes the search path places none after it.
      if (!isRead(sql)) written.push(await this.#statements.tablesWritten(sql));
      else await this.#statements.seen(sql);
      return run();
    }
    return cached();
  }
}
