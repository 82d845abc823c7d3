/**
 * Change capture's benchmark: the workload benchmark's sequences against the data API over
 * SQLite and over PostgreSQL, with capture installed, once with every write through the
 * data API and once with one write in two made straight in the database (a connection of
 * the driver's own, as psql or another service would). It reports the hit rate of each
 * run against the all-through-the-API run of the same source and ratio, the stale reads
 * beyond the capture lag (the oracle takes a write made around edgecache as acknowledged
 * once capture has applied it; target 0), and the capture lag from commit to applied
 * (target p99 <= 20 ms on loopback).
 *
 *   npm run bench:capture              # 10,000 users, 50,000 orders, 20,000 requests per run
 *   npm run bench:capture -- --quick   # 2,000 requests per run
 *
 * Needs PostgreSQL (EDGECACHE_BENCH_PG, default postgres://postgres@127.0.0.1:5432/postgres):
 * each run gets a database of its own, dropped after it. Flags: the workload benchmark's,
 * and --sources sqlite,postgres.
 */
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import postgres from "postgres";
import { postgresSource } from "../src/sources/postgres.ts";
import type { Source } from "../src/sources/source.ts";
import { sqliteSource } from "../src/sources/sqlite.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { commandLine, fail, readFlags } from "./lib/settings.ts";
import { readWorkloadFlags, workloadFlags } from "./workload/flags.ts";
import type { WriteOp } from "./workload/generate.ts";
import type { AroundWrites } from "./workload/run.ts";
import {
  onFreshDatabase,
  pctLabel,
  prepareDatabase,
  quantile,
  round,
  runSetup,
  type SetupRun,
  SOURCES,
  type SourceName,
  sequences,
  toRecord,
} from "./workload/workload.ts";

/** One write in this many goes around the data API in the "around" runs. */
const AROUND_EVERY = 2;
/** Writes of the lag probe after each "around" run. */
const PROBE_WRITES = 200;

const { options, out, sources } = readFlags(() => {
  const { values } = parseArgs({
    options: {
      ...workloadFlags({ ratios: "0.05,0.1", out: "bench/results/capture" }),
      sources: { type: "string", default: SOURCES.join(",") },
    },
  });
  const sources = values.sources.split(",").map((s) => {
    if (!SOURCES.includes(s as SourceName))
      fail(`--sources: expected some of ${SOURCES}, got ${s}`);
    return s as SourceName;
  });
  return { options: readWorkloadFlags(values), out: values.out, sources };
});

interface CaptureRecord {
  source: SourceName;
  writeRatio: number;
  mode: "api" | "around";
  requests: number;
  writes: number;
  aroundWrites: number;
  hitRate: number;
  /** This run's hit rate over the all-through-the-API run's (same source and ratio). */
  hitRateVsApi: number | null;
  staleReads: number;
  captureLagP50Ms: number | null;
  captureLagP99Ms: number | null;
  /** The same measured by the node: from the trigger's record to applied. */
  nodeLagP50Ms: number | null;
  nodeLagP99Ms: number | null;
  /** One write at a time after the run (no load): commit to applied. */
  probeLagP50Ms: number | null;
  probeLagP99Ms: number | null;
  p50Ms: number;
  rps: number;
  errors: number;
}

