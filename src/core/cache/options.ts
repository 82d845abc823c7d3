import {
  badListOption,
  badOption,
  checkOptionNames,
  isString,
  type OptionNames,
} from "../errors.ts";
import { encodeValue } from "../library/codec.ts";
import type { Store } from "../store.ts";
import type { CacheOptions, EntryInit, JsonOptions, ReadOptions, WriteHooks } from "./types.ts";

/** Every option of CacheOptions, and of its nested objects: checkOptionNames refuses any other. */
const OPTIONS: OptionNames<CacheOptions> = {
  enabled: true,
  fenceLogSize: true,
  index: true,
  invalidateOn: true,
  log: true,
  logger: true,
  notFound: true,
  now: true,
  observer: true,
  policy: true,
  rehydrate: true,
  schedule: true,
  schema: true,
  sha256: true,
  staleWhileRevalidate: true,
  tiers: true,
  ttl: true,
  writeHooks: true,
};
const NOT_FOUND: OptionNames<NonNullable<CacheOptions["notFound"]>> = {
  maxEntries: true,
};
const INDEX: OptionNames<NonNullable<CacheOptions["index"]>> = {
  maxBytes: true,
};
const REHYDRATE: OptionNames<Exclude<CacheOptions["rehydrate"], false | undefined>> = {
  concurrency: true,
  lists: true,
  minHits: true,
};
const WRITE_HOOKS: OptionNames<WriteHooks> = {
  patch: true,
  maintain: true,
  prefix: true,
  refetch: true,
};

const HOUR = 3_600_000;
/** Cached 404s and 410s kept at once, by default. */
const DEFAULT_MAX_NEGATIVE = 10_000;
/** The dependency index's heap at most, by default (CacheOptions.index.maxBytes). */
const DEFAULT_INDEX_BYTES = 64 * 1024 * 1024;
/** The write fence's default size, in operations (see CacheOptions.fenceLogSize). */
const DEFAULT_FENCE_OPS = 8192;

/** CacheOptions checked in "expected X, got Y" form, defaults filled in. */
export interface Settings {
  enabled: boolean;
  ttl: number;
  swr: number;
  policy: NonNullable<CacheOptions["policy"]>;
  maxNegative: number;
  indexMaxBytes: number;
  fenceOps: number;
  rules: NonNullable<CacheOptions["invalidateOn"]>;
  rehydrate: { concurrency: number; minHits: number; lists: boolean } | undefined;
}

