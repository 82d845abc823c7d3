/** Keys removed per step of a large removal: the event loop runs between steps. */
export const REMOVE_CHUNK = 1000;

/** Lets timers and I/O run before the next step (Web-standard, so Workers have it too). */
export function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Runs `step` over `items` a chunk at a time, yielding to the event loop between chunks,
 * so removing 100,000 keys does not hold up every other request until it is done. The
 * first chunk runs at once: a small removal does everything before its first await.
 */
export async function inChunks<T>(
  items: readonly T[],
  step: (chunk: readonly T[]) => Promise<void>,
  size = REMOVE_CHUNK,
): Promise<void> {
  for (let at = 0; at < items.length; at += size) {
    if (at > 0) await yieldToLoop();
    await step(items.slice(at, at + size));
  }
}

/**
 * Keys being removed. A read skips them in every tier until their removal is done, so a
 * removal may go a chunk at a time and still no read that starts after it began sees what
 * it removes. Counted, since two removals in flight may name one key: the first to finish
 * must not unmark a key the other has yet to delete.
 */
export class PendingRemovals {
  #keys = new Map<string, number>();

  has(key: string): boolean {
    return this.#keys.size > 0 && this.#keys.has(key);
  }

  add(keys: readonly string[]): void {
    for (const k of keys) this.#keys.set(k, (this.#keys.get(k) ?? 0) + 1);
  }

  delete(keys: readonly string[]): void {
    for (const k of keys) {
      const n = this.#keys.get(k) ?? 0;
      if (n <= 1) this.#keys.delete(k);
      else this.#keys.set(k, n - 1);
    }
  }
}
