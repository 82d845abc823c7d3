/**
 * Keys removed per step of a large removal: the event loop runs between steps. Small, so a
 * step (index, memory and a SQLite transaction) takes a few milliseconds, not tens.
 */
export const REMOVE_CHUNK = 200;

/**
 * Lets I/O and timers run before the next step: setImmediate where the runtime has it
 * (Node: right after pending I/O, no 1 ms clamp), else setTimeout (Web-standard).
 */
export function yieldToLoop(): Promise<void> {
  const immediate = (globalThis as { setImmediate?: (fn: () => void) => unknown }).setImmediate;
  return new Promise((resolve) => (immediate ? immediate(resolve) : setTimeout(resolve, 0)));
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
 * it removes. Each removal's own set is held, not copied (100,000 keys would take a
 * noticeable while to copy), so it must not change until the removal is done; two removals
 * naming one key each keep it until they are done.
 */
export class PendingRemovals {
  #sets: ReadonlySet<string>[] = [];

  has(key: string): boolean {
    if (this.#sets.length === 0) return false;
    for (const set of this.#sets) if (set.has(key)) return true;
    return false;
  }

  add(keys: ReadonlySet<string>): void {
    this.#sets.push(keys);
  }

  delete(keys: ReadonlySet<string>): void {
    const i = this.#sets.indexOf(keys);
    if (i >= 0) this.#sets.splice(i, 1);
  }
}
