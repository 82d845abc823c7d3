import { defineConfig } from "vitest/config";
import SlowFirst from "./test/helpers/slow-first.ts";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Builds dist/ when src/ changed since: the CLI's tests run the build (test/helpers/built-cli.ts).
    globalSetup: ["./test/helpers/built-cli.ts"],
    reporters: ["default", "./test/helpers/summary-reporter.ts"],
    // Two files at a time even on two cores (vitest's default there is one): most of a test's
    // time is spent waiting on servers, workerd and timers, so the suite takes about 7 minutes
    // instead of 11. Every test makes its own schema, key prefix and port, so files never meet.
    maxWorkers: 2,
    // The slowest files first, so no long file runs alone at the end (test/slow-files.txt).
    sequence: { sequencer: SlowFirst },
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
