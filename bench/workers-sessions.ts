/**
 * Session mode on Workers at a distance (docs/guides/regions.md): two isolates of the
 * edgecache Worker in miniflare, a writer 5 ms from the log's object and D1's primary and a
 * reader `--rtt` ms from them (a D1 replica and KV 5 ms from each), with read replication on
 * (the replica lags until a session's bookmark makes it catch up, test/adapter/cloudflare/distance.ts).
 * For strict mode and session mode, one request at a time:
 *
 * - the reader's hit, by a client without a session;
 * - a write through the writer, then its client reading it through the reader at once,
 *   with its session;
 * - another write, and how long after its acknowledgement a client without a session first
 *   sees it through the reader (polled every 10 ms): the staleness others get.
 *
 *   npm run bench:workers-sessions                       # --rtt 80,200, 20 writes each
 *   npm run bench:workers-sessions -- --rtt 80 --writes 5 --lease-ms 1000
 *
 * Writes `<out>.json` and `<out>.md` (default bench/results/workers-rtt-sessions). Exits 1
 * if a client read anything older than its own session.
 */
import { parseArgs } from "node:util";
import type { Row } from "../src/core/data/query.ts";
import { startEdgecacheWorkers } from "../test/adapter/cloudflare/edgecache-workers.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { commandLine, fail, positiveInt, readFlags } from "./lib/settings.ts";
import { machineLine } from "./lib/worker-runs.ts";
import { quantile, round } from "./workload/workload.ts";

const options = readFlags(() => {
  const { values } = parseArgs({
    options: {
      rtt: { type: "string", default: "80,200" },
      writes: { type: "string", default: "20" },
      "lease-ms": { type: "string", default: "2000" },
      out: { type: "string", default: "bench/results/workers-rtt-sessions" },
    },
  });
  const rtts = values.rtt.split(",").map((v) => {
    const n = Number(v);
    if (v.trim() === "" || !(n >= 0)) fail(`--rtt: expected ms >= 0, got ${v}`);
    return n;
  });
  return {
    rtts,
    writes: positiveInt("writes", values.writes),
    leaseMs: positiveInt("lease-ms", values["lease-ms"]),
    out: values.out,
  };
});

const MODES = ["strict", "session"] as const;
const SESSION = "x-edgecache-session";
const NEAR = 5;
const POLL_MS = 10;

interface SessionRecord {
  mode: (typeof MODES)[number];
  rttMs: number;
  leaseMs: number;
  hitP50Ms: number;
  writeP50Ms: number;
  ownReadP50Ms: number;
  /** Ms from a write's acknowledgement until a client without a session saw it. */
  othersSeeP50Ms: number;
  othersSeeP99Ms: number;
  othersSeeMaxMs: number;
  /** Reads of the writer's client, with its session, that missed its write (target 0). */
  ownStale: number;
}

const ms = (xs: number[], q: number) => round(quantile(xs, q), 1);
const timed = async <T>(call: () => Promise<T>): Promise<[T, number]> => {
  const started = performance.now();
  const value = await call();
  return [value, performance.now() - started];
};

