import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { ArgsDef, CommandDef } from "citty";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { capture } from "../../src/cli/capture.ts";
import { init } from "../../src/cli/commands/init.ts";
import { invalidate } from "../../src/cli/commands/invalidate.ts";
import { keys } from "../../src/cli/commands/keys.ts";
import { purge } from "../../src/cli/commands/purge.ts";
import { rules } from "../../src/cli/commands/rules.ts";
import { stats } from "../../src/cli/commands/stats.ts";
import { tenants } from "../../src/cli/commands/tenants.ts";
import { warm } from "../../src/cli/commands/warm.ts";
import { checkFlags, MANY } from "../../src/cli/flags.ts";
import { serverArgs } from "../../src/cli/server-flags.ts";
import { tempDir } from "../app/harness.ts";
import { cli } from "./run-cli.ts";

// Every command, every flag that names a file, a host, a port or a node, given each kind of
// bad value, and a stray argument to every command that takes none: one line on stderr that
// names what is wrong, a non-zero exit, and never a stack trace.

let cwd: string;
beforeAll(() => {
  cwd = tempDir("edgecache-bad-values-");
  mkdirSync(join(cwd, "adir"));
  writeFileSync(join(cwd, "notdb.db"), "these bytes are not a SQLite database\n".repeat(200));
  new Database(join(cwd, "good.db")).close();
});
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

/** The kinds of bad file a flag may name. */
const NO_DIR = "/nonexistent/dir/x.db";
const DIR = "adir";
const NOT_DB = "notdb.db";

/** A node's flags that keep a run from starting anything of its own here. */
const PROXY = ["--origin", "http://127.0.0.1:9", "--port", "0", "--no-cache-file"];
const DATA = ["--port", "0", "--no-cache-file"];

/**
 * Each command's flags that name a file, with what else it needs to get that far, and the
 * kinds of bad file tried (all three where the file is opened as SQLite; the others read it
 * with the same code as a flag already tried, or as text).
 */
const FILE_FLAGS: [string[], string, string[], string[]][] = [
  [["serve"], "--db", DATA, [NO_DIR, DIR, NOT_DB]],
  [["serve"], "--config", DATA, [NO_DIR, DIR, NOT_DB]],
  [["serve"], "--state", DATA, [NO_DIR, DIR, NOT_DB]],
  [["proxy"], "--config", ["--port", "0", "--no-cache-file"], [DIR]],
  [["proxy"], "--manifest", PROXY, [NO_DIR, DIR]],
  [["capture", "install"], "--db", [], [NO_DIR, DIR, NOT_DB]],
  [["capture", "status"], "--db", [], [NOT_DB]],
  [["capture", "uninstall"], "--db", [], [NOT_DB]],
  [["init"], "--db", ["--config", "out.json"], [NO_DIR, DIR, NOT_DB]],
  [["warm"], "--file", ["--url", "http://127.0.0.1:9"], [NO_DIR, DIR, NOT_DB]],
  [["tenants", "list"], "--state", [], [NO_DIR, DIR, NOT_DB]],
  [["tenants", "create"], "--state", ["shop", "--db", "good.db"], [NO_DIR, DIR, NOT_DB]],
  [["tenants", "create"], "--db", ["shop", "--state", "t.db"], [NO_DIR, DIR, NOT_DB]],
  [["tenants", "rotate-key"], "--state", ["shop"], [NOT_DB]],
  [["tenants", "delete"], "--state", ["shop"], [NOT_DB]],
];

/** Flags that name a host, a port or a node to reach (the rest of --port's are flags.test.ts's). */
const ADDRESS_FLAGS: [string, string[]][] = [
  ["serve --host 999.1.1.1", ["serve", "--host", "999.1.1.1", ...DATA]],
  ["proxy --host 999.1.1.1", ["proxy", "--host", "999.1.1.1", ...PROXY]],
  [
    "serve --host 10.255.255.254 (not this machine's)",
    ["serve", "--host", "10.255.255.254", ...DATA],
  ],
  ["proxy --origin not-a-url", ["proxy", "--origin", "not-a-url", "--port", "0"]],
  ["serve --redis not-a-url", ["serve", "--redis", "not-a-url", ...DATA]],
  ["init --origin not-a-url", ["init", "--origin", "not-a-url", "--config", "o.json"]],
  ["stats --url http://999.1.1.1:1", ["stats", "--url", "http://999.1.1.1:1"]],
  ["keys --url http://no-such-host.invalid", ["keys", "--url", "http://no-such-host.invalid"]],
  ["warm --url :::", ["warm", "/v1/users", "--url", ":::"]],
  ["tenants list --url nothing", ["tenants", "list", "--url", "nothing"]],
];

