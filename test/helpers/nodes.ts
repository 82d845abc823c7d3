import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLI } from "./built-cli.ts";
import { waitForLine } from "./child.ts";

/** A node process: `edgecache serve` as a user starts it. */
export interface NodeProcess {
  url: string;
  child: ChildProcess;
  /** Sends the signal and waits for the process to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Starts `edgecache serve --port 0` in `cwd` with `args`, and resolves once it prints its
 * URL. The environment carries no PORT, token or REDIS_URL of the caller's.
 */
export async function startNode(cwd: string, args: string[]): Promise<NodeProcess> {
  const { PORT: _p, EDGECACHE_ADMIN_TOKEN: _t, REDIS_URL: _r, ...env } = process.env;
  const child = spawn(process.execPath, [CLI, "serve", "--port", "0", ...args], {
    cwd,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const m = await waitForLine(child, /data API:\s+(http:\/\/[^/\s]+)\/v1\//);
  return {
    url: m[1]!,
    child,
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((done) => child.once("exit", done));
      child.kill(signal);
      await exited;
    },
  };
}

/** A config file naming the Redis deployment (its own key prefix, so tests do not meet). */
export function redisConfig(dir: string, redis: { url: string; prefix: string; leaseMs?: number }) {
  const path = join(dir, "edgecache.config.json");
  writeFileSync(path, JSON.stringify({ redis }));
  return path;
}
