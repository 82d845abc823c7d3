import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

/**
 * The learned-invalidation benchmark end to end, small: the origin, the three proxies and
 * the oracle as real processes over HTTP. TTL-only proxying serves stale reads and spends
 * nothing on learning; with learning (either action), the proxy spends origin requests on
 * it, learns rules that act, and serves fewer stale reads over the same sequence; with the
 * revalidate action it also fetches entries again.
 */
describe("learned invalidation benchmark (smoke)", () => {
  it("runs the three setups over the same phases, and learning acts and costs requests", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgecache-bench-learn-"));
    const out = join(dir, "learn");
    try {
      await promisify(execFile)(process.execPath, [
        ...["--import", "tsx", "bench/learn.ts"],
        ...["--users", "300", "--orders", "1500", "--requests", "2000", "--ratios", "0.1"],
        ...["--phases", "2", "--connections", "4", "--seed", "3", "--out", out],
      ]);
      const { records } = JSON.parse(readFileSync(`${out}.json`, "utf8")) as {
        records: {
          setup: string;
          phase: number;
          staleReads: number;
          learningPerWrite: number;
          revalidationsPerWrite: number;
          actingRules: number;
          errors: number;
        }[];
      };
      const of = (setup: string) => records.filter((r) => r.setup === setup);
      expect(of("ttl-only").map((r) => r.phase)).toEqual([1, 2]);
      for (const r of records) expect(r.errors).toBe(0);
      for (const r of of("ttl-only")) expect(r.learningPerWrite).toBe(0);
      const stale = (setup: string) => of(setup).reduce((n, r) => n + r.staleReads, 0);
      expect(stale("ttl-only")).toBeGreaterThan(0);
      for (const setup of ["learned", "learned-revalidate"]) {
        expect(of(setup).map((r) => r.phase)).toEqual([1, 2]);
        for (const r of of(setup)) expect(r.learningPerWrite).toBeGreaterThan(0);
        expect(of(setup).at(-1)!.actingRules).toBeGreaterThan(0);
        expect(stale(setup)).toBeLessThan(stale("ttl-only"));
      }
      for (const r of of("learned")) expect(r.revalidationsPerWrite).toBe(0);
      expect(of("learned-revalidate").some((r) => r.revalidationsPerWrite > 0)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // No limit of its own: the bench took over 150 s at load 16 (a fresh-clone CI beside other work).
  }, 600_000);
});
