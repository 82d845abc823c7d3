import { type CommandDef, runCommand, showUsage } from "citty";
import { EdgecacheError } from "../core/errors.ts";

/**
 * Exit codes a script can rely on (README, "Command line"). Usage errors are 2 as in
 * POSIX utilities; the rest say whose fault it was without parsing the message.
 */
export const EXIT = {
  ok: 0,
  /** The node answered with an error, or some of the work failed (a warm URL, a 5xx). */
  failed: 1,
  /** A flag or argument is missing or wrong; nothing was sent. */
  usage: 2,
  /** The node could not be reached (refused, no such host, timed out). */
  unreachable: 3,
  /** The node refused the credentials (401) or the client (403). */
  refused: 4,
  /** What was asked for does not exist (a key that is not cached). */
  notFound: 5,
} as const;

/** An error the user can act on: one line, and the exit code that classifies it. */
export class CliFailure extends Error {
  override readonly name = "CliFailure";
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export const usageError = (message: string) => new CliFailure(message, EXIT.usage);

/**
 * Runs the command line like citty's runMain, but with our exit codes: every failure is one
 * line on stderr (usage text only on --help), and a bug still shows its stack.
 */
export async function runCli(main: CommandDef): Promise<void> {
  const rawArgs = process.argv.slice(2);
  const path = await commandPath(main, rawArgs);
  const cmd = path.at(-1)!;
  if (rawArgs.includes("--help") || rawArgs.includes("-h")) {
    // citty names only the parent: the whole path reads "edgecache tenants create".
    const names = await Promise.all(path.slice(0, -1).map(metaName));
    await showUsage(cmd, path.length > 1 ? { meta: { name: names.join(" ") } } : undefined);
    return;
  }
  if (cmd === main && rawArgs.every((a) => a.startsWith("-"))) {
    await showUsage(main);
    process.exit(rawArgs.length === 0 ? EXIT.ok : EXIT.usage);
  }
  try {
    await runCommand(main, { rawArgs });
  } catch (err) {
    const name = (await Promise.all(path.map(metaName))).join(" ");
    process.exit(report(err, name));
  }
}

/** Prints one line for `err` and returns the exit code. */
function report(err: unknown, name: string): number {
  if (err instanceof CliFailure) {
    console.error(`${name}: ${err.message}`);
    return err.exitCode;
  }
  if (err instanceof EdgecacheError) {
    console.error(err.message);
    if (err.code === "E_BAD_OPTION") return EXIT.usage;
    return err.code === "E_NOT_FOUND" ? EXIT.notFound : EXIT.failed;
  }
  // citty's own parse errors (a missing positional, an unknown command).
  if (err instanceof Error && err.name === "CLIError") {
    console.error(`${name}: ${stripAnsi(err.message).replace(/\.$/, "")}; see ${name} --help`);
    return EXIT.usage;
  }
  console.error(err);
  return EXIT.failed;
}

/** The commands `rawArgs` names, from `main` down (flags skipped, as citty does). */
async function commandPath(main: CommandDef, rawArgs: string[]): Promise<CommandDef[]> {
  const path = [main];
  let rest = rawArgs;
  for (;;) {
    const cmd = path.at(-1)!;
    const subs = await resolve(cmd.subCommands);
    const at = rest.findIndex((a) => !a.startsWith("-"));
    const sub = subs && at >= 0 ? await resolve(subs[rest[at]!]) : undefined;
    if (!sub) return path;
    path.push(sub as CommandDef);
    rest = rest.slice(at + 1);
  }
}

async function metaName(cmd: CommandDef): Promise<string> {
  return (await resolve(cmd.meta))?.name ?? "";
}

async function resolve<T>(value: T | (() => T) | (() => Promise<T>) | Promise<T>): Promise<T> {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : await value;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI colour codes are what it strips
const stripAnsi = (s: string) => s.replace(/\u001b\[\d+m/g, "");