/** Checks the options the cache is made with; throws E_BAD_OPTION naming the bad one. */
export function settings(options: CacheOptions): Settings {
  const c = "cache";
  if (!Array.isArray(options?.tiers) || options.tiers.length === 0) {
    badOption(c, "tiers", "a non-empty array of stores", options?.tiers);
  }
  checkOptionNames(c, options, OPTIONS);
  checkOptionNames(c, options.notFound, NOT_FOUND, "notFound.");
  checkOptionNames(c, options.index, INDEX, "index.");
  checkOptionNames(c, options.rehydrate || undefined, REHYDRATE, "rehydrate.");
  const enabled = options.enabled ?? true;
  if (typeof enabled !== "boolean") badOption(c, "enabled", "true or false", enabled);
  const ttl = options.ttl ?? 24 * HOUR;
  if (!(ttl > 0)) badOption(c, "ttl", "a positive number of ms", ttl);
  const swr = options.staleWhileRevalidate ?? 0;
  if (!(swr >= 0)) badOption(c, "staleWhileRevalidate", "a number of ms >= 0", swr);
  const policy = options.policy ?? "exact";
  if (!["exact", "table", "none"].includes(policy)) {
    badOption(c, "policy", '"exact", "table" or "none"', policy);
  }
  for (const name of ["schedule", "sha256"] as const) {
    if (options[name] !== undefined && typeof options[name] !== "function") {
      badOption(c, name, "a function", options[name]);
    }
  }
  if (options.writeHooks !== undefined) checkWriteHooks(options.writeHooks);
  const maxNegative = options.notFound?.maxEntries ?? DEFAULT_MAX_NEGATIVE;
  if (!Number.isSafeInteger(maxNegative) || maxNegative < 1) {
    badOption(c, "notFound.maxEntries", "a positive integer", maxNegative);
  }
  const indexMaxBytes = options.index?.maxBytes ?? DEFAULT_INDEX_BYTES;
  if (!Number.isSafeInteger(indexMaxBytes) || indexMaxBytes < 1) {
    badOption(c, "index.maxBytes", "a positive integer", indexMaxBytes);
  }
  const rules = options.invalidateOn ?? {};
  if (typeof rules !== "object" || rules === null) {
    badOption(c, "invalidateOn", "an object of functions", rules);
  }
  for (const [name, rule] of Object.entries(rules)) {
    if (typeof rule !== "function") badOption(c, `invalidateOn.${name}`, "a function", rule);
  }
  return {
    enabled,
    ttl,
    swr,
    policy,
    maxNegative,
    indexMaxBytes,
    fenceOps: options.fenceLogSize ?? DEFAULT_FENCE_OPS,
    rules,
    rehydrate:
      options.rehydrate === false
        ? undefined
        : {
            concurrency: options.rehydrate?.concurrency ?? 4,
            minHits: options.rehydrate?.minHits ?? 2,
            lists: options.rehydrate?.lists === true,
          },
  };
}

/** A write's options (set, getOrSet, setMany's items): checkOptionNames refuses any other. */
const VALUE_OPTIONS: OptionNames<JsonOptions> = {
  staleWhileRevalidate: true,
  tags: true,
  tiers: true,
  ttl: true,
};
/** A read's options (get, getMany): a ttl there would be ignored, so it is refused too. */
export const READ_OPTIONS: OptionNames<ReadOptions> = { tiers: true };

/**
 * Checks a call's options; an unknown name is refused with the closest known one, since
 * `get(k, { teirs: ["memory"] })` would otherwise ask every tier without a word.
 */
export function checkValueOptions(
  options: JsonOptions | ReadOptions,
  names: OptionNames<JsonOptions> | OptionNames<ReadOptions> = VALUE_OPTIONS,
): void {
  const c = "cache";
  if (typeof options !== "object" || options === null || Array.isArray(options))
    badOption(c, "options", "an object", options);
  checkOptionNames(c, options, names as OptionNames<JsonOptions>);
  const { ttl, staleWhileRevalidate: swr, tags } = options as JsonOptions;
  // typeof first: "60" > 0 holds, and the string would reach the entry's arithmetic.
  if (ttl !== undefined && !(typeof ttl === "number" && ttl > 0)) {
    badOption(c, "ttl", "a positive number of ms", ttl);
  }
  if (swr !== undefined && !(typeof swr === "number" && swr >= 0)) {
    badOption(c, "staleWhileRevalidate", "a number of ms >= 0", swr);
  }
  if (tags !== undefined && !(Array.isArray(tags) && tags.every(isString))) {
    badListOption(c, "tags", "an array of strings", tags, isString);
  }
}

/**
 * delete and deleteMany take no options: the key leaves every tier (a tier left holding it
 * would answer with the deleted value), so a `tiers` or anything else is refused, not ignored.
 */
export function checkNoOptions(
  options: unknown,
  why = "a delete removes the key from every tier",
  component = "cache",
): void {
  if (options !== undefined) badOption(component, "options", `none (${why})`, options);
}

/** Refuses a key that is not a string, before any tier is asked (a store may take a number). */
export function checkKey(key: unknown): void {
  if (typeof key !== "string") badOption("cache", "key", "a string", key);
}

/** Refuses keys that are not an array of strings, before any tier is asked. */
export function checkKeys(keys: unknown): void {
  if (!(Array.isArray(keys) && keys.every(isString))) {
    badListOption("cache", "keys", "an array of strings", keys, isString);
  }
}

