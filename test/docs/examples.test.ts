import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

// A code block in the docs whose info string names a file (```ts file=test/...) is that
// repository file, run by the tests, word for word: only its imports differ, written as a
// user of the package writes them. So an example shown cannot stop working unseen.

const ROOT = resolve(import.meta.dirname, "../..");

interface Shown {
  page: string;
  file: string;
  code: string;
}

/** Every block with `file=` in the docs, with the page that shows it. */
function shownFiles(): Shown[] {
  const pages = readdirSync(join(ROOT, "docs"), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".md"))
    .map((f) => join("docs", f));
  const shown: Shown[] = [];
  for (const page of ["README.md", ...pages]) {
    const text = readFileSync(join(ROOT, page), "utf8");
    for (const block of text.matchAll(/^```\w*[^\n]*?\bfile=(\S+)[^\n]*\n([\s\S]*?)^```$/gm)) {
      shown.push({ page, file: block[1]!, code: block[2]! });
    }
  }
  return shown;
}

/**
 * A repository import as a user writes it: `../../src/index.ts` is `edgecache`,
 * `../../src/testing/index.ts` is `edgecache/testing`, `../../src/stores/memory.ts` is
 * `edgecache/stores/memory`.
 */
function asUser(code: string): string {
  return code.replace(/from "(?:\.\.\/)+src\/([^"]+)\.ts"/g, (_, path: string) => {
    const subpath = path === "index" ? "" : `/${path.replace(/\/index$/, "")}`;
    return `from "edgecache${subpath}"`;
  });
}

describe("the docs' examples", () => {
  const shown = shownFiles();
  const exported = Object.keys(
    JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).exports as object,
  );

  it("there are examples taken from files (the guide to edgecache/testing has three)", () => {
    expect(shown.length).toBeGreaterThanOrEqual(3);
  });

  for (const { page, file, code } of shown) {
    it(`${page} shows ${file} as it is, imports as a user writes them`, () => {
      expect(code).toBe(asUser(readFileSync(join(ROOT, file), "utf8")));
      for (const [, specifier] of code.matchAll(/from "(edgecache[^"]*)"/g)) {
        expect(exported).toContain(`.${specifier!.slice("edgecache".length)}`);
      }
    });
  }
});
