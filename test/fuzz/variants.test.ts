import { afterEach, describe, expect, it } from "vitest";
import { MODES, startMode } from "./modes.ts";
import { fuzzVariants, type VariantTarget } from "./variants.ts";

/**
 * The variant generator (issue 70) against each mode: requests spelled in every encoding of
 * grammar.ts, checked for the invariants of variants.ts. A bounded count with a fixed seed
 * in `npm test`; FUZZ_RUNS raises it, FUZZ_SEED and FUZZ_PATH replay what fast-check printed,
 * and `npm run fuzz` runs it for longer.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 80);
const SEED = Number(process.env.FUZZ_SEED ?? 20_261_124);
const PATH = process.env.FUZZ_PATH;
/** FUZZ_COLLECT=1: go on past violations and print the first run that broke each invariant. */
const COLLECT = process.env.FUZZ_COLLECT === "1";

describe("request variants: no spelling reaches what its plain form may not", () => {
  let target: VariantTarget | undefined;
  afterEach(async () => {
    await target?.close();
    target = undefined;
  });

  it.each(MODES)(
    "%s",
    async (mode) => {
      target = await startMode(mode);
      const checker = await fuzzVariants(target, {
        runs: RUNS,
        seed: SEED,
        path: PATH,
        collect: COLLECT,
      });
      if (process.env.FUZZ_VERBOSE || COLLECT) console.log(mode, JSON.stringify(checker.statuses));
      for (const [kind, { run, message }] of checker.found) {
        console.log(`${mode}: ${kind} first broken in run ${run}\n${message.slice(0, 1500)}`);
      }
      expect(checker.sequences).toBeGreaterThanOrEqual(RUNS);
    },
    120_000,
  );
});
