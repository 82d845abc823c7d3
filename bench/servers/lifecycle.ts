/**
 * Runs `stop` on SIGTERM, SIGINT or when the parent's end of stdin closes: a server left
 * behind by a crashed driver would go on taking CPU from the next benchmark on 2 cores.
 */
export function onParentGone(stop: () => void | Promise<void>): void {
  let stopping = false;
  const once = () => {
    if (stopping) return;
    stopping = true;
    void Promise.resolve(stop()).catch((error: unknown) => {
      console.error(error);
      process.exit(1);
    });
  };
  process.once("SIGTERM", once);
  process.once("SIGINT", once);
  process.stdin.once("end", once);
  process.stdin.once("close", once);
  process.stdin.resume();
}
