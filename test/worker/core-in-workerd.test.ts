import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let mf: Miniflare;

beforeAll(async () => {
  // Bundle for the browser platform: a Node built-in anywhere in the core fails the build.
  const out = await build({
    entryPoints: [new URL("./core-entry.ts", import.meta.url).pathname],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
  });
  mf = new Miniflare({
    modules: true,
    script: out.outputFiles[0]!.text,
    compatibilityDate: "2025-01-01",
  });
}, 60_000);

afterAll(async () => {
  await mf?.dispose();
});

describe("the portable core inside workerd", () => {
  it("runs getOrSet with single flight, invalidation by write and by tag", async () => {
    const res = await mf.dispatchFetch("http://localhost/");
    const body = (await res.json()) as Record<string, unknown>;
    expect(body.runtime).toBe("Cloudflare-Workers");
    expect(body.loads).toBe(1);
    expect(body.first).toEqual({ id: "1-abc", firstName: "Lane" });
    expect(body.hit).toEqual(body.first);
    expect(body.invalidatedKeys).toEqual(["user:1"]);
    expect(body.afterWrite).toBeNull();
    expect(body.byTag).toBe(1);
    expect(body.stats).toMatchObject({ hits: 1, loads: 1, writes: 1 });
  }, 30_000);
});

describe("the core imports nothing runtime-specific", () => {
  it("has no node: import and no Cloudflare type in src/core", () => {
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const f of readdirSync(dir)) {
        const p = join(dir, f);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith(".ts")) files.push(p);
      }
    };
    walk(new URL("../../src/core", import.meta.url).pathname);
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) {
      const text = readFileSync(f, "utf8");
      expect(text, f).not.toMatch(/from\s+["']node:|require\(|@cloudflare\/workers-types/);
    }
  });
});
