import type { Cache, MutationOption } from "drizzle-orm/cache/core";
import type { CacheConfig } from "drizzle-orm/cache/core/types";
import { decode, encode } from "../../src/query-cache/codec.ts";

/**
 * What Drizzle's own Upstash cache does (drizzle-orm 0.45, `cache/upstash/cache.js`), in
 * process memory: the baseline the fault tests show failing. Results go through JSON (as
 * @upstash/redis stores them), a mutation deletes its tables' entries when it starts (in
 * parallel with the statement, whether or not it is in a transaction), and a Table object
 * passed to `invalidate` is named by its original name, without its schema.
 *
 * `values: "exact"` stores results with edgecache's codec instead of JSON, so a test can
 * show its invalidation faults apart from its value faults.
 */
export class UpstashStyleCache implements Cache {
  #entries = new Map<string, { json: string; tables: string[] }>();
  #strategy: "explicit" | "all";
  #encode: (value: unknown) => string;
  #decode: (text: string) => unknown;

  constructor(options: { strategy?: "explicit" | "all"; values?: "json" | "exact" } = {}) {
    this.#strategy = options.strategy ?? "all";
    const exact = options.values === "exact";
    this.#encode = exact ? encode : (v) => JSON.stringify(v);
    this.#decode = exact ? decode : (t) => JSON.parse(t);
  }

  /** Entries held. */
  get size(): number {
    return this.#entries.size;
  }

  strategy(): "explicit" | "all" {
    return this.#strategy;
  }

  async get(key: string): Promise<unknown[] | undefined> {
    const hit = this.#entries.get(key);
    return hit ? (this.#decode(hit.json) as unknown[]) : undefined;
  }

  async put(
    key: string,
    response: unknown,
    tables: string[],
    _isTag: boolean,
    _config?: CacheConfig,
  ): Promise<void> {
    this.#entries.set(key, { json: this.#encode(response), tables: [...tables] });
  }

  onMutate = async (params: MutationOption): Promise<void> => {
    const original = Symbol.for("drizzle:OriginalName");
    const tables = [params.tables ?? []]
      .flat()
      .map((t) =>
        typeof t === "string" ? t : String((t as unknown as Record<symbol, unknown>)[original]),
      );
    const tags = [params.tags ?? []].flat();
    for (const [key, entry] of this.#entries) {
      if (tags.includes(key) || entry.tables.some((t) => tables.includes(t))) {
        this.#entries.delete(key);
      }
    }
  };
}
