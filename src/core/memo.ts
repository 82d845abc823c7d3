/**
 * A function of a string remembered for the inputs seen most: hit paths ask the same
 * question of the same request text again and again (a target's key, a head's fields).
 * Bounded in count (cleared whole when full: cheaper than an LRU on a hot path, and a
 * flood of distinct inputs costs only misses) and in the length of what it keeps.
 *
 * @example
 * const keyOf = memoize((target) => new URL(target, "http://x").pathname, { size: 10_000 });
 */
export function memoize<T>(
  compute: (input: string) => T,
  options: {
    /** Entries at the most. */
    size: number;
    /** Longer inputs are computed each time, so the memo stays within a few tens of MB. */
    maxLength?: number;
    /** Whether a result may be kept (a result that is not the whole answer, say). */
    keep?: (result: T) => boolean;
    /** The key kept for an input: a copy where a slice would hold a larger string alive. */
    own?: (input: string) => string;
  },
): (input: string) => T {
  const { size, maxLength = 2048, keep, own } = options;
  const memo = new Map<string, T>();
  return (input) => {
    let result = memo.get(input);
    if (result === undefined && !memo.has(input)) {
      result = compute(input);
      if (input.length <= maxLength && (keep === undefined || keep(result))) {
        if (memo.size >= size) memo.clear();
        memo.set(own ? own(input) : input, result);
      }
    }
    return result as T;
  };
}
