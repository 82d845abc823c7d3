/**
 * The fuzzing harness of `test/fuzz` run for longer: generated raw HTTP against each mode
 * (data API, proxy, tenants, admin API with and without a token), every server started
 * here on 127.0.0.1. Exits 1 on the first violation, after fast-check printed the sequence,
 * its seed and path (replay with --seed and --path), or on an uncaught error in the node.
 *
 *   npm run fuzz -- --runs 20000                 # per mode
 *   npm run fuzz -- --duration 600 --modes proxy,tenants
 *
 * Flags: --runs n (per mode, default 5000), --duration s (per mode, stops early),
 * --seed n (default: random, printed), --path p (with --seed: replays one failure),
 * --modes a,b (default all).
 */
import { parseArgs } from "node:util";
import { type FuzzStats, fuzz } from "../test/fuzz/http-fuzz.ts";
import { MODES, type Mode, startMode } from "../test/fuzz/modes.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5000" },
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
const runs = Number(values.runs);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const timeLimitMs = values.duration === undefined ? undefined : Number(values.duration) * 1000;

// The node runs in this process: an error nothing caught would have ended a real one.
const crashes: unknown[] = [];
process.on("uncaughtException", (err) => crashes.push(["uncaught exception", err]));
process.on("unhandledRejection", (err) => crashes.push(["unhandled rejection", err]));
// The nodes' own logging of aborted requests (the fuzzer closes sockets early) is noise here.
console.error = () => {};

console.log(
  `fuzz: seed ${seed}, ${runs} runs per mode${timeLimitMs ? `, at most ${values.duration} s each` : ""}`,
);
let failed = false;
for (const mode of modes) {
  const target = await startMode(mode);
  const started = performance.now();
  let stats: FuzzStats | undefined;
  try {
    stats = await fuzz(target, { runs, seed, path: values.path, timeLimitMs });
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
