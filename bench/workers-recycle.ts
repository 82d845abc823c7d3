/**
 * Isolates recycled: the edgecache Worker in miniflare (strict mode, D1, the Cache API, KV,
 * the Durable Object log) with a new isolate's cache and log follower every `--recycle`
 * requests, as at the edge, where isolates start all the time. The same sequence and
 * stale-read oracle as bench:workers, run three ways in one invocation:
 *
 * - `long-lived`: one isolate all along (the baseline);
 * - `recycled`: a new isolate every N requests, which starts from the log's history the
 *   object keeps (the summary an isolate uploaded and the records after it);
 * - `recycled, history withheld`: the same, with the history taken out of the object's
 *   replies (test/adapter/cloudflare/edgecache-entry.ts WITHHOLD_HISTORY): a new isolate judges what it
 *   did not apply by each table's last change, as before the object kept a history.
 *
 * Reports the hit rate, where the hits came from (memory, the Cache API, KV), the entries
 * refused, D1 loads and stale reads. Run by `npm run bench:workers -- --recycle 200`.
 *
 * "A new isolate" is a new Worker instance inside the same workerd isolate (the entry drops
 * its cache, log follower and memory tier and makes them again on the next request): what a
 * new isolate starts with, minus the module load.
 */
import { startEdgecacheWorkers } from "../test/adapter/cloudflare/edgecache-workers.ts";
import {
  d1Statements,
  finishRun,
  type RunHead,
  runFigures,
  seedWorkerD1,
  type WorkersRun,
  warmed,
} from "./lib/worker-runs.ts";
import type { InitialData } from "./workload/generate.ts";
import { Client, runSequence } from "./workload/run.ts";
import { pctLabel, round, sequences } from "./workload/workload.ts";

export interface RecycleOptions {
  /** A new isolate every this many data requests. */
  recycle: number;
  users: number;
  orders: number;
  requests: number;
  connections: number;
  writeRatios: number[];
  seed: number;
  out: string;
}

const VARIANTS = ["long-lived", "recycled", "recycled, history withheld"] as const;
type Variant = (typeof VARIANTS)[number];

interface Totals {
  workers: number;
  loads: number;
  refused: number;
  tiers: Record<string, number>;
}

interface RecycleRecord extends WorkersRun {
  variant: Variant;
  /** Isolates (Worker instances) over the measured run. */
  isolates: number;
  /** Reads answered by each tier, over all reads. */
  tierHitRate: Record<string, number>;
  /** Reads answered by a tier other than the isolate's memory, over all reads. */
  sharedHitRate: number;
  /** Entries a shared tier held that the isolate's fence refused, per read. */
  refusedPerRead: number;
  d1LoadsPerRequest: number;
}

