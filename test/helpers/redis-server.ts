import type { ChildProcess } from "node:child_process";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll } from "vitest";
import { pingRedis } from "./services.ts";

/** A redis-server of the test's own, for fault injection: the shared one is never stopped. */
export interface PrivateRedis {
  url: string;
  port: number;
  /** SIGTERM (after SIGCONT, should it be paused), and waits for the exit. */
  stop(): Promise<void>;
  /** SIGSTOP: the connection stays open and nothing answers, like a stalled server. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Stops it and starts an empty one on the same port. */
  restart(): Promise<void>;
  /** SIGKILL, and waits for the exit. */
  kill(): Promise<void>;
}

export interface StartRedisOptions {
  /** Default: a free port picked at random. */
  port?: number;
  /** More redis-server arguments (`--cluster-enabled yes`, ...). */
  args?: string[];
}

const READY_TIMEOUT_MS = 10_000;
/**
 * `redis-cli --cluster create` waits for the nodes to agree (gossip, polled once a second):
 * seconds on a loaded machine, past READY_TIMEOUT_MS at stop 67's CI. Bounded below the
 * hooks' 60 s (vitest.config.ts) so a cluster that never joins still fails with its output.
 */
const CLUSTER_JOIN_TIMEOUT_MS = 45_000;
const STOP_TIMEOUT_MS = 5_000;
/** A cluster node also listens on its port + 10000 (the cluster bus). */
const CLUSTER_BUS_OFFSET = 10_000;

const execFileAsync = promisify(execFile);
const children = new Set<ChildProcess>();
const dirs = new Set<string>();

// Every server a test file started goes when the file is done, whatever the tests did.
afterAll(async () => {
  await Promise.all([...children].map((child) => halt(child, "SIGTERM")));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
});
// Last resort when the worker exits without running afterAll.
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

/**
 * Starts `redis-server` as a child process (no persistence, bound to 127.0.0.1) and waits
 * until it answers PING.
 *
 * @example
 * ```ts
 * const redis = await startRedis();
 * redis.pause(); // ... operations must fail fast ...
 * redis.resume();
 * ```
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<PrivateRedis> {
  const args = options.args ?? [];
  const cluster = args.includes("--cluster-enabled");
  const dir = mkdtempSync(join(tmpdir(), "edgecache-redis-"));
  dirs.add(dir);
  let port = options.port ?? (await freePort(cluster));
  let child: ChildProcess;
  for (let attempt = 1; ; attempt++) {
    try {
      child = await launch(port, dir, args);
      break;
    } catch (error) {
      // Another process may take a picked port between the probe and the bind.
      if (options.port !== undefined || attempt === 5) throw error;
      port = await freePort(cluster);
    }
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: () => halt(child, "SIGTERM"),
    pause: () => {
      child.kill("SIGSTOP");
    },
    resume: () => {
      child.kill("SIGCONT");
    },
    async restart() {
      await halt(child, "SIGTERM");
      child = await launch(port, dir, args);
    },
    kill: () => halt(child, "SIGKILL"),
  };
}

export interface PrivateRedisCluster {
  nodes: Array<{ host: string; port: number }>;
  stop(): Promise<void>;
}

/** Starts `masters` cluster-enabled servers and joins them into one cluster, no replicas. */
export async function startRedisCluster(masters = 3): Promise<PrivateRedisCluster> {
  const servers: PrivateRedis[] = [];
  try {
    for (let i = 0; i < masters; i++) {
      servers.push(
        await startRedis({
          args: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
        }),
      );
    }
    const addresses = servers.map((s) => `127.0.0.1:${s.port}`);
    try {
      await execFileAsync(
        "redis-cli",
        ["--cluster", "create", ...addresses, "--cluster-replicas", "0", "--cluster-yes"],
        { timeout: CLUSTER_JOIN_TIMEOUT_MS },
      );
    } catch (error) {
      const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
      throw new Error(`redis-cli --cluster create failed:\n${stdout}${stderr}`, { cause: error });
    }
    await Promise.all(servers.map((s) => waitClusterOk(s.port)));
  } catch (error) {
    await Promise.all(servers.map((s) => s.stop()));
    throw error;
  }
  return {
    nodes: servers.map((s) => ({ host: "127.0.0.1", port: s.port })),
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}

async function launch(port: number, dir: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(
    "redis-server",
    [
      ...["--port", String(port), "--bind", "127.0.0.1", "--daemonize", "no"],
      ...["--save", "", "--appendonly", "no", "--dir", dir],
      ...args,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  children.add(child);
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  child.once("exit", () => children.delete(child));

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`redis-server on port ${port} exited at start:\n${output}`);
    }
    if ((await pingRedis(`redis://127.0.0.1:${port}`)) === undefined) return child;
    if (Date.now() > deadline) {
      await halt(child, "SIGKILL");
      throw new Error(`redis-server on port ${port} did not answer PING:\n${output}`);
    }
    await sleep(25);
  }
}

/** Sends `signal` and resolves when the process is gone (SIGKILL after STOP_TIMEOUT_MS). */
async function halt(child: ChildProcess, signal: "SIGTERM" | "SIGKILL"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // A stopped process does not act on SIGTERM until it is continued.
  child.kill("SIGCONT");
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/** A port nothing listens on (and, for a cluster node, its bus port too). */
async function freePort(cluster: boolean): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 30_000);
    if ((await canBind(port)) && (!cluster || (await canBind(port + CLUSTER_BUS_OFFSET)))) {
      return port;
    }
  }
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

async function waitClusterOk(port: number): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const { stdout } = await execFileAsync("redis-cli", ["-p", String(port), "cluster", "info"], {
      timeout: READY_TIMEOUT_MS,
    });
    if (stdout.includes("cluster_state:ok")) return;
    if (Date.now() > deadline) throw new Error(`cluster node ${port} not ok:\n${stdout}`);
    await sleep(50);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
