import { execFile, execFileSync } from "node:child_process";
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONFIG_FILES } from "../../src/adapter/node/config.ts";
import { tempDir } from "../app/harness.ts";

// Every config file name the docs offer loads in an app of either package type, through
// each way the docs start edgecache: the published package's bin, `npx edgecache`, the
// clone's bin and `npm start`. The package is built and packed here (`npm pack`), as a user
// would install it, into a directory of its own: the shared dist/ is left alone.

const ROOT = resolve(import.meta.dirname, "../..");
const run = promisify(execFile);

/** Each name's file, default-exporting one unknown key that names it (so the failure shows
 * which file was read and that its code ran: TypeScript types stripped). */
function source(file: string, type: "module" | "commonjs"): string {
  const key = `loaded_${file.replace(/\W/g, "_")}`;
  if (/\.json$/.test(file)) return JSON.stringify({ [key]: 1 });
  if (/\.jsonc$/.test(file)) return `{\n  // a comment\n  "${key}": 1,\n}\n`;
  if (/\.[mc]?ts$/.test(file)) return `const n: number = 1;\nexport default { ${key}: n };\n`;
  // Plain JavaScript in each package type's own module syntax.
  const cjs = file.endsWith(".cjs") || (file.endsWith(".js") && type === "commonjs");
  return cjs ? `module.exports = { ${key}: 1 };\n` : `export default { ${key}: 1 };\n`;
}

const expected = (file: string) =>
  `unknown option "loaded_${file.replace(/\W/g, "_")}": expected one of`;

/** Runs a command that must fail at start on the config's unknown key; its stderr. */
async function failure(cmd: string, args: string[], cwd: string): Promise<string> {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (/^npm_/i.test(name) || name === "PORT") delete env[name];
  try {
    const { stdout } = await run(cmd, args, { cwd, env, encoding: "utf8" });
    throw new Error(`expected a failure, got:\n${stdout}`);
  } catch (err) {
    const { stderr, stdout } = err as { stderr?: string; stdout?: string };
    if (stderr === undefined) throw err;
    return `${stdout}\n${stderr}`;
  }
}

let work: string;
let installed: string; // the extracted package in an app's node_modules

beforeAll(() => {
  work = tempDir("edgecache-pack-");
  const stage = join(work, "stage");
  mkdirSync(stage);
  execFileSync(
    process.execPath,
    [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"].concat([
      "--outDir",
      join(stage, "dist"),
    ]),
    { cwd: ROOT, stdio: "ignore" },
  );
  for (const f of ["package.json", "README.md", "bin"])
    cpSync(join(ROOT, f), join(stage, f), { recursive: true });
  // --ignore-scripts: prepack would rebuild the shared dist/; the stage already holds the build.
  execFileSync("npm", ["pack", "--ignore-scripts", "--pack-destination", work], {
    cwd: stage,
    stdio: "ignore",
  });
  const tarball = readdirSync(work).find((f) => f.endsWith(".tgz"));
  if (!tarball) throw new Error("npm pack wrote no tarball");
  installed = join(work, "edgecache");
  mkdirSync(installed);
  execFileSync("tar", ["-xzf", join(work, tarball), "-C", installed, "--strip-components=1"]);
  // The package's dependencies as npm would place them: this machine installs nothing from
  // the registry in a test, so they are the clone's own (the same lockfile's versions).
  symlinkSync(join(ROOT, "node_modules"), join(installed, "node_modules"), "dir");
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A fresh app of the package type with the packed edgecache installed and `file` in it. */
function app(type: "module" | "commonjs", file: string): string {
  const dir = mkdtempSync(join(work, `app-${type}-`));
  mkdirSync(join(dir, "node_modules/.bin"), { recursive: true });
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name: "app", private: true, ...(type === "module" && { type }) }),
  );
  symlinkSync(installed, join(dir, "node_modules/edgecache"), "dir");
  symlinkSync("../edgecache/bin/edgecache.js", join(dir, "node_modules/.bin/edgecache"));
  writeFileSync(join(dir, file), source(file, type));
  return dir;
}

describe("config files load in an app of either package type", () => {
  it("every kind of file is looked for, and the reference names each", () => {
    const kinds = CONFIG_FILES.map((f) => f.slice("edgecache.config".length));
    expect(kinds.join(" ")).toBe(".json .jsonc .ts .mts .cts .js .mjs .cjs");
    const reference = readFileSync(join(ROOT, "docs/reference/options.md"), "utf8");
    for (const kind of kinds) expect(reference, kind).toContain(`\`${kind}\``);
  });

  for (const type of ["commonjs", "module"] as const) {
    it(`${type}: the published bin reads each config file name`, async () => {
      for (const file of CONFIG_FILES) {
        const dir = app(type, file);
        const out = await failure(join(dir, "node_modules/.bin/edgecache"), ["serve"], dir);
        expect(out, file).toContain(expected(file));
      }
    }, 120_000);

    it(`${type}: npx edgecache and --config read a .ts config`, async () => {
      const dir = app(type, "edgecache.config.ts");
      const viaNpx = await failure("npx", ["--offline", "--no-install", "edgecache", "serve"], dir);
      expect(viaNpx).toContain(expected("edgecache.config.ts"));
      writeFileSync(join(dir, "other.mts"), source("other.mts", type));
      const named = await failure(
        join(dir, "node_modules/.bin/edgecache"),
        ["proxy", "--config", "other.mts"],
        dir,
      );
      expect(named).toContain(expected("other.mts"));
    }, 120_000);

    it(`${type}: the clone's bin and npm start read a .ts config`, async () => {
      const dir = app(type, "edgecache.config.ts");
      const viaBin = await failure(
        process.execPath,
        [join(ROOT, "bin/edgecache.js"), "serve"],
        dir,
      );
      expect(viaBin).toContain(expected("edgecache.config.ts"));
      // npm start runs in the clone; the app's config is named by its path.
      const config = join(dir, "edgecache.config.ts");
      const viaStart = await failure("npm", ["start", "--", "--config", config], ROOT);
      expect(viaStart).toContain(expected("edgecache.config.ts"));
    }, 120_000);
  }

  it("a config file of another kind is refused by name", async () => {
    const dir = app("module", "edgecache.config.ts");
    writeFileSync(join(dir, "config.yaml"), "port: 1\n");
    const out = await failure(
      join(dir, "node_modules/.bin/edgecache"),
      ["serve", "--config", "config.yaml"],
      dir,
    );
    expect(out).toContain("expected a .json, .jsonc, .ts, .mts, .cts, .js, .mjs or .cjs file");
  }, 60_000);
});