/**
 * How many tiers `names` names: they must be the first tiers of the cache, in order, since
 * a tier below one left out would be written without the one above it, which every read
 * passes first.
 */
export function tierCount(tiers: readonly Store[], names: unknown, component: string): number {
  const all = tiers.map((t) => t.name);
  const inPlace = (t: unknown, i: number) => t === all[i];
  if (!(Array.isArray(names) && names.length > 0 && names.every(inPlace))) {
    badListOption(
      component,
      "tiers",
      `the first tiers of the cache, in order (${all.join(", ")})`,
      names,
      inPlace,
    );
  }
  return names.length;
}

/** `tiers`: the count #checkValueOptions made of the options' tier names. */
export function valueInit(
  key: string,
  value: unknown,
  options: JsonOptions,
  tiers: number | undefined,
): EntryInit {
  const { tiers: _names, ...rest } = options;
  return { ...rest, ...encodeValue(key, value), tiers };
}

/** Refuses write hooks that are not an object of functions, with a string `prefix`. */
export function checkWriteHooks(hooks: WriteHooks): void {
  const c = "cache";
  if (typeof hooks !== "object" || hooks === null) {
    badOption(c, "writeHooks", "an object of functions", hooks);
  }
  checkOptionNames(c, hooks, WRITE_HOOKS, "writeHooks.");
  for (const name of ["patch", "refetch", "maintain"] as const) {
    if (hooks[name] !== undefined && typeof hooks[name] !== "function") {
      badOption(c, `writeHooks.${name}`, "a function", hooks[name]);
    }
  }
  if (hooks.prefix !== undefined && typeof hooks.prefix !== "string") {
    badOption(c, "writeHooks.prefix", "a string", hooks.prefix);
  }
}

/**
 * The hooks `sets` make together: a key's patch, refetch and maintain are those of the set with its
 * longest prefix (the last added among equals).
 */
export function joinedWriteHooks(sets: readonly WriteHooks[]): WriteHooks {
  if (sets.length === 1 && !sets[0]!.prefix) return sets[0]!;
  const owner = (key: string): WriteHooks | undefined => {
    let best: WriteHooks | undefined;
    for (const hooks of sets) {
      const prefix = hooks.prefix ?? "";
      if (key.startsWith(prefix) && prefix.length >= (best?.prefix ?? "").length) best = hooks;
    }
    return best;
  };
  return {
    ...(sets.some((h) => h.patch) && {
      patch: (key, entry, events, peek) => owner(key)?.patch?.(key, entry, events, peek),
    }),
    ...(sets.some((h) => h.refetch) && {
      refetch: async (key) => owner(key)?.refetch?.(key),
    }),
    ...(sets.some((h) => h.maintain) && {
      maintain: (key, entry, events, read, at) =>
        owner(key)?.maintain?.(key, entry, events, read, at),
    }),
  };
}

/**
 * The write hooks a cache runs: those it was made with (`CacheOptions.writeHooks`) and
 * those added since (`Cache.addWriteHooks`), joined (see joinedWriteHooks).
 */
export class WriteHookSets {
  #sets: readonly WriteHooks[];
  /** What a write that reaches this node does to cached entries. */
  joined: WriteHooks;

  constructor(initial: WriteHooks | undefined) {
    this.#sets = initial ? [initial] : [];
    this.joined = joinedWriteHooks(this.#sets);
  }

  /** Adds a set; returns what removes it again. */
  add(hooks: WriteHooks): () => void {
    checkWriteHooks(hooks);
    this.#sets = [...this.#sets, hooks];
    this.joined = joinedWriteHooks(this.#sets);
    return () => {
      this.#sets = this.#sets.filter((h) => h !== hooks);
      this.joined = joinedWriteHooks(this.#sets);
    };
  }
}
