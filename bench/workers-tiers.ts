/**
 * Hit latency of the Workers read tiers below isolate memory, in miniflare: the Durable
 * Object tier (`CACHE_TIER`) against KV and the Cache API, with the distance wrapper of
 * test/adapter/cloudflare/distance.ts. Each request reads one key from one tier (bench/workers-tiers-entry.ts);
 * isolate memory, read the same way, is the baseline: what a request costs with no tier
 * behind it. Run by `npm run bench:workers -- --tiers`.
 *
 * The locations: the tier's object `rtt` ms away (the log's object is where its first caller
 * was; a far isolate is far from both), KV `--kv-rtt` ms away (KV serves hot keys from the
 * data centre's cache; a cold read goes to a central store further away), the Cache API in
 * the data centre (0 ms: it is the isolate's own). Local workerd answers each in microseconds,
 * so at 0 ms the figures are each tier's own cost on this machine.
 */
import { performance } from "node:perf_hooks";
import { Miniflare } from "miniflare";
import { bundle, COMPATIBILITY_DATE } from "../test/helpers/workerd.ts";
import { type RunHead, saveRun } from "./lib/worker-runs.ts";
import { quantile, round } from "./workload/workload.ts";

export interface TiersOptions {
  /** The tier object's round trips, ms (0 is always measured: the tiers' own cost). */
  rtts: number[];
  /** KV's round trip, ms. */
  kvRtt: number;
  /** Reads per tier and location. */
  reads: number;
  /** Keys filled per tier (read in turn). */
  keys: number;
  /** Body bytes of each entry. */
  bytes: number;
  out: string;
}

const TIERS = ["memory", "cache-api", "kv", "durable-object"] as const;
type Tier = (typeof TIERS)[number];

interface TierRecord {
  rttMs: number;
  tier: Tier;
  /** The tier's own round trip in this location (what the wrapper adds), ms. */
  linkMs: number;
  /** A request's time as the client saw it, ms. */
  p50Ms: number;
  p99Ms: number;
  /** The tier's `get` inside the Worker, ms. */
  getP50Ms: number;
  /** p50 over memory's p50 in the same location: the tier's cost per hit. */
  overMemoryMs: number;
  hits: number;
  reads: number;
  callsPerRead: number;
}

