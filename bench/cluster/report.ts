/** The cluster benchmark's Markdown tables and target lines. */
import { median } from "../lib/rounds.ts";
import { type ClusterRecord, label, type ProbeRecord } from "./cluster.ts";

/**
 * Issue 29's hit rate (within 1.5 points of one node) and ack-to-all-new p99; issue 44's
 * CPU (item 3, which replaced issue 29's 1.3): three nodes' CPU per request at most 1.5
 * times one node's.
 */
export const TARGETS = { hitRatePoints: 1.5, ackToAllNewP99Ms: 5, cpuRatio: 1.5 };

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const ms = (x: number | null) => (x === null ? "–" : x.toFixed(2));

/** The run with one node and the in-process log at the same ratio: the baseline. */
function baseline(records: ClusterRecord[], r: ClusterRecord): ClusterRecord | undefined {
  return sameRun(records, r, "1-local");
}

/** The record of `setup` at `r`'s ratio, in `r`'s run (setups are compared within a run). */
function sameRun(
  records: ClusterRecord[],
  r: ClusterRecord,
  setup: ClusterRecord["setup"],
): ClusterRecord | undefined {
  return records.find((b) => b.setup === setup && b.writeRatio === r.writeRatio && b.run === r.run);
}

/** Per ratio and setup: what the cache did (hits, staleness, load on the database). */
export function cacheTable(records: ClusterRecord[]): string {
  return table(
    [
      "write ratio",
      "setup",
      "hit rate",
      "from Redis tier",
      "stale reads",
      "errors",
      "DB queries / request",
      "reads per node",
      "log resets / refused / patched up / awaited",
    ],
    records.map((r) => {
      const hits = Object.values(r.tierHits).reduce((a, b) => a + b, 0);
      const fromRedis =
        r.changeLog === "redis" ? pct((r.tierHits.redis ?? 0) / Math.max(1, hits)) : "–";
      return [
        pct(r.writeRatio),
        label(r.setup, r.nodes, r.run),
        pct(r.hitRate),
        fromRedis,
        r.setup === "n-alone" ? "–" : String(r.staleReads),
        String(r.errors),
        r.dbQueriesPerRequest.toFixed(3),
        r.readsByNode.join(" / "),
        `${r.resets} / ${r.refused} / ${r.replayed ?? 0} / ${r.awaited ?? 0}`,
      ];
    }),
  );
}

/** Per ratio and setup: latency, throughput against one node, and where the CPU went. */
export function speedTable(records: ClusterRecord[]): string {
  return table(
    [
      "write ratio",
      "setup",
      "p50 ms",
      "p95 ms",
      "write p50 / p99 ms",
      "req/s",
      "vs 1 node",
      "node CPU µs / request",
      "cores busy (nodes + driver + Redis)",
    ],
    records.map((r) => {
      const base = baseline(records, r);
      const redis = r.cpu.redis === undefined ? "" : ` + ${r.cpu.redis.toFixed(1)}`;
      return [
        pct(r.writeRatio),
        label(r.setup, r.nodes, r.run),
        ms(r.p50Ms),
        ms(r.p95Ms),
        `${ms(r.writeP50Ms)} / ${ms(r.writeP99Ms)}`,
        Math.round(r.rps).toLocaleString("en-US"),
        base ? `${(r.rps / base.rps).toFixed(2)}×` : "–",
        String(Math.round((r.cpu.nodes / Math.max(1, r.requests)) * 1e6)),
        `${r.cpu.coresBusy.toFixed(2)} (${r.cpu.nodes.toFixed(1)} + ${r.cpu.driver.toFixed(1)}${redis} s)`,
      ];
    }),
  );
}

/**
 * Per ratio and setup on Redis: the commands the nodes sent to Redis per request of each
 * kind (and round trips waited), counted by the nodes themselves: numbers that do not
 * depend on this machine's speed. Following and background work serve no request of their
 * own: they are divided by all requests.
 */
export function redisTable(records: ClusterRecord[]): string {
  const per = (n: number | undefined, of: number) => (of > 0 ? ((n ?? 0) / of).toFixed(3) : "–");
  return table(
    [
      "write ratio",
      "setup",
      "hits / misses / writes",
      "commands / hit",
      "/ miss",
      "/ write",
      "following / request",
      "background / request",
      "all / request",
      "round trips / hit, miss, write",
    ],
    records.flatMap((r) => {
      if (!r.redis) return [];
      const { commands: c, trips: t, requests: q } = r.redis;
      const all = q.hit + q.miss + q.write;
      const total = Object.values(c).reduce((a, b) => a + b, 0);
      return [
        [
          pct(r.writeRatio),
          label(r.setup, r.nodes, r.run),
          `${q.hit} / ${q.miss} / ${q.write}`,
          per(c.hit, q.hit),
          per(c.miss, q.miss),
          per(c.write, q.write),
          per(c.following, all),
          per(c.background, all),
          per(total, all),
          `${per(t.hit, q.hit)} / ${per(t.miss, q.miss)} / ${per(t.write, q.write)}`,
        ],
      ];
    }),
  );
}

export function probeTable(probes: ProbeRecord[]): string {
  return table(
    [
      "setup",
      "writes",
      "write p50 ms",
      "write p99 ms",
      "ack → all nodes new, p50 ms",
      "p99 ms",
      "max ms",
      "stale reads after ack",
      "row cached before the write",
      "first read after ack a hit",
      "errors",
    ],
    probes.map((p) => [
      label(p.setup, p.nodes),
      String(p.writes),
      ms(p.writeP50Ms),
      ms(p.writeP99Ms),
      ms(p.ackToAllNewP50Ms),
      ms(p.ackToAllNewP99Ms),
      ms(p.ackToAllNewMaxMs),
      String(p.staleReads),
      pct(p.primedHitRate),
      pct(p.firstPollHitRate),
      String(p.errors),
    ]),
  );
}

