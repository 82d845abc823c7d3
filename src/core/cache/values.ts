import { Cost } from "../cost.ts";
import type { CacheEntry } from "../entries/entry.ts";
import { badOption } from "../errors.ts";
import { entryValue } from "../library/codec.ts";
import {
  checkKey,
  checkKeys,
  checkNoOptions,
  checkValueOptions,
  READ_OPTIONS,
  tierCount,
  valueInit,
} from "./options.ts";
import type { Parts } from "./parts.ts";
import type {
  CacheOptions,
  EntryInit,
  JsonOptions,
  LookupOptions,
  ReadOptions,
  Resolved,
  ResolveStatus,
} from "./types.ts";
import type { Writes } from "./writes.ts";

/** What the JSON values ask of the engine's reads (see Serving). */
export interface ValueReads {
  peek(key: string, options?: LookupOptions): CacheEntry | undefined;
  getEntry(key: string, options?: LookupOptions): Promise<CacheEntry | undefined>;
  resolve(
    key: string,
    load: () => Promise<EntryInit>,
    options?: Pick<LookupOptions, "tiers">,
  ): Promise<Resolved>;
  countRead(key: string, status: ResolveStatus | "bypass"): void;
}

/**
 * The library's API: JSON values by key (`getOrSet`, `get`, `set`, their batches, `delete`)
 * and events (`emit`), over the engine's reads and writes. The facade's methods of those
 * names are these.
 */
export class JsonValues {
  readonly #e: Parts;
  readonly #reads: ValueReads;
  readonly #writes: Writes;
  readonly #rules: NonNullable<CacheOptions["invalidateOn"]>;

  constructor(
    parts: Parts,
    reads: ValueReads,
    writes: Writes,
    rules: NonNullable<CacheOptions["invalidateOn"]>,
  ) {
    this.#e = parts;
    this.#reads = reads;
    this.#writes = writes;
    this.#rules = rules;
  }

  getOrSet<T>(key: string, load: () => T | Promise<T>, options: JsonOptions = {}): Promise<T> {
    // Checked before the hit path, so a bad call fails on a hit as on a miss.
    let tiers: number | undefined;
    try {
      checkKey(key);
      if (typeof load !== "function") badOption("cache", "load", "a function", load);
      tiers = this.#checked(options);
    } catch (err) {
      return Promise.reject(err);
    }
    // The hit path: this node's memory, synchronously, and the value decoded once per entry
    // (not an async function: see get).
    const hit = this.#reads.peek(key);
    return hit ? resolvedValue<T>(hit) : this.#loadValue<T>(key, load, options, tiers);
  }

  async #loadValue<T>(
    key: string,
    load: () => T | Promise<T>,
    options: JsonOptions,
    tiers: number | undefined,
  ): Promise<T> {
    const { entry } = await this.#reads.resolve(
      key,
      async () => valueInit(key, await load(), options, tiers),
      { tiers },
    );
    return entryValue<T>(entry);
  }

  get<T>(key: string, options?: ReadOptions): Promise<T | undefined> {
    // Checked before the hit path, so a bad call fails on a hit as on a miss.
    let tiers: number | undefined;
    try {
      checkKey(key);
      tiers = this.#checked(options, READ_OPTIONS);
    } catch (err) {
      return Promise.reject(err);
    }
    // Not an async function: a memory hit returns a resolved promise without the frame and
    // the extra promise an async function costs (about a tenth of a hit's time).
    const hit = this.#reads.peek(key);
    return hit ? resolvedValue<T>(hit) : this.#getBelow<T>(key, tiers);
  }

  async #getBelow<T>(key: string, tiers: number | undefined): Promise<T | undefined> {
    const entry = await this.#reads.getEntry(key, { tiers });
    return entry ? entryValue<T>(entry) : undefined;
  }

  async set(key: string, value: unknown, options: JsonOptions = {}): Promise<void> {
    checkKey(key);
    const tiers = this.#checked(options);
    const init = valueInit(key, value, options, tiers);
    // Settled: the value stored next must not meet the old one's delete in a shared tier.
    const { seq } = await this.#writes.append([{ keys: [key] }], { settled: true });
    const at = this.#e.fence.position;
    await this.#e.loads.storeLoaded(
      key,
      init,
      { log: at.log, seq },
      undefined,
      this.#e.costs.write,
    );
  }

  async delete(key: string, none: unknown): Promise<boolean> {
    checkKey(key);
    checkNoOptions(none);
    return (await this.#writes.invalidate({ keys: [key] })) > 0;
  }

  async getMany<T>(keys: readonly string[], options?: ReadOptions): Promise<(T | undefined)[]> {
    checkKeys(keys);
    const tiers = this.#checked(options, READ_OPTIONS);
    const values: (T | undefined)[] = new Array(keys.length).fill(undefined);
    const rest: number[] = [];
    keys.forEach((key, i) => {
      const hit = this.#reads.peek(key);
      if (hit) values[i] = entryValue<T>(hit);
      else rest.push(i);
    });
    if (rest.length === 0) return values;
    const cost = new Cost();
    const found = await this.#e.reads.lookupMany(
      rest.map((i) => keys[i]!),
      this.#e.end(tiers),
      cost,
    );
    this.#e.costs[found.every(Boolean) ? "hit" : "miss"].merge(cost);
    const now = this.#e.now();
    rest.forEach((i, j) => {
      const entry = found[j]?.entry;
      if (!entry) return;
      this.#reads.countRead(keys[i]!, entry.freshUntil > now ? "hit" : "stale");
      values[i] = entryValue<T>(entry);
    });
    return values;
  }

  async setMany(items: readonly ({ key: string; value: unknown } & JsonOptions)[]): Promise<void> {
    const inits = items.map(({ key, value, ...options }) => {
      checkKey(key);
      const tiers = this.#checked(options);
      return { key, init: valueInit(key, value, options, tiers) };
    });
    if (inits.length === 0) return;
    const keys = inits.map((i) => i.key);
    const { seq } = await this.#writes.append([{ keys }], { settled: true });
    const at = { log: this.#e.fence.position.log, seq };
    await this.#e.loads.storeLoadedMany(inits, at, this.#e.costs.write);
  }

  async deleteMany(keys: readonly string[], none: unknown): Promise<number> {
    checkKeys(keys);
    checkNoOptions(none);
    return this.#writes.invalidate({ keys: [...keys] });
  }

  async emit(event: string, args: unknown[]): Promise<number> {
    const rule = Object.hasOwn(this.#rules, event) ? this.#rules[event] : undefined;
    if (!rule) {
      const known = Object.keys(this.#rules).join(", ") || "none";
      badOption("cache", "event", `an event named in invalidateOn (${known})`, event);
    }
    return this.#writes.invalidate(rule(...args));
  }

  /** Checks a call's options; returns how many tiers its `tiers` names (undefined: all). */
  #checked(
    options: JsonOptions | ReadOptions | undefined,
    names?: typeof READ_OPTIONS,
  ): number | undefined {
    if (options === undefined) return undefined;
    checkValueOptions(options, names);
    return options.tiers === undefined
      ? undefined
      : tierCount(this.#e.tiers.list, options.tiers, "cache");
  }
}

/** A memory hit's value as a promise; a value that cannot be decoded rejects it. */
function resolvedValue<T>(hit: CacheEntry): Promise<T> {
  try {
    return Promise.resolve(entryValue<T>(hit));
  } catch (err) {
    return Promise.reject(err);
  }
}
