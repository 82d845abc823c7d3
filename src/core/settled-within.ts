/**
 * Resolves when every promise has settled, or after `ms`, whichever comes first: for a wait
 * that may go on without what it waits for (a slow peer, a database that does not answer).
 */
export async function settledWithin(promises: Promise<unknown>[], ms: number): Promise<void> {
  if (promises.length === 0) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.allSettled(promises),
    new Promise((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}