function expectOneLine(r: { code: number; stdout: string; stderr: string }, names: RegExp) {
  expect(r.code, r.stderr).toBeGreaterThan(0);
  expect(r.stderr, r.stderr).not.toMatch(/^\s+at /m);
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(names);
}

describe.concurrent("a flag naming a file that is not one", () => {
  const cases = FILE_FLAGS.flatMap(([command, flag, rest, values]) =>
    values.map(
      (value) =>
        [command.join(" "), flag, value, [...command, flag, value, ...rest]] as [
          string,
          string,
          string,
          string[],
        ],
    ),
  );
  it.each(cases)(
    "%s %s %s",
    async (_c, flag, value, args) => {
      const r = await cli(args, { cwd });
      // The line names the file or the flag (or, for a file of junk lines, what it expected).
      const name = value.split("/").pop()!;
      expectOneLine(r, new RegExp(`${literal(name)}|${literal(flag)}|expected`));
    },
    30_000,
  );
});

describe.concurrent("a flag naming an address that is no good", () => {
  it.each(ADDRESS_FLAGS)(
    "%s",
    async (_, args) => {
      const r = await cli(args, { cwd });
      expectOneLine(r, /--\w+|cannot reach|expected/);
    },
    30_000,
  );
});

describe.concurrent("a stray argument, end to end", () => {
  it.each([
    [["serve", "extra", ...DATA], '"extra"'],
    [["tenants", "list", "extra"], '"extra"'],
    [["keys", "a", "b"], '"b"'],
  ])(
    "%s",
    async (args, extra) => {
      const r = await cli(args, { cwd });
      expect(r.code).toBe(2);
      expectOneLine(r, new RegExp(`unexpected argument ${extra}`));
    },
    30_000,
  );
});

describe("a stray argument, every command", () => {
  /** Every command of `edgecache`, by its path, down to those without subcommands. */
  async function leaves(): Promise<[string, ArgsDef][]> {
    const out: [string, ArgsDef][] = [
      ["serve", serverArgs("serve") as ArgsDef],
      ["proxy", serverArgs("proxy") as ArgsDef],
    ];
    const walk = async (name: string, cmd: CommandDef): Promise<void> => {
      const subs = (await resolveValue(cmd.subCommands)) as Record<string, CommandDef> | undefined;
      if (!subs) {
        out.push([name, ((await resolveValue(cmd.args)) ?? {}) as ArgsDef]);
        return;
      }
      for (const [sub, def] of Object.entries(subs)) {
        await walk(`${name} ${sub}`, (await resolveValue(def)) as CommandDef);
      }
    };
    for (const [name, cmd] of Object.entries(COMMANDS)) await walk(name, cmd as CommandDef);
    return out;
  }

  it("each command refuses one argument more than it takes, before it runs", async () => {
    const all = await leaves();
    expect(all.length).toBeGreaterThanOrEqual(16);
    for (const [name, args] of all) {
      const positionals = Object.values(args).filter((d) => d.type === "positional");
      if (positionals.some((d) => "valueHint" in d && d.valueHint?.endsWith(MANY))) continue;
      const given = [...positionals.map((_, i) => `p${i}`), "stray"];
      expect(() => checkFlags(given, args), name).toThrow(/unexpected argument "stray"/);
      if (positionals.length > 0) expect(() => checkFlags(given.slice(0, -1), args)).not.toThrow();
    }
  });

  it("an argument after -- counts too, and a flag's value is no argument", () => {
    const args = serverArgs("serve") as ArgsDef;
    expect(() => checkFlags(["--", "x"], args)).toThrow(/unexpected argument "x"/);
    expect(() =>
      checkFlags(["--port", "0", "--no-cache-file", "--learn"], serverArgs("proxy") as ArgsDef),
    ).not.toThrow();
  });
});

/** The commands main.ts registers (it runs the CLI when imported, so they are listed here). */
const COMMANDS = { capture, init, invalidate, keys, purge, rules, stats, tenants, warm };

async function resolveValue<T>(value: T | (() => T) | (() => Promise<T>)): Promise<T> {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : value;
}

function literal(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
