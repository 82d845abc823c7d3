import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { ENVIRONMENT } from "../../src/cli/environment.ts";
import { cli } from "./run-cli.ts";

// Every environment variable the command line and the Node servers read, each given a bad
// value: the error names the variable (the user set PORT, not --port), in one line, exit 2.
// The source is searched for variables read, so a new one fails here until it is listed.

const SRC = join(import.meta.dirname, "../../src");

/**
 * Each variable with a bad value, and the commands that read it (with what else they need
 * to get that far). A variable that takes any value says why instead.
 */
const VARIABLES: Record<string, { bad: string; commands: string[][] } | { any: string }> = {
  PORT: {
    bad: "abc",
    commands: [
      ["serve", "--no-cache-file"],
      ["proxy", "--origin", "http://127.0.0.1:9", "--no-cache-file"],
    ],
  },
  DATABASE_URL: {
    bad: "/nonexistent/dir/x.db",
    commands: [
      ["serve", "--port", "0", "--no-cache-file"],
      ["capture", "status"],
    ],
  },
  REDIS_URL: {
    bad: "not-a-url",
    commands: [
      ["serve", "--port", "0", "--no-cache-file"],
      ["proxy", "--origin", "http://127.0.0.1:9", "--port", "0", "--no-cache-file"],
    ],
  },
  EDGECACHE_ADMIN_TOKEN: {
    bad: "two words",
    commands: [["serve", "--port", "0", "--no-cache-file"], ["stats"]],
  },
  EDGECACHE_LOG_LEVEL: { bad: "loud", commands: [["serve", "--port", "0", "--no-cache-file"]] },
  EDGECACHE_STATE: {
    bad: "/nonexistent/x.db",
    commands: [
      ["serve", "--port", "0", "--no-cache-file"],
      ["tenants", "list"],
    ],
  },
  EDGECACHE_URL: { bad: "nothing", commands: [["stats"], ["keys"]] },
  EDGECACHE_KEY: { bad: "two words", commands: [["warm", "/v1/users"]] },
  npm_lifecycle_event: { any: "npm's own: only whether it is set counts" },
};

/** The .ts files under `dir`. */
function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts"))
    .map((f) => join(dir, f));
}

/** The variables the Node side's code reads (a Worker's are variables.test.ts's). */
function variablesRead(): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of sources(SRC)) {
    const path = relative(SRC, file);
    if (path.startsWith("adapter/cloudflare/") || path === "cloudflare.ts") continue;
    const code = readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => !/^\s*(\*|\/\/|\/\*)/.test(l))
      .join("\n");
    for (const m of code.matchAll(
      /envVar\("(\w+)"\)|process\.env(?:\.(\w+)|\[\s*["'](\w+)["']\s*\])/g,
    )) {
      found.set(m[1] ?? m[2] ?? m[3]!, path);
    }
  }
  return found;
}

it("lists every variable the Node side reads, and reads none past envVar", () => {
  const read = variablesRead();
  expect(read.size).toBeGreaterThanOrEqual(8);
  for (const [name, where] of read) {
    expect(VARIABLES, `${name} (read in ${where}) is not listed here`).toHaveProperty(name);
    expect(ENVIRONMENT, `${name} (read in ${where})`).toHaveProperty(name);
  }
  expect(Object.keys(VARIABLES).sort()).toEqual(Object.keys(ENVIRONMENT).sort());
  // process.env.X read directly would skip envVar's check.
  for (const file of sources(SRC)) {
    if (file.endsWith("cli/environment.ts")) continue;
    const code = readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => !/^\s*(\*|\/\/|\/\*)/.test(l))
      .join("\n");
    expect(code, relative(SRC, file)).not.toMatch(/process\.env(\.\w+|\[\s*["'])/);
  }
});

const cases = Object.entries(VARIABLES).flatMap(([name, v]) =>
  "bad" in v ? v.commands.map((c) => [name, c.join(" "), v.bad, c] as const) : [],
);

describe.concurrent("a bad value in a variable", () => {
  it.each(cases)(
    "%s, read by edgecache %s, is refused naming the variable",
    async (name, _command, bad, args) => {
      const r = await cli(args, { env: { [name]: bad } });
      expect(r.code, r.stderr).toBe(2);
      const lines = r.stderr.trimEnd().split("\n");
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`: ${name}: expected `));
      const flag = (ENVIRONMENT as Record<string, { flag?: string }>)[name]?.flag;
      if (flag) expect(lines[0]).not.toContain(flag);
      // A token is never shown.
      if (name.endsWith("TOKEN") || name.endsWith("KEY")) expect(lines[0]).not.toContain(bad);
    },
    30_000,
  );
});

describe.concurrent("EDGECACHE_ADMIN_TOKEN set but empty", () => {
  it.each([
    ["serve", "--port", "0", "--no-cache-file"],
    ["proxy", "--origin", "http://127.0.0.1:9", "--port", "0", "--no-cache-file"],
    ["serve", "--state", "tenants.db", "--port", "0"],
  ])(
    "is refused by edgecache %s %s, not taken for no token",
    async (...args) => {
      const r = await cli(args, { env: { EDGECACHE_ADMIN_TOKEN: "" } });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim()).toMatch(
        /: EDGECACHE_ADMIN_TOKEN: set but empty: unset it for loopback-only access, or give a token$/,
      );
    },
    30_000,
  );
});

it("a flag's bad value names the flag, though the variable is set well", async () => {
  const r = await cli(["serve", "--port", "abc", "--no-cache-file"], { env: { PORT: "0" } });
  expect(r.code).toBe(2);
  expect(r.stderr.trim()).toBe('edgecache serve: --port: expected a port, 0 to 65535, got "abc"');
  const redis = await cli(["serve", "--redis", "nope", "--port", "0", "--no-cache-file"]);
  expect(redis.code).toBe(2);
  expect(redis.stderr.trim()).toMatch(/^edgecache serve: --redis: expected a redis:\/\//);
}, 30_000);
