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
import { pctLabel, quantile, round, sequences } from "./workload/workload.ts";

export type Mode = "strict" | "lease" | "follower";

export interface RttOptions {
  rtts: number[];
  replicaRtt: number;
  replicas: boolean;
  modes: Mode[];
  users: number;
  orders: number;
  requests: number;
  connections: number;
  writeRatios: number[];
  seed: number;
  out: string;
}

type Calls = { object: number; follower: number; primary: number; replica: number; kv: number };

interface RttRecord extends WorkersRun {
  /** Round trip to the Durable Object and D1's primary, ms (0: the baseline). */
  rttMs: number;
  hitP50Ms: number;
  hitP99Ms: number;
  missP50Ms: number;
  missP99Ms: number;
  writeP50Ms: number;
  writeP99Ms: number;
  requestsPerSecond: number;
  /** Calls through the wrapped bindings per request, measured run (not warming). */
  callsPerRequest: Calls;
  /**
   * One request at a time after the run (no queue behind other requests): the cost of a
   * hit, a miss and a write at this distance, median ms and calls each.
   */
  alone: Record<"hit" | "miss" | "write", { p50Ms: number; calls: Calls }>;
}

/** Requests of each kind the alone probe sends. */
const ALONE = 9;

/** Sends `paths` one after another: their median latency and mean calls per request. */
async function alone(
  client: Client,
  requests: { method: string; path: string; body?: unknown }[],
): Promise<{ p50Ms: number; calls: Calls }> {
  const before = await client.json<Calls>("/_distance/calls");
  const latencies: number[] = [];
  for (const r of requests) {
    const started = performance.now();
    const reply = await client.send(r.method, r.path, r.body);
    if (reply.status >= 300) throw new Error(`[bench] ${r.method} ${r.path}: ${reply.status}`);
    latencies.push(performance.now() - started);
  }
  const after = await client.json<Calls>("/_distance/calls");
  const each = (k: keyof Calls) => round((after[k] - before[k]) / requests.length, 2);
  return {
    p50Ms: ms(latencies, 0.5),
    calls: {
      object: each("object"),
      follower: each("follower"),
      primary: each("primary"),
      replica: each("replica"),
      kv: each("kv"),
    },
  };
}

