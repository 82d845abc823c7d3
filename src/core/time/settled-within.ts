import { unref } from "../capture-feed.ts";

/**
 * Resolves when every promise has settled, or after `ms`, whichever comes first: for a wait
 * that may go on without what it waits for (a slow peer, a database that does not answer).
 * Its timer does not keep a process alive by itself: a process with nothing else to do
 * ends instead of waiting out `ms`.
 */
export async function settledWithin(promises: Promise<unknown>[], ms: number): Promise<void> {
  if (promises.length === 0) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.allSettled(promises),
    new Promise((resolve) => {
      timer = unref(setTimeout(resolve, ms));
    }),
  ]);
  clearTimeout(timer);
}
