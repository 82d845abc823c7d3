import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { ArgsDef } from "citty";
import { afterAll, describe, expect, it } from "vitest";
import { checkFlags } from "../../src/cli/flags.ts";
import { closest } from "../../src/core/closest.ts";
import { tempDir } from "../app/harness.ts";
import { type CliResult, cli, startOnce } from "./run-cli.ts";

// Every command refuses what it does not know, in one line and with exit 2, before it
// opens anything: a typo never runs a command that does something else than was asked.

const dir = tempDir("edgecache-flags-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Exit 2, one line on stderr, nothing on stdout, and nothing written in the directory. */
function expectRefused(r: CliResult, line: RegExp) {
  expect(r.code).toBe(2);
  expect(r.stdout).toBe("");
  expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(r.stderr.trimEnd()).toMatch(line);
  expect(readdirSync(dir)).toEqual([]);
}

describe("an unknown option", () => {
  // Each command with a typo of one of its options, and the option it names.
  const typos: [string, string[], string][] = [
    ["serve", ["--port", "0", "--bogus-flag", "1"], "--bogus-flag"],
    ["serve", ["--prot", "0"], "--prot (did you mean --port?)"],
    ["proxy", ["--upstream", "x"], "--upstream"],
    ["proxy", ["--orgin", "http://127.0.0.1:1"], "--orgin (did you mean --origin?)"],
    [
      "tenants create",
      ["shop", "--db", "x.db", "--stat", "s.db"],
      "--stat (did you mean --state?)",
    ],
    ["tenants list", ["--jsn"], "--jsn (did you mean --json?)"],
    ["tenants rotate-key", ["shop", "--raed"], "--raed (did you mean --read?)"],
    ["tenants delete", ["shop", "--force"], "--force"],
    ["capture install", ["--dbb", "x.db"], "--dbb (did you mean --db?)"],
    ["capture uninstall", ["--db", "x.db", "--yes"], "--yes"],
    ["capture status", ["--jsno"], "--jsno (did you mean --json?)"],
    ["rules", ["pin", "PATCH /a/:id", "/a/$1", "--tokn", "t"], "--tokn (did you mean --token?)"],
    ["rules", ["--ulr", "http://127.0.0.1:1"], "--ulr (did you mean --url?)"],
    ["warm", ["/v1/users", "--concurency", "2"], "--concurency (did you mean --concurrency?)"],
    ["keys", ["--prefx", "GET /"], "--prefx (did you mean --prefix?)"],
    ["stats", ["--watch"], "--watch"],
    ["invalidate", ["--tags", "users"], "--tags (did you mean --tag?)"],
    ["init", ["--db", "x.db", "--forse"], "--forse (did you mean --force?)"],
    ["purge", ["/a", "--prefixes", "/b"], "--prefixes (did you mean --prefix?)"],
    ["explain", ["select 1", "--parms", "[]"], "--parms (did you mean --params?)"],
  ];
  for (const [command, rest, named] of typos) {
    it(`edgecache ${command}: exit 2, "unknown option ${named}"`, async () => {
      const args = [...command.split(" "), ...rest];
      const r = await cli(args, { cwd: dir, env: { EDGECACHE_URL: "http://127.0.0.1:1" } });
      const line = `edgecache ${command}: unknown option ${named}`;
      expectRefused(r, new RegExp(`^${escapeRe(line)}$`));
    }, 30_000);
  }

  it("before a subcommand's name too (edgecache --bogus serve)", async () => {
    const r = await cli(["--bogus", "serve"], { cwd: dir });
    expectRefused(r, /^edgecache serve: unknown option --bogus$/);
  }, 30_000);
});

describe("the typo that splits a cluster", () => {
  it("--rdis is refused: the node does not start alone beside nodes that share Redis", async () => {
    const r = await cli(["serve", "--port", "0", "--rdis", "redis://127.0.0.1:1"], { cwd: dir });
    expectRefused(r, /^edgecache serve: unknown option --rdis \(did you mean --redis\?\)$/);
    const p = await cli(["proxy", "--origin", "http://127.0.0.1:1", "--rdis", "redis://x"], {
      cwd: dir,
    });
    expectRefused(p, /^edgecache proxy: unknown option --rdis \(did you mean --redis\?\)$/);
  }, 30_000);

  it("--redis is accepted: the node starts on the shared log (here an unreachable Redis)", async () => {
    const own = tempDir("edgecache-flags-redis-");
    try {
      const { out } = await startOnce(
        ["serve", "--port", "0", "--no-cache-file", "--redis", "redis://127.0.0.1:1"],
        { cwd: own, until: /shared:.*redis:\/\/127\.0\.0\.1:1/ },
      );
      expect(out).toContain("edgecache serving the demo database");
    } finally {
      rmSync(own, { recursive: true, force: true });
    }
  }, 30_000);
});

describe("a missing value or a value of the wrong type", () => {
  const cases: [string[], RegExp][] = [
    [["serve", "--port"], /^edgecache serve: --port: expected a value$/],
    [["serve", "--port", "--host", "0.0.0.0"], /^edgecache serve: --port: expected a value$/],
    [
      ["serve", "--port", "abc"],
      /^edgecache serve: --port: expected a port, 0 to 65535, got "abc"$/,
    ],
    [["serve", "--port=1.5"], /^edgecache serve: --port: expected a port, 0 to 65535, got "1.5"$/],
    [["serve", "--port", "70000"], /--port: expected a port, 0 to 65535, got "70000"$/],
    [
      ["serve", "--log-level", "loud"],
      /--log-level: expected one of fatal, error, .*, got "loud"$/,
    ],
    [
      ["proxy", "--origin", "http://127.0.0.1:1", "--grace", "soon"],
      /^edgecache proxy: --grace: expected seconds, a number >= 0, got "soon"$/,
    ],
    [
      ["proxy", "--origin", "http://127.0.0.1:1", "--client-directives", "never"],
      /^edgecache proxy: --client-directives: expected "follow" or "ignore", got "never"$/,
    ],
    [
      ["proxy", "--learn=maybe"],
      /^edgecache proxy: --learn: expected no value, or true or false, got maybe$/,
    ],
    [
      ["warm", "/a", "--concurrency", "many"],
      /^edgecache warm: --concurrency: expected a whole number, got "many"$/,
    ],
    [
      ["tenants", "create", "shop", "--db", "x.db", "--memory", "1.5"],
      /^edgecache tenants create: --memory: expected whole MB, got "1.5"$/,
    ],
    [["init", "--db", "x.db", "--ttl", "--force"], /^edgecache init: --ttl: expected a value$/],
    [["capture", "status", "--db"], /^edgecache capture status: --db: expected a value$/],
  ];
  for (const [args, line] of cases) {
    it(`edgecache ${args.join(" ")}: exit 2`, async () => {
      expectRefused(await cli(args, { cwd: dir }), line);
    }, 30_000);
  }
});

describe("checkFlags", () => {
  const args = {
    name: { type: "positional", required: false },
    port: { type: "string", valueHint: "port" },
    prefix: { type: "string" },
    "cache-file": { type: "string" },
    json: { type: "boolean" },
    trustedProxies: { type: "string" },
  } satisfies ArgsDef;
  const ok = (raw: string[]) => expect(() => checkFlags(raw, args)).not.toThrow();
  const refused = (raw: string[], message: string) =>
    expect(() => checkFlags(raw, args)).toThrow(message);

  it("accepts what citty reads: --flag value, --flag=value, --no-flag, kebab or camel case", () => {
    ok(["x", "--port", "8080", "--prefix=GET /", "--json", "--no-cache-file"]);
    ok(["--prefix", "-draft", "--json=false", "--trusted-proxies", "a", "--trustedProxies", "b"]);
    ok(["--", "--anything"]);
  });

  it("refuses an unknown flag, a flag without its value and a value of the wrong type", () => {
    refused(["--bogus"], "unknown option --bogus");
    refused(["--jsno"], "unknown option --jsno (did you mean --json?)");
    refused(["--no-bogus"], "unknown option --no-bogus");
    refused(["--prefix"], "--prefix: expected a value");
    refused(["--prefix", "--json"], "--prefix: expected a value");
    refused(["--port", "-1"], '--port: expected a port, 0 to 65535, got "-1"');
  });

  it("suggests a known option only when it is close", () => {
    expect(closest("rdis", ["redis", "port", "db"])).toBe("redis");
    expect(closest("prot", ["redis", "port", "db"])).toBe("port");
    expect(closest("manifest", ["redis", "port", "origin"])).toBeUndefined();
    expect(closest("x", ["db"])).toBeUndefined();
  });
});

it("a refused command leaves no database behind", () => {
  expect(existsSync(join(dir, "edgecache.db"))).toBe(false);
});

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
