import { LRUCache } from "lru-cache";

/** Distinct SQL texts kept prepared per connection by default. */
export const MAX_PREPARED = 1000;

/**
 * A connection's prepared statements by SQL text, each prepared once and kept, the least
 * recently used dropped first past `max` (better-sqlite3 and libSQL's `libsql` package
 * compile a statement on each `prepare`). `clear` forgets them all (the connection was
 * opened again).
 */
export class PreparedStatements<S extends object> {
  readonly #prepare: (sql: string) => S;
  readonly #kept: LRUCache<string, S>;

  constructor(prepare: (sql: string) => S, max = MAX_PREPARED) {
    this.#prepare = prepare;
    this.#kept = new LRUCache({ max });
  }

  get(sql: string): S {
    let statement = this.#kept.get(sql);
    if (statement === undefined) {
      statement = this.#prepare(sql);
      this.#kept.set(sql, statement);
    }
    return statement;
  }

  clear(): void {
    this.#kept.clear();
  }
}