export async function runTiers(options: TiersOptions, command: string): Promise<void> {
  const started = Date.now();
  const script = await bundle(new URL("./workers-tiers-entry.ts", import.meta.url));
  const mf = new Miniflare({
    modules: true,
    script,
    compatibilityDate: COMPATIBILITY_DATE,
    kvNamespaces: ["CACHE"],
    durableObjects: { CACHE_TIER: { className: "CacheTierObject", useSQLite: true } },
  });
  const records: TierRecord[] = [];
  try {
    await mf.ready;
    const ask = async (path: string) => {
      const res = await mf.dispatchFetch(`http://bench${path}`);
      if (!res.ok) throw new Error(`[bench] ${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as { hit: boolean; ms: number; calls: number };
    };
    for (const tier of TIERS) {
      await ask(`/fill?tier=${tier}&keys=${options.keys}&bytes=${options.bytes}`);
    }
    for (const rtt of [...new Set([0, ...options.rtts])]) {
      const kv = rtt === 0 ? 0 : options.kvRtt;
      const measured = new Map<
        Tier,
        { client: number[]; get: number[]; hits: number; calls: number }
      >();
      for (const tier of TIERS) measured.set(tier, { client: [], get: [], hits: 0, calls: 0 });
      // Tiers in turn, read by read, so the machine's moods fall on all of them alike.
      for (let i = 0; i < options.reads; i++) {
        for (const tier of TIERS) {
          const m = measured.get(tier)!;
          const t0 = performance.now();
          const r = await ask(`/read?tier=${tier}&key=k${i % options.keys}&rtt=${rtt}&kv=${kv}`);
          m.client.push(performance.now() - t0);
          m.get.push(r.ms);
          m.hits += r.hit ? 1 : 0;
          m.calls += r.calls;
        }
      }
      const memoryP50 = quantile(measured.get("memory")!.client, 0.5);
      for (const tier of TIERS) {
        const m = measured.get(tier)!;
        const p50 = quantile(m.client, 0.5);
        records.push({
          rttMs: rtt,
          tier,
          linkMs: tier === "durable-object" ? rtt : tier === "kv" ? kv : 0,
          p50Ms: round(p50, 2),
          p99Ms: round(quantile(m.client, 0.99), 2),
          getP50Ms: round(quantile(m.get, 0.5), 2),
          overMemoryMs: round(p50 - memoryP50, 2),
          hits: m.hits,
          reads: options.reads,
          callsPerRead: round(m.calls / options.reads, 2),
        });
      }
      const line = records
        .filter((r) => r.rttMs === rtt)
        .map((r) => `${r.tier} ${r.p50Ms} ms (${r.hits}/${r.reads} hits)`)
        .join(", ");
      console.log(`object ${rtt} ms, KV ${kv} ms: ${line}`);
    }
  } finally {
    await mf.dispose();
  }
  const table = tableOf(records);
  const path = saveRun(options.out, command, { options, records }, (head) =>
    markdown(options, command, head, table),
  );
  const missed = records.filter((r) => r.hits < r.reads);
  if (missed.length > 0) {
    console.error(
      `[bench] reads that missed: ${missed.map((r) => `${r.tier} at ${r.rttMs} ms`).join(", ")}`,
    );
    process.exitCode = 1;
  }
  const seconds = Math.round((Date.now() - started) / 1000);
  console.log(`\n${table}\n\nwrote ${path}.json and .md in ${seconds} s`);
}

function tableOf(records: TierRecord[]): string {
  const rows = records.map(
    (r) =>
      `| ${r.rttMs} | ${r.tier} | ${r.linkMs} | ${r.p50Ms} | ${r.p99Ms} | ${r.getP50Ms} | ${r.overMemoryMs} | ${r.callsPerRead} | ${r.hits}/${r.reads} |`,
  );
  return [
    "| object rtt (ms) | tier | its link (ms) | hit p50 (ms) | hit p99 (ms) | get p50 in the Worker (ms) | over memory (ms) | calls per read | hits |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}

function markdown(
  options: TiersOptions,
  command: string,
  { code, date, machine }: RunHead,
  table: string,
): string {
  return `# Workers read tiers: hit latency below isolate memory

Command: \`${command}\`
Code: ${code}. Date: ${date}. Machine: ${machine}.

Each request reads one of ${options.keys} keys (${options.bytes}-byte bodies) from one tier,
${options.reads} reads per tier and location, tiers in turn (bench/workers-tiers-entry.ts in
miniflare). The bindings are wrapped with test/adapter/cloudflare/distance.ts: the Durable Object tier's
object at the location's round trip, KV at ${options.kvRtt} ms (0 in the 0 ms location), the
Cache API unwrapped (the data centre's own). "Over memory" is the p50 over isolate memory's,
read the same way in the same location: what a hit in that tier adds to a request. The time
"in the Worker" is workerd's clock, which moves in whole milliseconds.

${table}

What it shows:
- At 0 ms each tier's own cost on this machine: the Durable Object tier's read (an object call,
  a SQLite row) against KV's and the Cache API's in local workerd.
- At a distance a hit in the Durable Object tier costs its object's round trip, as a read of
  the log's object does; it does not move to the reader. KV and the Cache API hits cost what
  their links cost. The tier is not a faster tier: it is the one whose copy every isolate sees
  at once (KV takes up to about 60 s to show a new value elsewhere; the Cache API is per data
  centre), for data every isolate must see fresh (docs/guides/workers/tiers.md).
- Local workerd does not simulate KV's propagation delay or the Cache API's per-data-centre
  scope: the figures are latencies only.
`;
}
