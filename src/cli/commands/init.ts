import { existsSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { defineCommand } from "citty";
import stripJsonComments from "strip-json-comments";
import { validateConfig } from "../../adapter/node/config.ts";
import { type Mode, optionOfKey } from "../../adapter/node/options.ts";
import { isPostgresUrl, sqliteFileProblem } from "../../sources/index.ts";
import { CliFailure, EXIT, usageError } from "../run.ts";

const FILE = "edgecache.config.json";

const args = {
  db: {
    type: "string",
    description: "Your SQLite file or postgres:// URL, served as the data API",
    valueHint: "path",
  },
  origin: {
    type: "string",
    description: "Your HTTP API, cached by proxy mode, e.g. http://127.0.0.1:3000",
    valueHint: "url",
  },
  ttl: {
    type: "string",
    description: "Default seconds a response stays cached (data API 86400; proxy 60)",
    valueHint: "seconds",
  },
  config: {
    type: "string",
    description: `Where to write it (default ./${FILE})`,
    valueHint: "path",
  },
  force: { type: "boolean", description: "Overwrite an existing file" },
} as const;

/** `edgecache init`: writes a commented config for the user's database or origin. */
export const init = defineCommand({
  meta: {
    name: "init",
    description: `Write a commented ${FILE} for your database (--db) or origin (--origin)`,
  },
  args,
  run({ args: a }) {
    if (!a.db === !a.origin)
      throw usageError("expected either --db <sqlite file> or --origin <url>");
    const ttl = a.ttl === undefined ? undefined : Number(a.ttl);
    if (ttl !== undefined && !(Number.isInteger(ttl) && ttl >= 1)) {
      throw usageError(`--ttl: expected whole seconds >= 1, got ${a.ttl}`);
    }
    const path = resolve(a.config ?? FILE);
    if (existsSync(path) && !a.force) {
      throw new CliFailure(`${path} exists: pass --force to overwrite it`, EXIT.failed);
    }
    let text: string;
    if (a.db) {
      const problem = isPostgresUrl(a.db) ? undefined : sqliteFileProblem(resolve(a.db));
      if (problem) throw usageError(`--db: ${problem}`);
      text = dataConfig(a.db, ttl ?? 86_400);
    } else {
      let origin: URL;
      try {
        origin = new URL(a.origin!);
      } catch {
        throw usageError(
          `--origin: expected a URL such as http://127.0.0.1:3000, got ${JSON.stringify(a.origin)}`,
        );
      }
      text = proxyConfig(origin.origin, ttl ?? 60);
    }
    // What it wrote must load: the same check `serve` and `proxy` make.
    validateConfig(JSON.parse(stripJsonComments(text, { trailingCommas: true })));
    writeFileSync(path, text);
    console.log(`wrote ${path}`);
    console.log(a.db ? "start it: edgecache serve" : "start it: edgecache proxy");
  },
});

/** A config key `init` writes: its value, or commented out to show how it is set. */
type Entry = [key: string, value: unknown, off?: "commented out"];

function dataConfig(database: string, ttl: number): string {
  return configText("serve", "database", [
    ["database", database],
    ["ttl", ttl],
    ["staleWhileRevalidate", 0],
    ["routes", {}],
    ["views", []],
    ["memory", { maxBytes: 52_428_800, maxEntries: 100_000 }],
    ["disk", { maxBytes: 268_435_456, maxEntries: 100_000 }],
    ["port", 8787],
    ["hostname", "127.0.0.1"],
    ["redis", "redis://127.0.0.1:6379", "commented out"],
  ]);
}

function proxyConfig(origin: string, ttl: number): string {
  return configText("proxy", "origins", [
    ["origins", [{ origin, ttl }]],
    ["grace", 0],
    ["maxCacheableSize", 8_388_608],
    ["memory", { maxBytes: 52_428_800, maxEntries: 100_000 }],
    ["cacheFile", "edgecache-proxy.cache.db"],
    ["port", 8788],
    ["hostname", "127.0.0.1"],
    ["redis", "redis://127.0.0.1:6379", "commented out"],
  ]);
}

/**
 * The config file, each key under its one-line description from the options' table
 * (adapter/node/options.ts): the comments say what `edgecache serve --help` and the
 * options reference say.
 */
function configText(mode: Mode, required: string, entries: Entry[]): string {
  const indent = mode === "proxy" ? "    " : "  ";
  const body = entries.flatMap(([key, value, off]) => [
    ...wrap(`${optionOfKey(mode, key).doc}.`, 88 - indent.length).map((l) => `${indent}// ${l}`),
    `${indent}${off ? "// " : ""}${JSON.stringify(key)}: ${oneLine(value)},`,
  ]);
  const lines = [
    `// edgecache config, read by \`edgecache ${mode}\` from this directory (or --config <file>).`,
    `// Every key but "${required}" is optional; the values shown are the defaults.`,
    `// All keys: docs/reference/options.md.`,
    "{",
    ...(mode === "proxy" ? ['  "proxy": {', ...body, "  },"] : body),
    "}",
  ];
  return `${lines.join("\n")}\n`;
}

/** `value` as JSON on one line, spaced as a person would write it. */
function oneLine(value: unknown): string {
  return JSON.stringify(value, null, 1)
    .replace(/\n\s*/g, " ")
    .replace(/\[ \{/g, "[{")
    .replace(/\} \]/g, "}]");
}

/** `text` in lines of at most `width` characters, broken at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  return [...lines, line];
}
