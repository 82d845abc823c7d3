import type { Reporter, TestModule } from "vitest/node";

/** How many of the slowest files the closing lines name. */
const SLOWEST = 25;

/**
 * Prints the slowest files with their durations, then one plain closing line,
 * `N passed, N failed, N skipped`, that CI reads to count the tests (vitest's own summary
 * is formatted for people). The durations show where the suite's time goes in every run.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else skipped++;
      }
      if (m.state() === "failed" && [...m.children.allTests()].length === 0) failed++;
    }
    const slowest = modules
      .map((m) => ({ file: m.relativeModuleId, ms: m.diagnostic().duration }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, SLOWEST);
    process.stdout.write(`\nslowest files:\n`);
    for (const { file, ms } of slowest) {
      process.stdout.write(`  ${(ms / 1000).toFixed(1).padStart(6)} s  ${file}\n`);
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
