import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker } from "../helpers/workerd.ts";

let mf: Miniflare;

beforeAll(async () => {
  mf = await startWorker(new URL("./workerd-entry.ts", import.meta.url));
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
