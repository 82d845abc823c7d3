import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { ArgsDef } from "citty";
import { LOG_LEVELS } from "../adapter/node/logging.ts";
import { closest } from "../core/closest.ts";
import { isPostgresUrl, sqliteFileProblem } from "../sources/index.ts";
import { usageError } from "./failure.ts";

interface ValueCheck {
  expected: string;
  ok(value: string): boolean;
  /** Not shown in the error (a secret). */
  hidden?: true;
}

/**
 * The values a flag's `valueHint` (or an environment variable's `value`, environment.ts)
 * promises, checked before a command runs: citty hands every value over as a string, so
 * `--port abc` would otherwise reach the server as NaN. A hint not listed here (path, tag...)
 * takes any string.
 */
export const VALUE_TYPES = {
  port: { expected: "a port, 0 to 65535", ok: (v) => isInteger(v) && Number(v) <= 65_535 },
  seconds: { expected: "seconds, a number >= 0", ok: (v) => v.trim() !== "" && Number(v) >= 0 },
  n: { expected: "a whole number", ok: isInteger },
  MB: { expected: "whole MB", ok: isInteger },
  directives: {
    expected: '"follow" or "ignore"',
    ok: (v) => v === "follow" || v === "ignore",
  },
  level: {
    expected: `one of ${LOG_LEVELS.join(", ")}`,
    ok: (v) => LOG_LEVELS.includes(v as never),
  },
  url: {
    expected: "an http(s) URL such as http://127.0.0.1:8787",
    ok: (v) => /^https?:$/.test(urlOf(v)?.protocol ?? ""),
  },
  redis: {
    expected: "a redis:// or rediss:// URL such as redis://127.0.0.1:6379",
    ok: (v) => /^rediss?:$/.test(urlOf(v)?.protocol ?? ""),
  },
  // A bearer token holds no space (RFC 6750 2.1): one with a space could never be sent.
  token: { expected: "a token without spaces", ok: (v) => /^\S+$/.test(v), hidden: true },
  database: {
    expected:
      "a SQLite file (an existing one, or a new one in an existing directory) or a postgres:// URL",
    ok: (v) => isPostgresUrl(v) || sqliteFileOk(v),
  },
  state: {
    expected:
      "a SQLite file (an existing one, or a new one in an existing directory), or a postgres:// or redis:// URL",
    ok: (v) => isPostgresUrl(v) || /^rediss?:\/\//i.test(v) || sqliteFileOk(v),
  },
} satisfies Record<string, ValueCheck>;

export type ValueType = keyof typeof VALUE_TYPES;

/** What is wrong with `value` as a `kind` ("expected ..., got ..."), or undefined. */
export function checkValue(kind: ValueType, value: string): string | undefined {
  const type: ValueCheck = VALUE_TYPES[kind];
  if (type.ok(value)) return undefined;
  return `expected ${type.expected}, got ${type.hidden ? "(hidden)" : JSON.stringify(value)}`;
}

function urlOf(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

/** An existing SQLite file, or a path where one can be made. */
function sqliteFileOk(path: string): boolean {
  if (!existsSync(path)) return existsSync(dirname(resolve(path)));
  return sqliteFileProblem(path) === undefined;
}

function isInteger(value: string): boolean {
  return /^\d+$/.test(value.trim());
}

/**
 * A positional argument that takes any number of values (`warm <url>...`): its valueHint
 * ends in "...". Any other positional takes one.
 */
export const MANY = "...";

/**
 * Refuses what a command does not declare, before it opens anything (citty itself ignores
 * unknown flags and arguments): an unknown flag, with the closest known one (`--rdis` would
 * otherwise start a node alone, beside nodes that share Redis), a flag without its value, a
 * value of the wrong type, and, on a command without subcommands (`leaf`), an argument more
 * than it takes (`edgecache serve extra` would start as if it were not there). `rawArgs`
 * are the command's own, after its name.
 */
export function checkFlags(rawArgs: string[], args: ArgsDef, leaf = true): void {
  const defs = new Map<string, ArgsDef[string]>();
  let takes = 0;
  const positionals: string[] = [];
  for (const [name, def] of Object.entries(args)) {
    if (def.type === "positional") {
      takes += "valueHint" in def && def.valueHint?.endsWith(MANY) ? Number.POSITIVE_INFINITY : 1;
      continue;
    }
    defs.set(name, def);
    defs.set(kebab(name), def);
    for (const alias of [("alias" in def && def.alias) || []].flat()) defs.set(alias, def);
  }
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i]!;
    if (arg === "--") {
      positionals.push(...rawArgs.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    const name = flag.replace(/^--?/, "");
    const def = defs.get(name);
    if (!def) {
      // citty reads --no-<flag> as <flag> = false.
      if (name.startsWith("no-") && eq < 0 && defs.has(name.slice(3))) continue;
      const near = closest(
        name,
        [...defs.keys()].filter((k) => k.length > 1),
      );
      throw usageError(`unknown option ${flag}${near ? ` (did you mean --${near}?)` : ""}`);
    }
    if (def.type === "boolean") {
      if (eq >= 0 && !/^(true|false)$/.test(arg.slice(eq + 1))) {
        throw usageError(`${flag}: expected no value, or true or false, got ${arg.slice(eq + 1)}`);
      }
      continue;
    }
    let value: string;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      // A value may start with "-" (`--prefix -draft`), not with "--": that is the next flag.
      const next = rawArgs[i + 1];
      if (next === undefined || next.startsWith("--"))
        throw usageError(`${flag}: expected a value`);
      value = next;
      i++;
    }
    const hint = "valueHint" in def ? def.valueHint : undefined;
    const problem = hint && hint in VALUE_TYPES && checkValue(hint as ValueType, value);
    if (problem) throw usageError(`${flag}: ${problem}`);
    if (def.type === "enum" && def.options && !def.options.includes(value)) {
      throw usageError(
        `${flag}: expected one of ${def.options.join(", ")}, got ${JSON.stringify(value)}`,
      );
    }
  }
  if (leaf && positionals.length > takes) {
    const extra = positionals[takes]!;
    throw usageError(
      `unexpected argument ${JSON.stringify(extra)}: ${takes === 0 ? "this command takes none" : `it takes ${takes} at most`} (flags start with --; see --help)`,
    );
  }
}

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

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
