import type { JsonOptions } from "../cache/types.ts";
import { badOption } from "../errors.ts";

export interface WarmOptions extends JsonOptions {
  /** Loads at once (4). */
  concurrency?: number;
  /** Loads keys already cached too, replacing their values (false: only missing keys). */
  refresh?: boolean;
  /** Called after each key, loaded or failed. */
  onProgress?: (progress: WarmProgress) => void;
}

export interface WarmProgress {
  done: number;
  total: number;
  failed: number;
  /** The key just finished, and its error if it failed (the thrown value itself). */
  key: string;
  error?: unknown;
}

export interface WarmResult {
  loaded: number;
  /**
   * Each failed key with its error's message, and its code where it has one (E_..., or a
   * Node code such as ECONNREFUSED): strings, so the result reads the same once logged or
   * sent as JSON (an Error there is `{}`). `onProgress` sees the thrown value itself.
   */
  failed: WarmFailure[];
}

export interface WarmFailure {
  key: string;
  message: string;
  code?: string;
}

/** What warming uses of a cache (`Cache` is one): loading a value, or setting it anew. */
export interface WarmTarget {
  getOrSet<T>(key: string, load: () => T | Promise<T>, options?: JsonOptions): Promise<T>;
  set(key: string, value: unknown, options?: JsonOptions): Promise<void>;
}

/**
 * Loads `keys` into the cache, `concurrency` at a time. A key whose load fails is counted
 * and reported, not thrown: one bad row must not stop a deploy's warm-up.
 *
 * @example
 * await warm(cache, ["page:home", "page:about"], (key) => cms.page(key.slice(5)), {
 *   concurrency: 8,
 *   onProgress: ({ done, total }) => console.log(`${done}/${total}`),
 * });
 */
export async function warm<T>(
  cache: WarmTarget,
  keys: Iterable<string>,
  load: (key: string) => T | Promise<T>,
  options: WarmOptions = {},
): Promise<WarmResult> {
  const { concurrency = 4, refresh = false, onProgress, ...valueOptions } = options;
  if (!(Number.isSafeInteger(concurrency) && concurrency > 0)) {
    badOption("warm", "concurrency", "a positive integer", concurrency);
  }
  if (typeof load !== "function") badOption("warm", "load", "a function", load);
  const list = [...keys];
  const result: WarmResult = { loaded: 0, failed: [] };
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < list.length) {
      const key = list[next++]!;
      let error: unknown;
      try {
        if (refresh) await cache.set(key, await load(key), valueOptions);
        else await cache.getOrSet(key, () => load(key), valueOptions);
        result.loaded++;
      } catch (err) {
        error = err;
        result.failed.push(failure(key, err));
      }
      done++;
      onProgress?.({ done, total: list.length, failed: result.failed.length, key, error });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, worker));
  return result;
}

function failure(key: string, error: unknown): WarmFailure {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? { key, message, code } : { key, message };
}
