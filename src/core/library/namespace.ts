import { checkNoOptions } from "../cache/options.ts";
import type { InvalidateRequest, JsonOptions, LookupOptions, ReadOptions } from "../cache/types.ts";
import { buildKey, type KeyPart } from "../data/keys.ts";
import type { CacheEntry } from "../entries/entry.ts";
import {
  badListOption,
  badOption,
  checkOptionNames,
  isString,
  type OptionNames,
} from "../errors.ts";
import { randomId } from "../random-id.ts";
import { entryValue } from "./codec.ts";

/** Defaults of a namespace: applied to every entry it writes. */
export interface NamespaceOptions {
  /** ms; the cache's default otherwise. */
  ttl?: number;
  /** Tags every entry of the namespace carries (namespaced like any other tag). */
  tags?: string[];
  /**
   * The tiers that keep its entries, by name: the first ones of the cache, in order
   * (`["memory"]` of memory + Redis: this node's memory only). Reads ask only those. All
   * by default.
   */
  tiers?: readonly string[];
}

/** What `Namespace.invalidate` removes: keys, a key prefix, key globs and tags, all of this namespace. */
export interface NamespaceInvalidation {
  keys?: string[];
  prefix?: string;
  tags?: string[];
  /** Key globs within the namespace: `*` any run of characters, `?` one (`page:*:en`). */
  patterns?: string[];
}

const NAME = /^[A-Za-z0-9_.-]+$/;

/** The options NamespaceOptions names (checkOptionNames refuses any other). */
const OPTIONS: OptionNames<NamespaceOptions> = {
  tags: true,
  tiers: true,
  ttl: true,
};

/** The version token outlives any entry it names; if every tier lost it, a new one is drawn. */
const VERSION_TTL = 365 * 24 * 3600_000;

/**
 * A view of a cache whose keys and tags are its own, with its own defaults, dropped in O(1)
 * by `clear()`.
 *
 * Layout in the underlying cache (a name holds no ":", so no two namespaces share a prefix):
 * - `ns:<name>`: the namespace's version token, a random id;
 * - `ns:<name>:<token>:<key>`: its entries, under the current token only;
 * - `ns:<name>:<tag>`: its tags.
 *
 * `clear()` writes a new token: the old entries are never read again and age out of the
 * tiers by TTL or LRU. The token is random, not a counter, so a token lost from every tier
 * (evicted, a fresh Redis) is replaced by one no old entry carries: nothing comes back. The
 * token is written with `set`, so every node following the log drops its memory copy. Tags
 * are not versioned, so invalidating a tag reaches entries of every token, and an entry two
 * nodes wrote under different tokens (each drew one at the same moment) is never missed.
 *
 * The token is read from this node's memory on the hot path, uncounted in the cache's
 * hits and misses; from a lower tier (or drawn anew), it counts as one more read.
 *
 * @example
 * const content = cache.namespace("content", { ttl: 60_000, tags: ["cms"] });
 * await content.getOrSet("page:1", () => loadPage(1), { tags: ["page:1"] });
 * await content.invalidate({ tags: ["page:1"] }); // never touches another namespace's page:1
 * await content.clear(); // on deploy: every content entry is gone at once
 */
/**
 * What a namespace uses of its cache (`Cache` is one): declared here, so the namespace
 * depends on the cache's shapes, not on the class that makes namespaces.
 */
export interface NamespaceHost {
  get<T>(key: string, options?: ReadOptions): Promise<T | undefined>;
  set(key: string, value: unknown, options?: JsonOptions): Promise<void>;
  getOrSet<T>(key: string, load: () => T | Promise<T>, options?: JsonOptions): Promise<T>;
  delete(key: string): Promise<boolean>;
  getMany<T>(keys: readonly string[], options?: ReadOptions): Promise<(T | undefined)[]>;
  setMany(items: readonly ({ key: string; value: unknown } & JsonOptions)[]): Promise<void>;
  deleteMany(keys: readonly string[]): Promise<number>;
  invalidate(request: InvalidateRequest): Promise<number>;
  peek(key: string, options?: LookupOptions): CacheEntry | undefined;
  tierCount(names: unknown, component?: string): number;
}

/** A namespace's reads ask the tiers it was made with: a call's own would be ignored. */
const READ_WHY = "a namespace's reads ask the tiers it was made with";

export class Namespace {
  readonly name: string;
  readonly #cache: NamespaceHost;
  readonly #ttl: number | undefined;
  readonly #tags: string[];
  readonly #tiers: readonly string[] | undefined;
  readonly #versionKey: string;