export async function runRecycled(
  options: RecycleOptions,
  data: InitialData,
  template: string,
  command: string,
): Promise<void> {
  const started = Date.now();
  const seed = d1Statements(template);
  const records: RecycleRecord[] = [];
  const staleSamples: unknown[] = [];
  for (const [writeRatio, ops] of sequences(data, options)) {
    for (const variant of VARIANTS) {
      const vars: Record<string, string> = {};
      if (variant !== "long-lived") vars.RECYCLE_EVERY = String(options.recycle);
      if (variant === "recycled, history withheld") vars.WITHHOLD_HISTORY = "true";
      const w = await startEdgecacheWorkers({
        names: ["r"],
        mode: "strict",
        vars: { r: vars },
        directSockets: true,
      });
      try {
        await seedWorkerD1(w.mf, "r", seed);
        const client = new Client((await w.url("r")).href.replace(/\/$/, ""), options.connections);
        try {
          const oracle = await warmed(client, ops, data, options.connections);
          const before = await client.json<Totals>("/_isolates/stats");
          const o = await runSequence(client, ops, oracle, options.connections);
          const after = await client.json<Totals>("/_isolates/stats");
          const reads = Math.max(1, o.reads);
          const tierHitRate: Record<string, number> = {};
          for (const [tier, hits] of Object.entries(after.tiers)) {
            tierHitRate[tier] = round((hits - (before.tiers[tier] ?? 0)) / reads, 4);
          }
          const shared = Object.entries(tierHitRate)
            .filter(([tier]) => tier !== "memory")
            .reduce((sum, [, rate]) => sum + rate, 0);
          const record: RecycleRecord = {
            ...runFigures("strict", writeRatio, o),
            variant,
            isolates: after.workers - before.workers + (variant === "long-lived" ? 1 : 0),
            tierHitRate,
            sharedHitRate: round(shared, 4),
            refusedPerRead: round((after.refused - before.refused) / reads, 4),
            d1LoadsPerRequest: round((after.loads - before.loads) / Math.max(1, o.requests), 4),
          };
          records.push(record);
          staleSamples.push(...o.staleSamples);
          console.log(
            `${pctLabel(writeRatio)} writes, ${variant}: hit rate ${record.hitRate} (shared tiers ` +
              `${record.sharedHitRate}), refused ${record.refusedPerRead} per read, stale ${record.staleReads}` +
              (record.errors ? `, ${record.errors} errors` : ""),
          );
        } finally {
          client.close();
        }
      } finally {
        await w.close();
      }
    }
  }
  const table = tableOf(records);
  const figures = { options, records, staleSamples };
  const page = (head: RunHead) => markdown(options, command, head, table);
  finishRun(options.out, command, figures, page, table, started);
}

function tableOf(records: RecycleRecord[]): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const rows = records.map((r) => {
    const base = records.find((b) => b.variant === "long-lived" && b.writeRatio === r.writeRatio);
    const points = base ? ((r.hitRate - base.hitRate) * 100).toFixed(1) : "";
    const tiers = Object.entries(r.tierHitRate)
      .map(([t, rate]) => `${t} ${pct(rate)}`)
      .join(", ");
    return `| ${pctLabel(r.writeRatio)} | ${r.variant} | ${r.isolates} | ${pct(r.hitRate)} | ${points} | ${pct(r.sharedHitRate)} | ${tiers} | ${r.refusedPerRead} | ${r.d1LoadsPerRequest} | ${r.staleReads} |`;
  });
  return [
    "| writes | isolates | isolates in the run | hit rate | points vs long-lived | from shared tiers (of reads) | hits per tier (of reads) | refused per read | D1 loads per request | stale reads |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

function markdown(
  options: RecycleOptions,
  command: string,
  { code, date, machine }: RunHead,
  table: string,
): string {
  return `# edgecache on Workers with isolates recycled: a new isolate every ${options.recycle} requests

Command: \`${command}\` (${code}), ${date}.
Machine: ${machine}. ${options.users} users, ${options.orders} orders, ${options.requests} requests per run,
${options.connections} connections, seed ${options.seed}, strict mode.

Each run: a fresh workerd (miniflare) with the edgecache Worker (D1 seeded; KV, the Cache API
and the Durable Object log empty), every read of the sequence read once before it (warming,
not counted; the isolates are recycled through it too). \`long-lived\`: one isolate all
along. \`recycled\`: a new isolate (cache, log follower, memory tier) every ${options.recycle}
data requests, starting from the history the log's object keeps. \`history withheld\`: the
same with the history taken out of the object's replies, so a new isolate judges the shared
tiers' entries by each table's last change, as before the object kept one.

${table}

"From shared tiers" is the reads a tier below the isolate's memory answered (the Cache API,
then KV): what a new isolate lives on until its memory fills. "Refused" counts entries a
shared tier held that the isolate's write fence would not serve (a change after the entry's
position may concern it), counted per tier (a read can find the Cache API's copy and KV's
refused), per read; each such read is loaded from D1 again. Latency is of workerd on this
machine, not of Cloudflare's network: see bench:workers for that.
`;
}
