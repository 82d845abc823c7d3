import { readFileSync } from "node:fs";
import { relative } from "node:path";
import type { TestSpecification } from "vitest/node";
import { BaseSequencer } from "vitest/node";

/**
 * Starts the slowest files first. On a fresh clone vitest has no timings and starts the
 * largest files first; a 3-minute property file of 60 lines then starts last and runs
 * alone while the other worker idles. The list (test/slow-files.txt, slowest first) is
 * copied from the "slowest files" lines every run prints (test/helpers/summary-reporter.ts).
 */
export default class SlowFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const root = this.ctx.config.root;
    const rank = new Map(
      readFileSync(new URL("../slow-files.txt", import.meta.url), "utf8")
        .split("\n")
        .map((line) => line.trim())
        .filter((line) => line !== "" && !line.startsWith("#"))
        .map((file, i) => [file, i]),
    );
    const rankOf = (f: TestSpecification) =>
      rank.get(relative(root, f.moduleId)) ?? Number.POSITIVE_INFINITY;
    // Array.prototype.sort is stable: files not in the list keep vitest's order.
    return sorted.sort((a, b) => {
      const d = rankOf(a) - rankOf(b);
      return Number.isNaN(d) ? 0 : d;
    });
  }
}
