import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

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

/**
 * Listens on a free loopback port, stops when the driver goes (see onParentGone) and
 * prints `{"url": ...}` (and `more`), the line the driver waits for (bench/lib/processes.ts).
 */
export function serveForParent(server: Server, more: Record<string, unknown> = {}): void {
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo;
    onParentGone(() => {
      server.close();
      server.closeAllConnections();
      process.exit(0);
    });
    process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}`, ...more })}\n`);
  });
}
