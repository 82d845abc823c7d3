import { type ArgsDef, type CommandDef, runCommand } from "citty";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { capture } from "../../src/cli/capture.ts";
import { explain } from "../../src/cli/commands/explain.ts";
import { init } from "../../src/cli/commands/init.ts";
import { invalidate } from "../../src/cli/commands/invalidate.ts";
import { keys } from "../../src/cli/commands/keys.ts";
import { purge } from "../../src/cli/commands/purge.ts";
import { rules } from "../../src/cli/commands/rules.ts";
import { stats } from "../../src/cli/commands/stats.ts";
import { tenants } from "../../src/cli/commands/tenants.ts";
import { warm } from "../../src/cli/commands/warm.ts";
import { CliFailure, EXIT } from "../../src/cli/failure.ts";
import { checkFlags } from "../../src/cli/flags.ts";
import { serverArgs } from "../../src/cli/server-flags.ts";
import { EdgecacheError } from "../../src/core/errors.ts";

/**
 * Generated argv for every command's flag check (issue 70): junk values, unknown flags,
 * `--x=`, repeated flags, non-ASCII, huge numbers, JSON. Each ends in success or in the
 * CLI's own failure (failure.ts: a CliFailure, an EdgecacheError the CLI classifies), never
 * an uncaught TypeError. `explain` also runs (it opens nothing without --db), so its
 * --params JSON is parsed for real. FUZZ_RUNS raises the count, FUZZ_SEED replays.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 80) * 2;
const SEED = Number(process.env.FUZZ_SEED ?? 20_261_126);

/** Whether `err` is one the CLI reports as a user's failure (run.ts's report), not a bug. */
function isCliFailure(err: unknown): boolean {
  if (err instanceof CliFailure) return Object.values(EXIT).includes(err.exitCode as never);
  if (err instanceof EdgecacheError) return true;
  return err instanceof Error && err.name === "CLIError";
}

async function resolved<T>(value: T | (() => T) | (() => Promise<T>) | Promise<T>): Promise<T> {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : await value;
}

/** Every command and subcommand with its flags. */
async function commands(): Promise<[string, ArgsDef][]> {
  const top: [string, CommandDef][] = Object.entries({
    explain,
    init,
    invalidate,
    keys,
    purge,
    rules,
    stats,
    tenants,
    warm,
    capture,
  }) as [string, CommandDef][];
  const out: [string, ArgsDef][] = [
    ["serve", serverArgs("serve") as ArgsDef],
    ["proxy", serverArgs("proxy") as ArgsDef],
  ];
  for (const [name, cmd] of top) {
    out.push([name, (await resolved(cmd.args)) ?? {}]);
    const subs = (await resolved(cmd.subCommands)) ?? {};
    for (const [sub, def] of Object.entries(subs)) {
      const c = (await resolved(def)) as CommandDef;
      out.push([`${name} ${sub}`, (await resolved(c.args)) ?? {}]);
    }
  }
  return out;
}

/** Values a flag may be given: good ones, junk, huge, non-ASCII, JSON. */
const VALUES = fc.oneof(
  fc.constantFrom(
    "",
    "0",
    "1",
    "-1",
    "65536",
    "99999999999999999999999",
    "1e400",
    "NaN",
    "Infinity",
    "0x10",
    " 5",
    "abc",
    "\u00e9\u00e9",
    "\u{1F600}",
    "http://127.0.0.1:8787",
    "redis://127.0.0.1:6379",
    "postgres://x@127.0.0.1/none",
    "/nonexistent/dir/file.db",
    "[1,2]",
    "[]",
    "{}",
    '{"toString":1}',
    "[[[[[[[[[[]]]]]]]]]]",
    "null",
    '["a",null,1e999]',
    "-",
    "--",
    "a,b,,c",
    "users:1",
    "x y",
  ),
  fc.string({ maxLength: 10 }),
  fc.json({ maxDepth: 2 }),
);

function argvs(flags: readonly string[]): fc.Arbitrary<string[]> {
  const flag = fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom(...(flags.length > 0 ? flags : ["json"])) },
    { weight: 1, arbitrary: fc.constantFrom("nope", "rdis", "JSON", "h\u00e9", "", "-") },
  );
  const item = fc.oneof(
    fc.tuple(flag, VALUES).map(([f, v]) => [`--${f}`, v]),
    fc.tuple(flag, VALUES).map(([f, v]) => [`--${f}=${v}`]),
    flag.map((f) => [`--${f}=`]),
    flag.map((f) => [`--${f}`]),
    flag.map((f) => [`--no-${f}`]),
    VALUES.map((v) => [v]),
    fc.constantFrom(["-x"], ["--"], ["-"], ["select * from users where id = ?"]),
  );
  return fc.array(item, { maxLength: 5 }).map((parts) => parts.flat());
}

describe("fuzzed command lines: success or the CLI's own failure, never a TypeError", () => {
  beforeEach(() => {
    vi.spyOn(console, "log").mockImplementation(() => {});
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("every command's flag check", async () => {
    const all = await commands();
    await fc.assert(
      fc.property(
        fc
          .constantFrom(...all)
          .chain(([name, args]) =>
            argvs(Object.keys(args).filter((k) => args[k]?.type !== "positional")).map(
              (argv): [string, ArgsDef, string[]] => [name, args, argv],
            ),
          ),
        ([name, args, argv]) => {
          try {
            checkFlags(argv, args, !name.startsWith("tenants") || name.includes(" "));
          } catch (err) {
            if (!isCliFailure(err)) {
              throw new Error(`${name} ${JSON.stringify(argv)}: ${(err as Error).stack}`);
            }
            if (err instanceof CliFailure) expect(err.exitCode).toBe(EXIT.usage);
          }
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
  });

  it("explain, run in process: --params, --dialect and the select", async () => {
    const args = (await resolved(explain.args)) ?? {};
    const sql = fc.constantFrom(
      "select * from users where id = ?",
      "select id from users where id = $1 and name = $2",
      "select",
      "",
      "select * from a join b on a.id = b.a_id where a.id = ?",
      "\u00e9",
    );
    const argv = fc
      .tuple(
        sql,
        argvs(["params", "dialect", "json"]),
        fc.option(fc.oneof(fc.json({ maxDepth: 3 }), VALUES), { freq: 2 }),
      )
      .map(([s, rest, params]) => [
        s,
        ...rest.filter((a) => !a.startsWith("--db")),
        ...(params === null ? [] : ["--params", String(params)]),
      ]);
    await fc.assert(
      fc.asyncProperty(argv, async (rawArgs) => {
        try {
          checkFlags(rawArgs, args);
          await runCommand(explain, { rawArgs });
        } catch (err) {
          if (!isCliFailure(err)) {
            throw new Error(`explain ${JSON.stringify(rawArgs)}: ${(err as Error).stack}`);
          }
        }
      }),
      { numRuns: RUNS, seed: SEED },
    );
  });
});
