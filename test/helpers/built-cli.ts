import { execFile, execFileSync } from "node:child_process";
import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/**
 * The command line as the tests run it: the build of the current source (`dist/`), started
 * by plain Node. `bin/edgecache.js` would compile every module through tsx at each start,
 * seconds per process on a loaded machine; the shim itself is tested by test/cli/signals.
 */
const ROOT = resolve(import.meta.dirname, "../..");
export const CLI = join(ROOT, "dist/cli/main.js");

/** The newest (or oldest) modification time of the files under `dir`. */
function mtimes(dir: string, pick: (a: number, b: number) => number, start: number): number {
  let at = start;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) at = pick(at, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return at;
}

/** Whether `dist/` is missing or any source or build setting changed after it was built. */
function stale(): boolean {
  const dist = join(ROOT, "dist");
  if (!existsSync(CLI)) return true;
  const built = mtimes(dist, Math.min, Number.POSITIVE_INFINITY);
  const inputs = ["tsconfig.json", "tsconfig.build.json"].map(
    (f) => statSync(join(ROOT, f)).mtimeMs,
  );
  return mtimes(join(ROOT, "src"), Math.max, Math.max(...inputs)) > built;
}

/**
 * vitest globalSetup: builds `dist/` as `npm run build` does when it is older than `src/`,
 * so that a run of a few files (`vitest run test/cli`) never tests a stale build. Under
 * `npm test` the check has just built it, and this does nothing.
 */
export default function setup(): void {
  if (!stale()) return;
  rmSync(join(ROOT, "dist"), { recursive: true, force: true });
  const tsc = join(ROOT, "node_modules/typescript/bin/tsc");
  try {
    execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: ROOT });
  } catch (err) {
    // tsc emits in spite of type errors: the CLI tests still run the current source, and
    // `npm run check` reports the errors.
    const out = (err as { stdout?: Buffer }).stdout?.toString() ?? String(err);
    if (!existsSync(CLI)) throw new Error(`building dist/ for the CLI tests failed:\n${out}`);
    console.warn(`[built-cli] tsc reported errors; dist/ was emitted anyway:\n${out}`);
  }
}

/** Runs the command to its exit: its output, or a rejection that carries it. */
export function edgecache(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return execFileAsync(process.execPath, [CLI, ...args], { encoding: "utf8" });
}
