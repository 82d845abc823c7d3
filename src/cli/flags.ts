import type { ArgsDef } from "citty";
import { usageError } from "./run.ts";

/**
 * Refuses flags a command does not declare (citty itself ignores them), so a typo such as
 * `--prefx` fails instead of widening what a command does.
 */
export function checkFlags(rawArgs: string[], args: ArgsDef): void {
  const known = new Set<string>();
  for (const [name, def] of Object.entries(args)) {
    if (def.type === "positional") continue;
    known.add(name);
    known.add(name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`));
    for (const alias of [("alias" in def && def.alias) || []].flat()) known.add(alias);
  }
  const valued = new Set(
    Object.entries(args)
      .filter(([, def]) => def.type === "string" || def.type === "enum")
      .map(([name]) => name),
  );
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i]!;
    if (arg === "--") return;
    if (!arg.startsWith("-") || arg === "-") continue;
    const name = arg.replace(/^--?/, "").replace(/=.*$/, "");
    if (!known.has(name) && !(name.startsWith("no-") && known.has(name.slice(3)))) {
      throw usageError(`unknown flag ${arg.replace(/=.*$/, "")}`);
    }
    if (valued.has(name) && !arg.includes("=")) i++; // its value may start with "-"
  }
}

/**
 * Every value of a repeatable flag (`--key a --key b`, `--key=a`): citty keeps only the
 * last one.
 */
export function flagValues(rawArgs: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i]!;
    if (arg === "--") break;
    if (arg === `--${name}`) {
      const value = rawArgs[++i];
      if (value === undefined) throw usageError(`--${name}: expected a value`);
      out.push(value);
    } else if (arg.startsWith(`--${name}=`)) out.push(arg.slice(name.length + 3));
  }
  return out;
}