  constructor(cache: NamespaceHost, name: string, options: NamespaceOptions = {}) {
    const c = "namespace";
    if (typeof name !== "string" || !NAME.test(name)) {
      badOption(c, "name", "letters, digits, '_', '.' or '-'", name);
    }
    if (typeof options !== "object" || options === null) {
      badOption(c, "options", "an object", options);
    }
    checkOptionNames(c, options, OPTIONS);
    const { ttl, tags, tiers } = options;
    if (ttl !== undefined && !(typeof ttl === "number" && ttl > 0)) {
      badOption(c, "ttl", "a positive number of ms", ttl);
    }
    if (tags !== undefined && !(Array.isArray(tags) && tags.every(isString))) {
      badListOption(c, "tags", "an array of strings", tags, isString);
    }
    if (tiers !== undefined) cache.tierCount(tiers, c);
    this.#tiers = tiers && [...tiers];
    this.name = name;
    this.#cache = cache;
    this.#ttl = ttl;
    this.#versionKey = `ns:${name}`;
    this.#tags = (tags ?? []).map((t) => this.#tag(t));
  }

  /**
   * A key of this namespace from its parts, built as `Cache.key` builds one. It names an
   * entry of the namespace when given to the namespace's own methods, which put it under
   * the current version token: after `clear()`, the same key finds nothing old. Given to the
   * cache itself, it names a root key instead.
   *
   * @example
   * const content = cache.namespace("content", { ttl: 5 * 60_000 });
   * await content.getOrSet(content.key("post", 123), () => db.post(123));
   */
  key(...parts: KeyPart[]): string {
    return buildKey(parts);
  }

  async get<T>(key: string, ...none: never[]): Promise<T | undefined> {
    checkNoOptions(none[0], READ_WHY, "namespace");
    return this.#cache.get<T>(await this.#key(key), { tiers: this.#tiers });
  }

  async set(key: string, value: unknown, options: JsonOptions = {}): Promise<void> {
    await this.#cache.set(await this.#key(key), value, this.#options(options));
  }

  async getOrSet<T>(
    key: string,
    load: () => T | Promise<T>,
    options: JsonOptions = {},
  ): Promise<T> {
    return this.#cache.getOrSet(await this.#key(key), load, this.#options(options));
  }

  async delete(key: string, ...none: never[]): Promise<boolean> {
    checkNoOptions(none[0], undefined, "namespace");
    return this.#cache.delete(await this.#key(key));
  }

  /** Values of several keys, in order; see `Cache.getMany`. */
  async getMany<T>(keys: readonly string[], ...none: never[]): Promise<(T | undefined)[]> {
    checkNoOptions(none[0], READ_WHY, "namespace");
    const base = await this.#base();
    return this.#cache.getMany<T>(
      keys.map((k) => base + k),
      { tiers: this.#tiers },
    );
  }

  /** Sets several values under one change-log record; see `Cache.setMany`. */
  async setMany(items: readonly ({ key: string; value: unknown } & JsonOptions)[]): Promise<void> {
    const base = await this.#base();
    await this.#cache.setMany(
      items.map(({ key, value, ...options }) => ({
        key: base + key,
        value,
        ...this.#options(options),
      })),
    );
  }

  /** Deletes several keys; resolves with how many existed here. */
  async deleteMany(keys: readonly string[], ...none: never[]): Promise<number> {
    checkNoOptions(none[0], undefined, "namespace");
    const base = await this.#base();
    return this.#cache.deleteMany(keys.map((k) => base + k));
  }

  /** Removes this namespace's keys, key prefix and tags; resolves with how many existed here. */
  async invalidate(request: NamespaceInvalidation): Promise<number> {
    const base = await this.#base();
    let removed = 0;
    // The base holds no '*' or '?' (a name's characters and a hex token): literal in a glob.
    if (request.keys?.length || request.tags?.length || request.patterns?.length) {
      removed += await this.#cache.invalidate({
        keys: request.keys?.map((k) => base + k),
        tags: request.tags?.map((t) => this.#tag(t)),
        patterns: request.patterns?.map((p) => base + p),
      });
    }
    if (request.prefix !== undefined) {
      removed += await this.#cache.invalidate({ prefix: base + request.prefix });
    }
    return removed;
  }

  /** Drops every entry of the namespace in O(1): a new version token (see the class comment). */
  async clear(): Promise<void> {
    await this.#cache.set(this.#versionKey, randomId(), { ttl: VERSION_TTL, tiers: this.#tiers });
  }

  async #base(): Promise<string> {
    // A memory hit of the token is not counted: the stats count the caller's reads only.
    const hit = this.#cache.peek(this.#versionKey, { count: false });
    const token = hit
      ? entryValue<string>(hit)
      : await this.#cache.getOrSet(this.#versionKey, randomId, {
          ttl: VERSION_TTL,
          tiers: this.#tiers,
        });
    return `ns:${this.name}:${token}:`;
  }

  async #key(key: string): Promise<string> {
    return (await this.#base()) + key;
  }

  #tag(tag: string): string {
    return `ns:${this.name}:${tag}`;
  }

  #options(options: JsonOptions): JsonOptions {
    // Tags that are not an array pass through unchanged, for the cache to refuse by name.
    const { ttl, tags, tiers } = options;
    return {
      ...options,
      ttl: ttl ?? this.#ttl,
      tiers: tiers ?? this.#tiers,
      tags: Array.isArray(tags)
        ? [...this.#tags, ...tags.map((t) => this.#tag(t))]
        : (tags ?? this.#tags),
    };
  }
}
