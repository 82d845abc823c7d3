/**
 * D1 change capture's lag on Workers, inside workerd (miniflare, offline): two isolates of
 * the edgecache Worker over one local D1 with capture installed; rows are updated straight
 * in D1 through a second Worker's binding (as `wrangler d1 execute` or another Worker
 * would), one at a time at random moments, and a cached read of the row through an isolate
 * is repeated every POLL_MS until it shows the new value. Reported per alarm interval
 * (EDGECACHE_CAPTURE_MS): the lag a client sees (update returned to first fresh read,
 * p50/p99/max), the lag the Durable Object measures (the trigger's record to the record in
 * the log), and whether any read after that was stale (target 0).
 *
 *   npx tsx bench/d1-capture.ts               # 1000 ms (the default) and 250 ms, 60 updates each
 *   npx tsx bench/d1-capture.ts --writes 20   # quicker
 *
 * Figures from Cloudflare's network are not available from this machine: there D1, the
 * Durable Object and the isolate are apart, and each step adds its round trip.
 */
import { cpus, loadavg } from "node:os";
import { parseArgs } from "node:util";
import type { Row } from "../src/core/data/query.ts";
import { startEdgecacheWorkers } from "../test/adapter/cloudflare/edgecache-workers.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";

const { values } = parseArgs({
  options: {
    writes: { type: "string", default: "60" },
    intervals: { type: "string", default: "1000,250" },
    out: { type: "string", default: "bench/results/d1-capture" },
  },
});
const WRITES = Number(values.writes);
const INTERVALS = values.intervals.split(",").map(Number);
/** How often the client reads while it waits for the change, ms. */
const POLL_MS = 10;

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
const round = (n: number) => Math.round(n * 10) / 10;

interface Run {
  intervalMs: number;
  writes: number;
  clientP50: number;
  clientP99: number;
  clientMax: number;
  objectP50: number | undefined;
  objectP99: number | undefined;
  staleAfter: number;
}

async function measure(intervalMs: number): Promise<Run> {
  const w = await startEdgecacheWorkers({ names: ["a", "b"], captureMs: intervalMs });
  try {
    const db = await w.fresh();
    await db.installCapture();
    const raw = await w.direct();
    const ids = (await raw.prepare("SELECT id FROM users ORDER BY id").all()).results as Row[];
    const read = async (isolate: string, id: unknown) =>
      (await (await w.fetch(isolate, `/v1/users/${id}`)).json()) as Row;
    const lags: number[] = [];
    let staleAfter = 0;
    for (let i = 0; i < WRITES; i++) {
      const id = ids[i % ids.length]!.id;
      await read("a", id);
      await read("b", id);
      // A random moment of the alarm's interval.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * intervalMs));
      const value = `Lag${i}`;
      await raw.prepare("UPDATE users SET lastName = ? WHERE id = ?").bind(value, id).all();
      const written = performance.now();
      while ((await read("a", id)).lastName !== value) {
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
      lags.push(performance.now() - written);
      // Once seen, never old again, in either isolate.
      for (const isolate of ["a", "b"])
        if ((await read(isolate, id)).lastName !== value) staleAfter++;
    }
    const ns = (await w.mf.getDurableObjectNamespace("CHANGE_LOG", "a")) as unknown as {
      idFromName(name: string): unknown;
      get(id: unknown): { fetch(url: string, init: RequestInit): Promise<Response> };
    };
    const stub = ns.get(ns.idFromName("edgecache"));
    const object = (await (
      await stub.fetch("https://change-log/capture", { method: "POST", body: "{}" })
    ).json()) as { lagP50?: number; lagP99?: number };
    lags.sort((a, b) => a - b);
    return {
      intervalMs,
      writes: WRITES,
      clientP50: round(quantile(lags, 0.5)),
      clientP99: round(quantile(lags, 0.99)),
      clientMax: round(lags.at(-1) ?? Number.NaN),
      objectP50: object.lagP50,
      objectP99: object.lagP99,
      staleAfter,
    };
  } finally {
    await w.close();
  }
}

const started = Date.now();
const loadBefore = loadavg().map((n) => round(n));
const runs: Run[] = [];
for (const interval of INTERVALS) {
  const run = await measure(interval);
  console.log(JSON.stringify(run));
  runs.push(run);
}
const command = `npx tsx bench/d1-capture.ts${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(" ")}` : ""}`;
const git = gitState();
const md = [
  "# D1 change capture: lag on Workers (workerd, local)",
  "",
  `${new Date().toISOString()}, ${describeCode(git)}. Node ${process.version}, ${cpus().length} CPUs, load average ${loadBefore[0]} before and ${round(loadavg()[0]!)} after (other work was running on this machine). ${Math.round((Date.now() - started) / 1000)} s in all.`,
  "",
  `\`${command}\``,
  "",
  `Two isolates of the edgecache Worker over one local D1 with capture installed, inside workerd (miniflare). ${WRITES} updates per run, each made straight in D1 through a second Worker's binding at a random moment of the alarm's interval, one at a time; the row's cached read is repeated through an isolate every ${POLL_MS} ms until it shows the update. Client lag: from the update's return to the first read that shows it. Object lag: what the Durable Object measures, from the trigger's record of the change to its record in the log. Stale after: reads of the row through either isolate, after the first fresh one, that showed the old value (target 0). No write goes through the Worker, so the drain after such a write never helps: this is the alarm (and the drain before a sync that finds the last one two intervals old) alone. Locally workerd, D1 and the Durable Object share this machine; alarms fire late under load.`,
  "",
  "| EDGECACHE_CAPTURE_MS | updates | client lag p50 / p99 / max (ms) | object lag p50 / p99 (ms) | stale after |",
  "| --- | --- | --- | --- | --- |",
  ...runs.map(
    (r) =>
      `| ${r.intervalMs} | ${r.writes} | ${r.clientP50} / ${r.clientP99} / ${r.clientMax} | ${r.objectP50 ?? "-"} / ${r.objectP99 ?? "-"} | ${r.staleAfter} |`,
  ),
  "",
].join("\n");
const load = { before: loadBefore, after: loadavg().map((n) => round(n)), cpus: cpus().length };
writeResults(values.out, { date: new Date().toISOString(), command, git, load, runs }, md);
console.log(md);
