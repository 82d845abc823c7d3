import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DEFAULT_PROXY_CACHE_FILE } from "../../src/adapter/node/modes/proxy.ts";
import {
  configKeys,
  defaultOf,
  optionOfKey,
  SERVER_OPTIONS,
  type ServerOption,
} from "../../src/adapter/node/options.ts";
import { DEFAULT_STATE_FILE } from "../../src/adapter/node/tenants/state.ts";
import { ENVIRONMENT } from "../../src/cli/environment.ts";
import { VALUE_TYPES } from "../../src/cli/flags.ts";
import { tempDir } from "../app/harness.ts";
import { cli } from "./run-cli.ts";

// The servers' options are described once (src/adapter/node/options.ts): the flags, the
// config file's keys and init's comments are made from it; the reference is checked here.

const docs = readFileSync(join(import.meta.dirname, "../../docs/reference/options.md"), "utf8");
/** The text of `heading`'s section, up to the next heading of its level or above. */
function section(heading: string): string {
  const start = docs.indexOf(`${heading}\n`);
  expect(start, heading).toBeGreaterThanOrEqual(0);
  const level = heading.split(" ")[0]!;
  const next = docs.slice(start + heading.length).search(new RegExp(`\\n#{1,${level.length}} `));
  return next < 0 ? docs.slice(start) : docs.slice(start, start + heading.length + next);
}
const options = SERVER_OPTIONS as readonly ServerOption[];

describe("docs/reference/options.md", () => {
  it("lists every config key of `serve` in the config file's table", () => {
    const text = section("## Config file").split("### ")[0]!;
    for (const key of configKeys("serve")) expect(text, key).toContain(`| \`${key}\` |`);
  });

  it("names every key of the proxy section in that section", () => {
    const text = section("### The proxy section");
    for (const key of configKeys("proxy")) expect(text, key).toContain(`\`${key}\``);
  });

  it("lists every flag of `serve` and `proxy` under its command", () => {
    for (const mode of ["serve", "proxy"] as const) {
      const text = section(`### \`edgecache ${mode}\``);
      for (const o of options) {
        if (o.flag && o.in.includes(mode))
          expect(text, `${mode} --${o.flag}`).toContain(`\`--${o.flag}`);
      }
    }
  });
});

describe("one description, every place", () => {
  it("`--help` shows each flag with the table's line", async () => {
    for (const mode of ["serve", "proxy"] as const) {
      const r = await cli([mode, "--help"]);
      expect(r.code).toBe(0);
      const help = r.stdout.replace(/\s+/g, " ");
      for (const o of options) {
        if (o.flag && o.in.includes(mode)) {
          expect(help).toContain(`--${o.flag}`);
          expect(help).toContain(o.doc);
        }
      }
    }
  }, 30_000);

  it("a config key the table lacks is refused, naming the table's keys", async () => {
    const r = await cli(["proxy", "--config", "package.json"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`expected one of ${configKeys("serve").join(", ")}`);
  }, 30_000);

  it("`edgecache init` comments each key it writes with the table's line", async () => {
    const dir = tempDir("edgecache-options-");
    try {
      const r = await cli(["init", "--origin", "http://127.0.0.1:3999"], { cwd: dir });
      expect(r.code).toBe(0);
      const text = readFileSync(join(dir, "edgecache.config.json"), "utf8");
      const comments = text
        .split("\n")
        .filter((l) => /^\s*\/\/ /.test(l) && !/^\s*\/\/ "\w+": /.test(l))
        .map((l) => l.replace(/^\s*\/\/ /, ""))
        .join(" ");
      const keys = [...text.matchAll(/^\s*(?:\/\/ )?"(\w+)":/gm)].map((m) => m[1]!);
      expect(keys).toContain("origins");
      for (const key of keys.filter((k) => k !== "proxy")) {
        expect(comments).toContain(optionOfKey("proxy", key).doc);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe("the table agrees with the code it describes", () => {
  it("each typed value is one the flags' check knows; each variable is one edgecache lists", () => {
    for (const o of options) {
      if (o.value && o.value !== "list" && o.value !== "boolean") {
        expect(VALUE_TYPES, o.value).toHaveProperty(o.value);
      }
      if (o.env) expect(ENVIRONMENT, o.env).toHaveProperty(o.env);
    }
  });

  it("the defaults it states are the ones the servers use", () => {
    const said = (flag: string, mode: "serve" | "proxy") =>
      defaultOf(options.find((o) => o.flag === flag)!, mode);
    expect(said("cache-file", "proxy")).toBe(`./${DEFAULT_PROXY_CACHE_FILE}`);
    expect(said("state", "serve")).toContain(`./${DEFAULT_STATE_FILE} `);
  });
});