const command = commandLine("bench:capture");
const started = Date.now();
const { template, data } = prepareDatabase(options, (line) => console.log(line));
const records: CaptureRecord[] = [];
for (const [writeRatio, ops] of sequences(data, options)) {
  for (const source of sources) {
    for (const mode of ["api", "around"] as const) {
      let probe: number[] = [];
      const run = await onDatabase(source, `capture-${source}-${mode}`, async (db, around) => {
        const setup = {
          strategy: "edgecache" as const,
          nodes: 1,
          capture: true,
          around: mode === "around" ? around : undefined,
        };
        const result = await runSetup(db, setup, ops, data, options.connections);
        // The node still runs: now the lag of one write at a time, nothing else going on.
        if (mode === "around") probe = await probeLag(around);
        return result;
      });
      const record = toCaptureRecord(source, writeRatio, mode, run, probe);
      records.push(record);
      console.log(
        `${pctLabel(writeRatio)} writes, ${source}, ${mode}: hit rate ${(record.hitRate * 100).toFixed(1)}%` +
          ` (${record.hitRateVsApi ?? "-"} of all through the API), stale ${record.staleReads},` +
          ` capture lag p50 ${record.captureLagP50Ms ?? "-"} ms p99 ${record.captureLagP99Ms ?? "-"} ms` +
          ` (node: ${record.nodeLagP50Ms ?? "-"} / ${record.nodeLagP99Ms ?? "-"} ms;` +
          ` one at a time: ${record.probeLagP50Ms ?? "-"} / ${record.probeLagP99Ms ?? "-"} ms)`,
      );
    }
  }
}
const seconds = Math.round((Date.now() - started) / 1000);
const path = writeResults(out, records, markdown(records));
console.log(`\n${table(records)}\n\nwrote ${path}.json and .md in ${seconds} s`);
if (records.some((r) => r.staleReads > 0)) {
  console.error("[bench] stale reads beyond the capture lag; see above");
  process.exitCode = 1;
}

/**
 * Runs `run` over a fresh database of the source with capture installed, and with the
 * driver's own connection for writes around the data API.
 */
function onDatabase(
  source: SourceName,
  name: string,
  run: (db: string, around: AroundWrites) => Promise<SetupRun>,
): Promise<SetupRun> {
  return onFreshDatabase(source, template, name, options, async (db) => {
    const writer =
      source === "sqlite" ? sqliteSource({ path: db }) : await postgresSource({ url: db, max: 4 });
    await writer.installCapture();
    const sqlite = source === "sqlite" ? new Database(db, { readonly: true }) : undefined;
    const pg = source === "postgres" ? postgres(db, { max: 2, onnotice: () => {} }) : undefined;
    const table = sqlite ? "_edgecache_changes" : "edgecache.changes";
    const query = async (sql: string, params: unknown[]) =>
      sqlite
        ? (sqlite.prepare(sql.replace("$1", "?")).all(...params) as Record<string, unknown>[])
        : await pg!.unsafe(sql, params as never[]);
    const lastSeq = async () =>
      Number((await query(`SELECT coalesce(max(seq), 0) AS n FROM ${table}`, []))[0]?.n);
    const waiting = async (seq: number) =>
      (await query(`SELECT 1 FROM ${table} WHERE seq <= $1 LIMIT 1`, [seq])).length > 0;
    try {
      return await run(db, aroundWith(writer, lastSeq, waiting));
    } finally {
      sqlite?.close();
      await pg?.end();
      await writer.close();
    }
  });
}

/** Writes through the driver's own source: unmarked, so capture takes them as outside writes. */
function aroundWith(
  writer: Source,
  lastSeq: () => Promise<number>,
  waiting: (seq: number) => Promise<boolean>,
): AroundWrites {
  return {
    every: AROUND_EVERY,
    async write(op: WriteOp, body: unknown) {
      const values = body as Record<string, unknown>;
      let row: Record<string, unknown> | undefined;
      if (op.method === "POST") row = await writer.insert(op.table, values);
      else if (op.method === "PATCH") row = (await writer.update(op.table, op.id, values))?.row;
      else await writer.delete(op.table, op.id);
      const seq = await lastSeq();
      const applied = (async () => {
        while (await waiting(seq)) await new Promise((r) => setTimeout(r, 0.5));
      })();
      return { row, applied };
    },
  };
}

/** Writes made around the node one at a time (PROBE_WRITES), each timed until applied. */
async function probeLag(around: AroundWrites): Promise<number[]> {
  const lags: number[] = [];
  for (let i = 0; i < PROBE_WRITES; i++) {
    const user = data.users[(i * 7919) % data.users.length]!;
    const op: WriteOp = {
      kind: "write",
      method: "PATCH",
      path: `/v1/users/${encodeURIComponent(user.id)}`,
      table: "users",
      id: user.id,
      locks: [],
    };
    const { applied } = await around.write(op, { lastName: `Probe${i}` });
    const committed = performance.now();
    await applied;
    lags.push(performance.now() - committed);
    await new Promise((r) => setTimeout(r, 5));
  }
  return lags;
}

