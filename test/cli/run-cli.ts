import { execFile } from "node:child_process";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");
export const BIN = join(ROOT, "bin/edgecache.js");

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

/** Runs the real `edgecache` binary to its exit. */
export function cli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; input?: string } = {},
): Promise<CliResult> {
  return new Promise((done) => {
    const child = execFile(
      process.execPath,
      [BIN, ...args],
      { env: cleanEnv(options.env), cwd: options.cwd ?? ROOT, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        done({ code, stdout, stderr });
      },
    );
    child.stdin?.end(options.input ?? "");
  });
}
