import { execFile, spawn } from "node:child_process";
import { resolve } from "node:path";
import { CLI } from "../helpers/built-cli.ts";
import { waitForLine } from "../helpers/child.ts";

const ROOT = resolve(import.meta.dirname, "../..");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** This environment without what would change the commands (EDGECACHE_*, PORT, npm's). */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (name === "PORT" || /^EDGECACHE_/.test(name) || /^npm_/i.test(name)) continue;
    env[name] = value;
  }
  return { ...env, ...extra };
}

/** Runs the `edgecache` command (the build of the current source) to its exit. */
export function cli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; input?: string } = {},
): Promise<CliResult> {
  return new Promise((done) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      { env: cleanEnv(options.env), cwd: options.cwd ?? ROOT, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        done({ code, stdout, stderr });
      },
    );
    child.stdin?.end(options.input ?? "");
  });
}

/** A node of tenants (`edgecache serve --state`) run by the command until `stop()`. */
export async function serveTenants(
  state: string,
  options: { cwd: string; env?: Record<string, string> },
): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [CLI, "serve", "--state", state, "--port", "0"], {
    cwd: options.cwd,
    env: cleanEnv(options.env),
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once("exit", done));
    child.kill("SIGTERM");
    await exited;
  };
  try {
    const [, url] = await waitForLine(child, /tenants:\s+(http:\/\/[^/\s]+)\//);
    return { url: url!, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Starts the command until a line of its stdout matches `until`, then stops it. */
export async function startOnce(
  args: string[],
  options: { cwd: string; env?: Record<string, string>; until?: RegExp },
): Promise<{ out: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd,
    env: cleanEnv(options.env),
  });
  let out = "";
  child.stdout.on("data", (c) => {
    out += c;
  });
  try {
    await waitForLine(child, options.until ?? /admin API:/);
    return { out };
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((done) => child.once("exit", done));
      child.kill("SIGTERM");
      await exited;
    }
  }
}