const command = commandLine("bench:workers-sessions");
const started = Date.now();
const records: SessionRecord[] = [];
for (const rttMs of options.rtts) {
  for (const mode of MODES) {
    const w = await startEdgecacheWorkers({
      names: ["writer", "reader"],
      mode,
      leaseMs: options.leaseMs,
      distance: {
        writer: { object: NEAR, primary: NEAR, replica: NEAR, kv: NEAR },
        reader: { object: rttMs, primary: rttMs, replica: NEAR, kv: NEAR },
      },
      options: { readReplicas: true, warm: { hottest: 0 } },
      replica: {},
    });
    try {
      const list = (await (await w.fetch("reader", "/v1/users?limit=1&sort=id")).json()) as {
        data: Row[];
      };
      const path = `/v1/users/${list.data[0]!.id}`;
      const read = async (headers: Record<string, string> = {}) => {
        const res = await w.fetch("reader", path, { headers });
        return (await res.json()) as Row;
      };
      await read();
      const hits: number[] = [];
      const writes: number[] = [];
      const ownReads: number[] = [];
      const othersSee: number[] = [];
      let ownStale = 0;
      const write = async (lastName: string) => {
        const [res, writeMs] = await timed(() =>
          w.fetch("writer", path, {
            method: "PATCH",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ lastName }),
          }),
        );
        if (res.status !== 200) throw new Error(`[bench] PATCH ${path}: ${res.status}`);
        writes.push(writeMs);
        return res.headers.get(SESSION);
      };
      for (let i = 0; i < options.writes; i++) {
        hits.push((await timed(() => read()))[1]);
        // The writer's client reads its write through the reader, at once, with its session.
        const mine = `Own${mode}${rttMs}x${i}`;
        const session = await write(mine);
        const [own, ownMs] = await timed(() => read(session ? { [SESSION]: session } : {}));
        ownReads.push(ownMs);
        if (own.lastName !== mine) ownStale++;
        // Another write, and a client without a session polling the reader until it shows it.
        const theirs = `Theirs${mode}${rttMs}x${i}`;
        await write(theirs);
        const acked = performance.now();
        while ((await read()).lastName !== theirs) {
          await new Promise((r) => setTimeout(r, POLL_MS));
        }
        othersSee.push(performance.now() - acked);
      }
      const record: SessionRecord = {
        mode,
        rttMs,
        leaseMs: options.leaseMs,
        hitP50Ms: ms(hits, 0.5),
        writeP50Ms: ms(writes, 0.5),
        ownReadP50Ms: ms(ownReads, 0.5),
        othersSeeP50Ms: ms(othersSee, 0.5),
        othersSeeP99Ms: ms(othersSee, 0.99),
        othersSeeMaxMs: round(Math.max(...othersSee), 1),
        ownStale,
      };
      records.push(record);
      console.log(JSON.stringify(record));
    } finally {
      await w.close();
    }
  }
}

const git = gitState();
const machine = machineLine();
const date = new Date().toISOString();
const rows = records.map(
  (r) =>
    `| ${r.mode} | ${r.rttMs} | ${r.hitP50Ms} | ${r.writeP50Ms} | ${r.ownReadP50Ms} | ${r.othersSeeP50Ms} / ${r.othersSeeP99Ms} / ${r.othersSeeMaxMs} | ${r.ownStale} |`,
);
const table = [
  "| mode | reader's RTT to the object and D1's primary, ms | reader hit p50, ms | write p50, ms | own read with session, p50 ms | others see it after, p50 / p99 / max ms | own reads that missed the write |",
  "| --- | --- | --- | --- | --- | --- | --- |",
  ...rows,
].join("\n");
const markdown = `# Session mode on Workers at a distance

${date}, ${describeCode(git)}. ${machine}.

Two isolates in miniflare with the distance wrapper (test/adapter/cloudflare/distance.ts): a writer ${NEAR} ms from the log's object and D1's primary, a reader at the round trip below from both, KV and a D1 replica ${NEAR} ms from each; read replication on, the replica behind until a session's bookmark makes it catch up. \`leaseMs\` ${options.leaseMs}. Per mode and distance, ${options.writes} rounds of: a hit through the reader by a client without a session; a write through the writer, then its client reading it through the reader at once with the session the write returned; another write, then a client without a session polling the reader (every ${POLL_MS} ms) until it shows it. One request at a time; medians.

${table}

- **others see it after**: from the write's acknowledgement to the first read of a client without a session that showed it. Strict: the first read after the ack, always. Session: the reader syncs once its last sync is \`leaseMs\` / 2 old (a request then waits for it), so within \`leaseMs\` / 2 plus a round trip while requests come (polled every ${POLL_MS} ms here).
- **own read with session**: the reader is behind the client's session, so it syncs first (one round trip to the object), then answers from memory (the record patched its copy) or D1.

Command:

\`\`\`sh
${command}
\`\`\`
`;
const path = writeResults(options.out, { command, date, git, machine, options, records }, markdown);
console.log(
  `\n${table}\n\nwrote ${path}.json and .md in ${Math.round((Date.now() - started) / 1000)} s`,
);
if (records.some((r) => r.ownStale > 0)) {
  console.error("[bench] a client read something older than its own session");
  process.exitCode = 1;
}
