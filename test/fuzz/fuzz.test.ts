import { afterEach, describe, expect, it } from "vitest";
import type { FuzzTarget } from "./http-fuzz.ts";
import { fuzz } from "./http-fuzz.ts";
import { MODES, startMode } from "./modes.ts";

/**
 * Generated raw HTTP against each mode, a bounded count in `npm test` (`npm run fuzz` runs
 * the same for longer). The seed is fixed, so a failure replays: fast-check prints the
 * seed and path, which FUZZ_SEED and FUZZ_PATH take (FUZZ_RUNS sets the count).
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
const SEED = Number(process.env.FUZZ_SEED ?? 20_261_123);
const PATH = process.env.FUZZ_PATH;

describe("fuzzed raw HTTP: the node never answers a client's input with a 5xx and keeps answering", () => {
  let target: FuzzTarget | undefined;
  afterEach(async () => {
    await target?.close();
    target = undefined;
  });

  it.each(MODES)(
    "%s",
    async (mode) => {
      target = await startMode(mode);
      const stats = await fuzz(target, { runs: RUNS, seed: SEED, path: PATH });
      if (process.env.FUZZ_VERBOSE) console.log(mode, JSON.stringify(stats));
      expect(stats.sequences).toBeGreaterThanOrEqual(RUNS);
    },
    120_000,
  );
});