/** Runs every location in every mode; resolves with the path written. Sets exitCode on a stale read. */
export async function runAtDistance(
  options: RttOptions,
  data: InitialData,
  template: string,
  command: string,
): Promise<void> {
  const started = Date.now();
  const seed = d1Statements(template);
  const locations = [...new Set([0, ...options.rtts])];
  const records: RttRecord[] = [];
  const staleSamples: unknown[] = [];
  for (const [writeRatio, ops] of sequences(data, options)) {
    for (const mode of options.modes) {
      for (const rtt of locations) {
        const name = `at-${rtt}`;
        const near = rtt === 0 ? 0 : options.replicaRtt;
        const w = await startEdgecacheWorkers({
          names: [name],
          mode,
          distance: {
            [name]: { object: rtt, primary: rtt, replica: near, kv: near, follower: near },
          },
          // Follower mode: the location's follower is `near` its isolate and `rtt` from the object.
          regions: { [name]: "here" },
          regionRtt: { here: rtt },
          options: { readReplicas: options.replicas },
          directSockets: true,
        });
        try {
          await seedWorkerD1(w.mf, name, seed);
          const base = (await w.url(name)).href.replace(/\/$/, "");
          const client = new Client(base, options.connections);
          try {
            const oracle = await warmed(client, ops, data, options.connections);
            const before = await client.json<Calls>("/_distance/calls");
            const o = await runSequence(client, ops, oracle, options.connections);
            const after = await client.json<Calls>("/_distance/calls");
            const readLatencies = without(o.latencies, o.writeLatencies);
            const missLatencies = without(readLatencies, o.hitLatencies);
            const per = (k: keyof Calls) =>
              round((after[k] - before[k]) / Math.max(1, o.requests), 2);
            const hitPath = ops.find((op) => op.kind === "read")!.path;
            await client.send("GET", hitPath);
            const user = data.users[0]!.id;
            const probe = {
              hit: await alone(
                client,
                Array.from({ length: ALONE }, () => ({ method: "GET", path: hitPath })),
              ),
              // Offsets no sequence reads: each a miss.
              miss: await alone(
                client,
                Array.from({ length: ALONE }, (_, i) => ({
                  method: "GET",
                  path: `/v1/orders?status=paid&limit=1&offset=${7000 + i}`,
                })),
              ),
              write: await alone(
                client,
                Array.from({ length: ALONE }, (_, i) => ({
                  method: "PATCH",
                  path: `/v1/users/${encodeURIComponent(user)}`,
                  body: { lastName: `Alone${i}` },
                })),
              ),
            };
            const record: RttRecord = {
              ...runFigures(mode, writeRatio, o),
              rttMs: rtt,
              hitP50Ms: ms(o.hitLatencies, 0.5),
              hitP99Ms: ms(o.hitLatencies, 0.99),
              missP50Ms: ms(missLatencies, 0.5),
              missP99Ms: ms(missLatencies, 0.99),
              writeP50Ms: ms(o.writeLatencies, 0.5),
              writeP99Ms: ms(o.writeLatencies, 0.99),
              requestsPerSecond: round(o.requests / (o.elapsedMs / 1000), 1),
              callsPerRequest: {
                object: per("object"),
                follower: per("follower"),
                primary: per("primary"),
                replica: per("replica"),
                kv: per("kv"),
              },
              alone: probe,
            };
            records.push(record);
            staleSamples.push(...o.staleSamples);
            console.log(
              `${pctLabel(writeRatio)} writes, ${mode}, ${rtt} ms: hit rate ${record.hitRate}, ` +
                `stale ${record.staleReads}, hit p50 ${record.hitP50Ms} ms, miss p50 ${record.missP50Ms} ms, ` +
                `write p50 ${record.writeP50Ms} ms; alone: hit ${probe.hit.p50Ms}, miss ${probe.miss.p50Ms}, write ${probe.write.p50Ms} ms` +
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
  }
  const table = tableOf(records);
  const figures = { options, records, staleSamples };
  const page = (head: RunHead) => markdown(options, command, head, table);
  finishRun(options.out, command, figures, page, table, started);
}

const ms = (xs: number[], q: number) => (xs.length === 0 ? 0 : round(quantile(xs, q), 1));

/** `all` less one occurrence of each of `some` (the same numbers, as the runner recorded them). */
function without(all: readonly number[], some: readonly number[]): number[] {
  const count = new Map<number, number>();
  for (const x of some) count.set(x, (count.get(x) ?? 0) + 1);
  return all.filter((x) => {
    const n = count.get(x) ?? 0;
    if (n === 0) return true;
    count.set(x, n - 1);
    return false;
  });
}

function tableOf(records: RttRecord[]): string {
  const rows = records.map((r) => {
    const base = records.find(
      (b) => b.rttMs === 0 && b.mode === r.mode && b.writeRatio === r.writeRatio,
    );
    const x = (a: number, b: number | undefined) => (b ? `${(a / b).toFixed(1)}x` : "");
    const c = r.callsPerRequest;
    return `| ${pctLabel(r.writeRatio)} | ${r.mode} | ${r.rttMs} | ${(r.hitRate * 100).toFixed(1)}% | ${r.staleReads} | ${r.hitP50Ms} / ${r.hitP99Ms} | ${r.missP50Ms} / ${r.missP99Ms} | ${r.writeP50Ms} / ${r.writeP99Ms} | ${x(r.hitP50Ms, base?.hitP50Ms)} | ${x(r.writeP50Ms, base?.writeP50Ms)} | ${c.object} / ${c.follower} / ${c.primary} / ${c.replica} / ${c.kv} | ${r.requestsPerSecond} |`;
  });
  const alone = records.map((r) => {
    const one = (k: "hit" | "miss" | "write") => {
      const a = r.alone[k];
      const c = a.calls;
      return `${a.p50Ms} (${c.object} / ${c.follower} / ${c.primary} / ${c.replica} / ${c.kv})`;
    };
    return `| ${r.mode} | ${r.rttMs} | ${one("hit")} | ${one("miss")} | ${one("write")} |`;
  });
  return [
    "Under load (the sequence, the given connections):",
    "",
    "| writes | mode | RTT to object and D1 primary, ms | hit rate | stale reads | hit p50 / p99 ms | miss p50 / p99 ms | write p50 / p99 ms | hit p50 vs 0 ms | write p50 vs 0 ms | calls per request: object / follower / D1 primary / D1 replica / KV | req/s |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
    `One request at a time after the run (${ALONE} of each): median ms (calls each: object / follower / D1 primary / D1 replica / KV):`,
    "",
    "| mode | RTT, ms | hit | miss | write |",
    "|---|---|---|---|---|",
    ...alone,
  ].join("\n");
}

function markdown(
  options: RttOptions,
  command: string,
  { code, date, machine }: RunHead,
  table: string,
): string {
  return `# edgecache on Workers at a distance: ${options.modes.join(", ")}, per location

Command: \`${command}\` (${code}), ${date}.
Machine: ${machine}. ${options.users} users, ${options.orders} orders, ${options.requests} requests per run,
${options.connections} connections, seed ${options.seed}; D1 read replicas ${options.replicas ? "on (loads read the nearest replica at the log's bookmark)" : "off (every query at the primary)"}.

Each run: a fresh workerd (miniflare) with one isolate of the edgecache Worker whose bindings
are wrapped by \`test/adapter/cloudflare/distance.ts\`: every call to the Durable Object (the change log)
and to D1's primary costs the location's round trip, every call to KV and to a D1 replica
${options.replicaRtt} ms (0 at the 0 ms baseline). In follower mode the isolate syncs with its
region's follower of the log, ${options.replicaRtt} ms from it, which is the location's round
trip from the log's object (its pushes and lease renewals cross it). D1 seeded, KV, Cache API and Durable Object
empty; every read of the sequence read once before it (warming, not counted). Hits and misses
are read requests by their \`Cache-Status\`; a write is the whole request, including its wait
behind the isolate's earlier writes (the data API makes one isolate's writes one after
another), so under load the write figures grow with the queue. The second table sends one
request at a time after the run: what one hit, miss and write cost at that distance. The calls per request
count what the wrapped bindings were asked during the measured run.

${table}

One isolate per run: in lease mode a write waits for no other isolate's lease here (there is
none); with isolates in several places a write would also wait for the farthest lease holder
to sync, or for its lease to run out. Latency is the simulated distance plus workerd on this
machine, not Cloudflare's network.
`;
}
