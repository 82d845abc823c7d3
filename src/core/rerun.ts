/**
 * A task that never runs twice at once: called while it runs, it answers the running call
 * and runs once more after it (so a change that arrives mid-run is never missed), however
 * many calls came meanwhile.
 *
 * @example
 * const reload = rerunning(async () => apply(await load()));
 * subscribe(() => void reload());
 * await reload.settled(); // the run under way, if any, without starting one
 */
export function rerunning(
  task: () => Promise<void>,
): (() => Promise<void>) & { settled(): Promise<void> } {
  let running: Promise<void> | undefined;
  let again = false;
  const run = () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await task();
      } while (again);
    })().finally(() => {
      running = undefined;
    });
    return running;
  };
  return Object.assign(run, {
    settled: async () => {
      await running?.catch(() => {});
    },
  });
}