function toCaptureRecord(
  source: SourceName,
  writeRatio: number,
  mode: "api" | "around",
  run: SetupRun,
  probe: number[],
): CaptureRecord {
  const r = toRecord("edgecache", writeRatio, run);
  const api = records.find(
    (x) => x.source === source && x.writeRatio === writeRatio && x.mode === "api",
  );
  const lags = run.outcome.captureLags;
  return {
    source,
    writeRatio,
    mode,
    requests: r.requests,
    writes: r.writes,
    aroundWrites: run.outcome.aroundWrites,
    hitRate: r.hitRate,
    hitRateVsApi: api ? round(r.hitRate / Math.max(1e-9, api.hitRate), 3) : null,
    staleReads: r.staleReads,
    captureLagP50Ms: lags.length ? round(quantile(lags, 0.5), 2) : null,
    captureLagP99Ms: lags.length ? round(quantile(lags, 0.99), 2) : null,
    nodeLagP50Ms: lags.length ? roundOrNull(run.after[0]?.capture?.lagP50) : null,
    nodeLagP99Ms: lags.length ? roundOrNull(run.after[0]?.capture?.lagP99) : null,
    probeLagP50Ms: probe.length ? round(quantile(probe, 0.5), 2) : null,
    probeLagP99Ms: probe.length ? round(quantile(probe, 0.99), 2) : null,
    p50Ms: r.p50Ms,
    rps: r.rps,
    errors: r.errors,
  };
}

function roundOrNull(ms: number | undefined): number | null {
  return ms === undefined ? null : round(ms, 2);
}

function table(rows: CaptureRecord[]): string {
  const head =
    "| source | writes | mode | hit rate | vs all through the API | stale beyond lag | capture lag p50 / p99, driver (ms) | capture lag p50 / p99, node (ms) | capture lag p50 / p99, one write at a time (ms) | p50 (ms) | req/s |";
  const lines = rows.map(
    (r) =>
      `| ${r.source} | ${pctLabel(r.writeRatio)} | ${r.mode === "api" ? "all through the API" : `1 in ${AROUND_EVERY} around it (${r.aroundWrites})`} | ${(r.hitRate * 100).toFixed(1)}% | ${r.hitRateVsApi ?? "baseline"} | ${r.staleReads} | ${r.captureLagP50Ms ?? "-"} / ${r.captureLagP99Ms ?? "-"} | ${r.nodeLagP50Ms ?? "-"} / ${r.nodeLagP99Ms ?? "-"} | ${r.probeLagP50Ms ?? "-"} / ${r.probeLagP99Ms ?? "-"} | ${r.p50Ms} | ${Math.round(r.rps)} |`,
  );
  return [head, `|${" --- |".repeat(11)}`, ...lines].join("\n");
}

function markdown(rows: CaptureRecord[]): string {
  return `# Change capture: writes around edgecache, on SQLite and PostgreSQL

${new Date().toISOString()}, ${describeCode(gitState())}. Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}. ${seconds} s in all.

\`${command}\`

${options.users.toLocaleString("en-US")} users and ${options.orders.toLocaleString("en-US")} orders; ${options.requests.toLocaleString("en-US")} requests per run from ${options.connections} concurrent clients, the workload benchmark's sequence (its oracle judges every read). Capture is installed in every run; in the "around" runs one write in ${AROUND_EVERY} is made straight in the database on a connection of the driver's own, and the oracle takes it as acknowledged once capture has applied it, so a stale read here is one beyond the capture lag. The capture lag is measured twice: by the driver, from the commit returning until its change left the change table (polled every millisecond, so an upper bound that includes the driver's own scheduling), and by the node, from the trigger's record of the change (just before the commit) until its record was applied; both under the run's full load (every client sends its next request as soon as the last is answered, so the node's event loop is always busy). After each "around" run, ${PROBE_WRITES} writes are made around the node one at a time (5 ms apart, nothing else running) and timed from commit to applied: the loopback lag.

${table(rows)}
`;
}
