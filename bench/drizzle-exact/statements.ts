/**
 * The statements bench:drizzle-exact's application sends, counted in all (the
 * application's and capture's apart) and, through AsyncLocalStorage, per request. Used in
 * this process and inside workerd by the D1 Worker (with the `nodejs_als` flag).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { isCaptureStatement } from "./queries.ts";

/** Statements sent to the database, by their SQL. */
export interface StatementCounter {
  count(sql: string): void;
}

export class Statements implements StatementCounter {
  total = 0;
  capture = 0;
  #request = new AsyncLocalStorage<{ n: number }>();

  count(sql: string): void {
    if (isCaptureStatement(sql)) {
      this.capture++;
      return;
    }
    this.total++;
    const mine = this.#request.getStore();
    if (mine) mine.n++;
  }

  /** Runs one request; resolves with its result and the statements it sent. */
  async within<T>(run: () => Promise<T>): Promise<{ value: T; statements: number }> {
    const mine = { n: 0 };
    const value = await this.#request.run(mine, run);
    return { value, statements: mine.n };
  }
}
