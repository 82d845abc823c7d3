import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import { requireBuild } from "../helpers/services.ts";
import { mapStore } from "./map-store.ts";

// edgecache/testing as a user's project reaches it: by the package name, through the
// `exports` map, to the built files. The suites themselves are tested by every backend's
// test; this holds the way in.

const ROOT = new URL("../../", import.meta.url);
const built = requireBuild();

built.describe("edgecache/testing, imported by its package name", () => {
  it("the exports entry names built JavaScript and declarations that exist", () => {
    const pkg = JSON.parse(readFileSync(new URL("package.json", ROOT), "utf8"));
    const entry = pkg.exports["./testing"] as { types: string; default: string };
    expect(entry).toEqual({
      types: "./dist/testing/index.d.ts",
      default: "./dist/testing/index.js",
    });
    for (const file of Object.values(entry)) expect(existsSync(new URL(file, ROOT))).toBe(true);
  });

  it("plain Node resolves it and finds the six suites, with fast-check not installed", async () => {
    // A child process: Node's own resolution of the exports map, no vitest transform. Its
    // resolve hook answers fast-check as missing: a store's author need not install it.
    const missingFastCheck = `export async function resolve(specifier, context, next) {
      if (specifier === "fast-check") throw Object.assign(new Error("not installed"), { code: "ERR_MODULE_NOT_FOUND" });
      return next(specifier, context);
    }`;
    const script = `
      import { register } from "node:module";
      register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(missingFastCheck)}`)});
      const testing = await import("edgecache/testing");
      const suites = ["storeConformance", "changeLogConformance", "sourceConformance",
        "sqlDriverConformance", "captureFeedConformance", "ormAdapterConformance"];
      console.log(JSON.stringify(suites.map((name) => typeof testing[name])));`;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--input-type=module", "-e", script],
      { cwd: ROOT },
    );
    expect(JSON.parse(stdout)).toEqual(Array(6).fill("function"));
  });
});

if (built.reachable) {
  // The built suite run over the guide's example store: the package's copy of the suite
  // drives the caller's vitest (a peer dependency, so one instance), as in a user's project.
  // Typed from the source: `tsc --noEmit` runs before the build in `npm run check`.
  const specifier = "edgecache/testing";
  const { storeConformance }: typeof import("../../src/testing/index.ts") = await import(specifier);
  storeConformance("map, through edgecache/testing", (clock) => mapStore({ now: clock.now }));
}
