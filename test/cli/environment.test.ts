import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ENVIRONMENT, unreadVariables } from "../../src/cli/environment.ts";
import { cli } from "./run-cli.ts";

// The environment variables edgecache reads are listed once (src/cli/environment.ts); one
// it does not read, with its prefix, is a typo the user hears about.

describe("an EDGECACHE_* variable edgecache does not read", () => {
  it("gives one warning naming it, and the closest variable it reads", () => {
    expect(
      unreadVariables({ EDGECACHE_ADMIN_TOKN: "t", EDGECACHE_URL: "u", PATH: "/bin" }),
    ).toEqual([
      "[edgecache] [env] unknown variable EDGECACHE_ADMIN_TOKN, ignored (did you mean EDGECACHE_ADMIN_TOKEN?)",
    ]);
    expect(unreadVariables({ EDGECACHE_REDIS_URL: "redis://x" })).toEqual([
      "[edgecache] [env] unknown variable EDGECACHE_REDIS_URL, ignored (did you mean REDIS_URL?)",
    ]);
    expect(unreadVariables({ EDGECACHE_COLOUR: "1" })[0]).toMatch(
      /^\[edgecache\] \[env\] unknown variable EDGECACHE_COLOUR, ignored: edgecache reads EDGECACHE_ADMIN_TOKEN, /,
    );
  });

  it("a Worker's variable is named as one; the tests' and benchmarks' are not warned about", () => {
    expect(unreadVariables({ EDGECACHE_ALLOWED_HOSTS: "a" })).toEqual([
      "[edgecache] [env] EDGECACHE_ALLOWED_HOSTS is read by Workers only (a node takes --allowed-hosts); the command line ignores it",
    ]);
    expect(unreadVariables({ EDGECACHE_TEST_PG: "x", EDGECACHE_MEMORY_PROBE: "f" })).toEqual([]);
    expect(
      unreadVariables(Object.fromEntries(Object.keys(ENVIRONMENT).map((n) => [n, "1"]))),
    ).toEqual([]);
  });

  it("the command line prints it once on stderr, and still runs", async () => {
    const r = await cli(["stats", "--url", "http://127.0.0.1:1"], {
      env: { EDGECACHE_ADMIN_TOKN: "secret" },
    });
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe(
      "[edgecache] [env] unknown variable EDGECACHE_ADMIN_TOKN, ignored (did you mean EDGECACHE_ADMIN_TOKEN?)",
    );
    // It ran: the node at port 1 is unreachable (exit 3).
    expect(r.code).toBe(3);
  }, 30_000);
});

it("the options reference lists every variable edgecache reads", () => {
  const docs = readFileSync(join(import.meta.dirname, "../../docs/reference/options.md"), "utf8");
  const listed = docs.slice(docs.indexOf("## Environment variables"));
  for (const name of Object.keys(ENVIRONMENT)) {
    if (name.startsWith("npm_")) continue;
    expect(listed, name).toContain(`| \`${name}\` |`);
  }
});
