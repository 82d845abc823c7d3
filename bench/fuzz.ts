/**
 * The fuzzing harness of `test/fuzz` run for longer: generated raw HTTP against each mode
 * (data API, proxy, tenants, admin API with and without a token), every server started
 * here on 127.0.0.1. Exits 1 on the first violation, after fast-check printed the sequence,
 * its seed and path (replay with --seed and --path), or on an uncaught error in the node.
 *
 * Each mode gets the raw fuzzer (http-fuzz.ts) and then the variant generator (variants.ts:
 * encodings, absolute-form, claim headers, echo-origin invariants).
 *
 *   npm run fuzz -- --minutes 30                 # 30 minutes in all, shared by the modes
 *   npm run fuzz -- --runs 20000                 # per mode
 *   npm run fuzz -- --duration 600 --modes proxy,tenants
 *
 * Flags: --minutes n (in all; runs until then unless --runs says fewer), --runs n (per
 * mode and generator, default 5000), --duration s (per mode and generator, stops early),
 * --seed n (default: random, printed), --path p (with --seed: replays one failure),
 * --modes a,b (default all).
 */
import { parseArgs } from "node:util";
import { type FuzzStats, fuzz } from "../test/fuzz/http-fuzz.ts";
import { MODES, type Mode, startMode } from "../test/fuzz/modes.ts";
import { fuzzVariants } from "../test/fuzz/variants.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string" },
    minutes: { type: "string" },
    duration: { type: "string" },
    seed: { type: "string" },
    path: { type: "string" },
    modes: { type: "string", default: MODES.join(",") },
  },
});
const modes = values.modes.split(",") as Mode[];
for (const m of modes) {
  if (!MODES.includes(m))
    throw new Error(`--modes: expected some of ${MODES.join(", ")}, got ${m}`);
}
const minutes = values.minutes === undefined ? undefined : Number(values.minutes);
if (minutes !== undefined && !(minutes > 0)) {
  throw new Error(`--minutes: expected a number > 0, got ${values.minutes}`);
}
// With --minutes alone, the time decides: a count no run reaches.
const runs = Number(values.runs ?? (minutes === undefined ? 5000 : 1e9));
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
// Two generators a mode: --minutes is shared by all of them.
const timeLimitMs =
  values.duration !== undefined
    ? Number(values.duration) * 1000
    : minutes !== undefined
      ? (minutes * 60_000) / (modes.length * 2)
      : undefined;

// The node runs in this process: an error nothing caught would have ended a real one.
const crashes: unknown[] = [];
process.on("uncaughtException", (err) => crashes.push(["uncaught exception", err]));
process.on("unhandledRejection", (err) => crashes.push(["unhandled rejection", err]));
// The nodes' own logging of aborted requests (the fuzzer closes sockets early) is noise here.
console.error = () => {};

console.log(
  `fuzz: seed ${seed}, ${runs >= 1e9 ? "unbounded" : runs} runs per mode and generator${timeLimitMs ? `, at most ${(timeLimitMs / 1000).toFixed(0)} s each` : ""}`,
);
let failed = false;
for (const mode of modes) {
  const target = await startMode(mode);
  const started = performance.now();
  let stats: FuzzStats | undefined;
  try {
    stats = await fuzz(target, { runs, seed, path: values.path, timeLimitMs });
    const variants = await fuzzVariants(target, { runs, seed, path: values.path, timeLimitMs });
    console.log(
      `${mode}: ${variants.sequences} variant sequences; replies by status ${JSON.stringify(variants.statuses)}`,
    );
  } catch (err) {
    failed = true;
    // fast-check's message holds the sequence as generated (bodies in full); the cause holds
    // the violation, with each request's head and its body's size.
    const { message, cause } = err as Error;
    console.log(`${mode}: FAILED\n${message.split("\n").slice(0, 2).join("\n")}`);
    console.log(cause instanceof Error ? cause.message : String(cause ?? message));
  } finally {
    await target.close();
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (stats) {
    console.log(
      `${mode}: ${stats.sequences} sequences, ${stats.requests} requests in ${seconds} s; replies by status ${JSON.stringify(stats.statuses)}; ${stats.idle} ended on silence`,
    );
  }
  if (crashes.length > 0) {
    failed = true;
    console.log(`${mode}: uncaught in the node:`, crashes.splice(0));
  }
  if (failed) break;
}
process.exit(failed ? 1 : 0);
