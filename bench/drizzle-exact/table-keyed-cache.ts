import { entityKind, getTableName, is, Table } from "drizzle-orm";
import { Cache, type MutationOption } from "drizzle-orm/cache/core";

/**
 * An in-memory model of drizzle-orm's Upstash cache (`drizzle-orm/cache/upstash`), the
 * baseline of bench:drizzle-exact: what Drizzle's own cache interface gives when results
 * are keyed by the query's hash and invalidated per table.
 *
 * As upstash's does: a result is stored under its key in a hash per combination of the
 * tables it read, each table names the combinations that include it, and a mutation of a
 * table deletes every combination that includes it, so every cached query that read the
 * table; results are kept as JSON (Upstash's REST client stores JSON). Where it differs:
 * no TTL (upstash's default is 1 s unless `config.ex` says otherwise: a long one is its
 * best case for hit rate), no tags (the benchmark uses none), and memory instead of a
 * network round trip. Like upstash's, it has no write fence: Drizzle runs a mutation and
 * its `onMutate` together, so a select that read the old rows may store them after.
 */
export class TableKeyedCache extends Cache {
  static override readonly [entityKind]: string = "TableKeyedCache";
  /** Combination of tables ("orders,users") -> key -> JSON. */
  #combinations = new Map<string, Map<string, string>>();
  /** Table -> combinations that include it. */
  #byTable = new Map<string, Set<string>>();
  hits = 0;
  misses = 0;
  /** Entries deleted by mutations. */
  removed = 0;

  strategy(): "all" {
    return "all";
  }

  override async get(key: string, tables: string[]): Promise<unknown[] | undefined> {
    const json = this.#combinations.get(combination(tables))?.get(key);
    if (json === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    return JSON.parse(json) as unknown[];
  }

  override async put(key: string, response: unknown, tables: string[]): Promise<void> {
    if (tables.length === 0) return;
    const name = combination(tables);
    let entries = this.#combinations.get(name);
    if (!entries) {
      entries = new Map();
      this.#combinations.set(name, entries);
    }
    entries.set(key, JSON.stringify(asArrays(response)));
    for (const t of tables) {
      const set = this.#byTable.get(t) ?? new Set();
      set.add(name);
      this.#byTable.set(t, set);
    }
  }

  override async onMutate(params: MutationOption): Promise<void> {
    const tables = [params.tables ?? []].flat();
    for (const table of tables) {
      const name = is(table, Table) ? getTableName(table) : String(table);
      for (const c of this.#byTable.get(name) ?? []) {
        this.removed += this.#combinations.get(c)?.size ?? 0;
        this.#combinations.delete(c);
      }
      this.#byTable.delete(name);
    }
  }

  /** Entries stored now. */
  entries(): number {
    let n = 0;
    for (const entries of this.#combinations.values()) n += entries.size;
    return n;
  }
}

/**
 * libSQL's rows are array-like objects whose indexes JSON leaves out (Drizzle maps them by
 * index): kept as arrays, which Drizzle maps alike. Other results go as they are.
 */
function asArrays(response: unknown): unknown {
  if (!Array.isArray(response)) return response;
  return response.map((row) =>
    row !== null &&
    typeof row === "object" &&
    typeof (row as ArrayLike<unknown>).length === "number"
      ? Array.from(row as ArrayLike<unknown>)
      : row,
  );
}

function combination(tables: readonly string[]): string {
  return [...tables].sort().join(",");
}
