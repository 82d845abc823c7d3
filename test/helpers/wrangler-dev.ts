import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { waitForLine } from "./child.ts";

/** The repository, where wrangler.jsonc is. */
export const WRANGLER_ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const WRANGLER = fileURLToPath(
  new URL("../../node_modules/wrangler/bin/wrangler.js", import.meta.url),
);

/** Quiet and offline: no metrics, no request to Cloudflare for `request.cf`. */
export const WRANGLER_ENV = {
  ...process.env,
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_SEND_METRICS: "false",
};

export interface WranglerDev {
  url: string;
  /** Ends wrangler and the workerd processes it started (its process group). */
  stop(): Promise<void>;
}

/**
 * `npm run dev` as the project's wrangler.jsonc defines it, on free ports, with its local
 * state (D1, KV, Durable Object) in `persistTo`. Wrangler's own binary is started in a
 * process group of its own: killing npx or npm would leave wrangler and workerd running.
 */
export async function startWranglerDev(options: {
  persistTo: string;
  vars?: Record<string, string>;
}): Promise<WranglerDev> {
  const port = await freePort();
  const inspector = await freePort();
  const vars = Object.entries(options.vars ?? {}).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
  const child: ChildProcess = spawn(
    process.execPath,
    [
      WRANGLER,
      "dev",
      "--local",
      "--port",
      String(port),
      "--inspector-port",
      String(inspector),
      "--persist-to",
      options.persistTo,
      "--show-interactive-dev-session=false",
      ...vars,
    ],
    { cwd: WRANGLER_ROOT, env: WRANGLER_ENV, detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  const stop = async () => {
    if (child.exitCode !== null || child.pid === undefined) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    process.kill(-child.pid, "SIGTERM");
    const timer = setTimeout(() => process.kill(-child.pid!, "SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitForLine(child, /Ready on (http:\/\/\S+)/);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `http://127.0.0.1:${port}`, stop };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