function table(head: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}

/** Each target, met or missed, from the figures. */
export function targetLines(records: ClusterRecord[], probes: ProbeRecord[]): string[] {
  const met = (ok: boolean) => (ok ? "met" : "MISSED");
  const stale =
    records.reduce((n, r) => n + (r.setup === "n-alone" ? 0 : r.staleReads), 0) +
    probes.reduce((n, p) => n + p.staleReads, 0);
  const lines = [
    `- **stale reads** (target 0): ${stale} in all runs and probes (${met(stale === 0)}).`,
  ];
  const cluster = records.filter((r) => r.setup === "n-redis");
  for (const setup of ["n-redis", "n-redis-lists"] as const) {
    const gaps = records
      .filter((r) => r.setup === setup)
      .map((r) => {
        const base = baseline(records, r);
        const points = base ? (base.hitRate - r.hitRate) * 100 : Number.NaN;
        const queries = base
          ? `, ${r.dbQueriesPerRequest.toFixed(3)} DB queries per request against ${base.dbQueriesPerRequest.toFixed(3)}`
          : "";
        return `${pct(r.writeRatio)}: ${points.toFixed(1)} points (${met(points <= TARGETS.hitRatePoints)})${queries}`;
      });
    if (gaps.length > 0) {
      const what = setup === "n-redis" ? "" : " with `reloadLists`";
      lines.push(
        `- **hit rate of the cluster${what}** (target: within ${TARGETS.hitRatePoints} points below one node with the in-process log): ${gaps.join("; ")}.`,
      );
    }
  }
  const probe = probes.find((p) => p.setup === "n-redis");
  if (probe) {
    lines.push(
      `- **ack → all nodes new, p99** (target ≤ ${TARGETS.ackToAllNewP99Ms} ms on loopback): ${ms(probe.ackToAllNewP99Ms)} ms (${met(probe.ackToAllNewP99Ms <= TARGETS.ackToAllNewP99Ms)}); p50 ${ms(probe.ackToAllNewP50Ms)} ms.`,
    );
  }
  const cpuPerRequest = (r: ClusterRecord) => r.cpu.nodes / Math.max(1, r.requests);
  const cpu = cluster.map((r) => {
    const base = baseline(records, r);
    const redis = sameRun(records, r, "1-redis");
    const of = (b: ClusterRecord | undefined) => {
      if (!b) return "–";
      const x = cpuPerRequest(r) / cpuPerRequest(b);
      return `${x.toFixed(2)}× (${met(x <= TARGETS.cpuRatio)})`;
    };
    const alone = sameRun(records, r, "n-alone");
    const floor =
      alone && base
        ? `; the floor, ${r.nodes} nodes alone, ${(cpuPerRequest(alone) / cpuPerRequest(base)).toFixed(2)}× one node, so coordination adds ${((cpuPerRequest(r) - cpuPerRequest(alone)) / cpuPerRequest(base)).toFixed(2)}× one node's CPU`
        : "";
    return `${pct(r.writeRatio)}${r.run === undefined ? "" : `, run ${r.run}`}: ${of(base)} one node with the in-process log, ${of(redis)} one node on Redis${floor}`;
  });
  if (cpu.length > 0) {
    lines.push(
      `- **node CPU per request of the cluster, all nodes together** (target ≤ ${TARGETS.cpuRatio}× one node's): ${cpu.join("; ")}.`,
    );
  }
  const medians = medianRatios(cluster, (r) => sameRun(records, r, "1-redis"), cpuPerRequest);
  if (medians.length > 0) {
    lines.push(
      `- **the same against one node on Redis, median over the runs** (target ≤ ${TARGETS.cpuRatio}×): ${medians
        .map(
          ({ writeRatio, median, each }) =>
            `${pct(writeRatio)}: ${median.toFixed(2)}× (${met(median <= TARGETS.cpuRatio)}; the runs ${each.map((x) => x.toFixed(2)).join(", ")})`,
        )
        .join("; ")}.`,
    );
  }
  const ratios = cluster.map((r) => {
    const base = baseline(records, r);
    const redis = sameRun(records, r, "1-redis");
    const of = (b: ClusterRecord | undefined) => (b ? `${(r.rps / b.rps).toFixed(2)}×` : "–");
    return `${pct(r.writeRatio)}${r.run === undefined ? "" : `, run ${r.run}`}: ${of(base)} one node with the in-process log, ${of(redis)} one node on Redis`;
  });
  if (ratios.length > 0) {
    lines.push(
      `- **throughput of the cluster** (no target; node CPU per request and cores busy above say what limits it): ${ratios.join("; ")}.`,
    );
  }
  return lines;
}

/**
 * Per ratio with more than one run: `of(r) / of(base(r))` in each run, and their median.
 */
function medianRatios(
  records: ClusterRecord[],
  base: (r: ClusterRecord) => ClusterRecord | undefined,
  of: (r: ClusterRecord) => number,
): { writeRatio: number; median: number; each: number[] }[] {
  const byRatio = new Map<number, number[]>();
  for (const r of records) {
    const b = base(r);
    if (r.run === undefined || !b) continue;
    const each = byRatio.get(r.writeRatio) ?? [];
    each.push(of(r) / of(b));
    byRatio.set(r.writeRatio, each);
  }
  return [...byRatio]
    .filter(([, each]) => each.length > 1)
    .map(([writeRatio, each]) => ({ writeRatio, median: median(each), each }));
}
