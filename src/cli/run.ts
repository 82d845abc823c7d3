import { type CommandDef, runCommand, showUsage } from "citty";
import { EdgecacheError } from "../core/errors.ts";

import { unreadVariables } from "./environment.ts";
import { CliFailure, EXIT } from "./failure.ts";
import { checkFlags } from "./flags.ts";

export { CliFailure, EXIT, usageError } from "./failure.ts";

/**
 * Runs the command line like citty's runMain, but with our exit codes: every failure is one
 * line on stderr (usage text only on --help), and a bug still shows its stack.
 */
export async function runCli(main: CommandDef): Promise<void> {
  const rawArgs = process.argv.slice(2);
  for (const line of unreadVariables(process.env)) console.error(line);
  const path = await commandPath(main, rawArgs);
  const cmd = path.at(-1)!.cmd;
  if (rawArgs.includes("--help") || rawArgs.includes("-h")) {
    // citty names only the parent: the whole path reads "edgecache tenants create".
    const names = await Promise.all(path.slice(0, -1).map((l) => metaName(l.cmd)));
    await showUsage(cmd, path.length > 1 ? { meta: { name: names.join(" ") } } : undefined);
    return;
  }
  if (rawArgs.length === 0) {
    await showUsage(main);
    return;
  }
  try {
    // Every command's flags, before any of them runs: nothing is opened on a typo.
    for (const level of path) {
      const leaf = level.cmd.subCommands === undefined;
      checkFlags(level.args, (await resolve(level.cmd.args)) ?? {}, leaf);
    }
    if (cmd === main && rawArgs.every((a) => a.startsWith("-"))) {
      await showUsage(main);
      process.exit(EXIT.usage);
    }
    await runCommand(main, { rawArgs });
  } catch (err) {
    const name = (await Promise.all(path.map((l) => metaName(l.cmd)))).join(" ");
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
  // The system's refusal of a file or a socket the user named: theirs to fix, not a bug, and
  // its message names the file. Node's own ERR_ codes are bugs, and keep their stack.
  const code = (err as { code?: unknown } | null)?.code;
  if (err instanceof Error && typeof code === "string" && /^(E[A-Z]+|SQLITE_[A-Z_]+)$/.test(code)) {
    console.error(`${name}: ${err.message}`);
    return EXIT.failed;
  }
  // citty's own parse errors (a missing positional, an unknown command).
  if (err instanceof Error && err.name === "CLIError") {
    console.error(`${name}: ${stripAnsi(err.message).replace(/\.$/, "")}; see ${name} --help`);
    return EXIT.usage;
  }
  console.error(err);
  return EXIT.failed;
}

/**
 * The commands `rawArgs` names, from `main` down (flags skipped, as citty does), each with
 * its own arguments: a parent's are those before its subcommand's name.
 */
async function commandPath(
  main: CommandDef,
  rawArgs: string[],
): Promise<{ cmd: CommandDef; args: string[] }[]> {
  const path = [{ cmd: main, args: rawArgs }];
  let rest = rawArgs;
  for (;;) {
    const level = path.at(-1)!;
    const subs = await resolve(level.cmd.subCommands);
    const at = rest.findIndex((a) => !a.startsWith("-"));
    const sub = subs && at >= 0 ? await resolve(subs[rest[at]!]) : undefined;
    if (!sub) return path;
    level.args = rest.slice(0, at);
    rest = rest.slice(at + 1);
    path.push({ cmd: sub as CommandDef, args: rest });
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
