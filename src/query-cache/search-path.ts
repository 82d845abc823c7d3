import type { ResolveTable } from "../database/analysis/names.ts";
import { qualified } from "../database/analysis/predicates.ts";
import type { SqlClient } from "../database/client.ts";
import {
  CHANGES_SEARCH_PATH,
  readSearchPath,
  type SearchPath,
  schemaOf,
} from "../database/postgres/search-path.ts";

/**
 * How often the search path's tables are read again, ms: a table created around the cache
 * in a schema earlier in the path than the one a name reached is seen within this.
 */
const REFRESH_MS = 10_000;

/**
 * The tables a PostgreSQL client's statements name without their schema, placed as its
 * session's search path places them (`options: "-c search_path=app"`, `ALTER ROLE ... SET
 * search_path`, `$user`), read from the catalog on the client. Until the path is read, while
 * a read after a schema change through the cache is under way, and after a statement through
 * the cache changed the session's path or role (on a pool, which connections it changed
 * cannot be told), a bare name is placed nowhere: its reads are not cached and its writes
 * empty the cache's reads, never a read answered for the wrong table.
 */
export class SearchPathNames {
  readonly #client: Pick<SqlClient, "run">;
  /** Called when a name reaches another table than before: what was cached by it is stale. */
  readonly #moved: () => Promise<void>;
  readonly #warn: (message: string) => void;
  #path: SearchPath | undefined;
  /** Schema changes through the cache so far, and how many the path was read after. */
  #generation = 0;
  #readAfter = -1;
  /** Names placed since the path was last read, whose table a new read may move. */
  #placed = new Set<string>();
  /** A statement through the cache changed the session's path or role. */
  #changed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #lastError = "";
  /** The read under way (or the last). */
  ready: Promise<void>;

  constructor(
    client: Pick<SqlClient, "run">,
    moved: () => Promise<void>,
    warn: (message: string) => void,
  ) {
    this.#client = client;
    this.#moved = moved;
    this.#warn = warn;
    this.ready = this.#read();
  }

  /**
   * `tables` with each bare name placed by the search path besides (`users` may be
   * `app.users`), or undefined (every table) when one cannot be placed.
   */
  placedNames(tables: readonly string[]): string[] | undefined {
    const out = new Set(tables);
    for (const t of tables) {
      if (t.includes(".")) continue;
      const schema = this.resolve(t);
      if (schema === undefined) return undefined;
      out.add(qualified({ db: schema, table: t }));
    }
    return [...out];
  }

  /** The schema a bare `table` reaches now (see ResolveTable). */
  resolve: ResolveTable = (table) => {
    if (this.#changed || this.#path === undefined || this.#readAfter !== this.#generation) {
      return undefined;
    }
    const schema = schemaOf(this.#path, table);
    if (schema !== undefined) this.#placed.add(table);
    return schema;
  };

  /** Whether a statement through the cache changed the session's path or role. */
  get changed(): boolean {
    return this.#changed;
  }

  /** The read of the path under way, while bare names wait for it; undefined otherwise. */
  pending(): Promise<void> | undefined {
    const usable = this.#path !== undefined && this.#readAfter === this.#generation;
    return usable || this.#changed ? undefined : this.ready;
  }

  /**
   * Notes a statement run through the cache: true the first time one changes the session's
   * search path or role, after which bare names are placed nowhere (the caller empties what
   * it cached by them).
   */
  seen(sql: string): boolean {
    if (this.#changed || !CHANGES_SEARCH_PATH.test(sql)) return false;
    this.#changed = true;
    this.#warn(
      "a statement changed the session's search_path or role: tables named without their schema are no longer cached (their reads run uncached, their writes empty this cache's reads); name the schema, or set the path for the pool or role",
    );
    return true;
  }

  /** A statement through the cache may have created, dropped or renamed tables: read again. */
  schemaChanged(): void {
    this.#generation++;
    this.ready = this.#read();
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  async #read(): Promise<void> {
    const generation = this.#generation;
    let path: SearchPath | undefined;
    try {
      path = await readSearchPath(this.#client);
    } catch (err) {
      const message = `the search path could not be read: ${(err as Error).message ?? err}; retrying`;
      // Once per cause: a read that keeps failing (a Worker's timer outside any request) warns once.
      if (message !== this.#lastError) this.#warn(message);
      this.#lastError = message;
    }
    // A read begun before a later schema change is not taken: the one after it is.
    if (this.#closed || generation !== this.#generation) return;
    if (path) {
      this.#lastError = "";
      const [before, placed] = [this.#path, this.#placed];
      this.#placed = new Set();
      this.#path = path;
      this.#readAfter = generation;
      const moved =
        before !== undefined && [...placed].some((t) => schemaOf(before, t) !== schemaOf(path, t));
      if (moved) await this.#moved();
    }
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.ready = this.#read();
    }, REFRESH_MS);
    this.#timer.unref?.();
  }
}
