/** The regions benchmark's Markdown tables. */
import type { NodeCounters, PartitionRecord, RegionRecord } from "./regions.ts";

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const ms = (x: number | null) => (x === null ? "–" : x < 10 ? x.toFixed(2) : x.toFixed(0));
const times = (x: number, base: number | null) =>
  base === null || base === 0 ? "–" : `${(x / base).toFixed(1)}×`;
/** A latency in round trips of the region's link: "–" at 0 ms. */
const trips = (x: number | null, rtt: number) =>
  x === null || rtt === 0 ? "–" : (x / rtt).toFixed(1);

function table(head: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}

/** The setup's name, and with --against whose nodes ran it, in which round. */
const setupOf = (r: RegionRecord) => (r.code ? `${r.setup} (${r.code}, ${r.round})` : r.setup);

/** The baseline's record of the same region and ratio. */
function baseline(records: RegionRecord[], r: RegionRecord): RegionRecord | undefined {
  return records.find(
    (b) => b.setup === "baseline" && b.region === r.region && b.writeRatio === r.writeRatio,
  );
}

/** Per ratio and region, at distance and in the baseline: latency, hits, staleness, speed. */
export function regionsTable(records: RegionRecord[]): string {
  return table(
    [
      "write ratio",
      "setup",
      "region (RTT)",
      "read p50 / p99 ms",
      "write p50 / p99 ms",
      "write p50 / p99 in RTTs",
      "hit rate",
      "stale reads",
      "errors (writes refused)",
      "req/s",
    ],
    records.map((r) => [
      pct(r.writeRatio),
      setupOf(r),
      `${r.region} (${r.rttMs} ms)`,
      `${ms(r.readP50Ms)} / ${ms(r.readP99Ms)}`,
      `${ms(r.writeP50Ms)} / ${ms(r.writeP99Ms)}`,
      `${trips(r.writeP50Ms, r.rttMs)} / ${trips(r.writeP99Ms, r.rttMs)}`,
      pct(r.hitRate),
      String(r.staleReads),
      `${r.errors} (${r.refusedWrites})`,
      Math.round(r.rps).toLocaleString("en-US"),
    ]),
  );
}

/** Each region at distance against itself with every relay at 0 ms, same run. */
export function ratioTable(records: RegionRecord[]): string {
  const rows: string[][] = [];
  for (const r of records.filter((x) => x.setup === "regions")) {
    const b = baseline(records, r);
    if (!b) continue;
    rows.push([
      pct(r.writeRatio),
      `${r.region} (${r.rttMs} ms)${r.code ? `, ${r.code} ${r.round}` : ""}`,
      `${times(r.readP50Ms, b.readP50Ms)} / ${times(r.readP99Ms, b.readP99Ms)}`,
      `${times(r.writeP50Ms ?? 0, b.writeP50Ms)} / ${times(r.writeP99Ms ?? 0, b.writeP99Ms)}`,
      `${((r.hitRate - b.hitRate) * 100).toFixed(1)} points`,
      `${(r.rps / b.rps).toFixed(2)}×`,
    ]);
  }
  return table(
    [
      "write ratio",
      "region (RTT)",
      "read p50 / p99 vs 0 ms",
      "write p50 / p99 vs 0 ms",
      "hit rate vs 0 ms",
      "req/s vs 0 ms",
    ],
    rows,
  );
}

/** What each node did, by its own counters. */
export function nodeTable(records: RegionRecord[]): string {
  return table(
    [
      "write ratio",
      "setup",
      "region (RTT)",
      "hits from memory / Redis tier",
      "bypasses (no lease)",
      "refused / patched up / awaited",
      "log resets",
      "Redis round trips / commands per write",
    ],
    records.map((r) => [
      pct(r.writeRatio),
      setupOf(r),
      `${r.region} (${r.rttMs} ms)`,
      `${r.node.memoryHits} / ${r.node.redisHits}`,
      String(r.node.bypasses),
      `${r.node.refused} / ${r.node.replayed} / ${r.node.awaited}`,
      String(r.node.resets),
      perWrite(r.node.writes),
    ]),
  );
}

/** Per region and phase of the partition run: its clients' requests, or the probe reads. */
export function partitionTable(p: PartitionRecord, of: "clients" | "probes"): string {
  const figures = of === "clients" ? p.phases : p.probes;
  return table(
    [
      "region (RTT)",
      "phase",
      "requests",
      "hits / reads",
      "reads answered",
      "503 / other 5xx / no answer",
      "stale reads",
      "writes acked / sent",
      "read p50 / p99 ms",
      "write p50 / p99 ms",
      "answers / s",
    ],
    figures.map((f) => [
      `${f.region} (${f.rttMs} ms)${f.region === p.region ? ", cut" : ""}`,
      `${f.phase} (${f.seconds} s)`,
      String(f.requests),
      `${f.hits} / ${f.reads}`,
      String(f.readsAnswered),
      `${f.status503} / ${f.status5xx} / ${f.noAnswer}`,
      String(f.staleReads),
      `${f.writesAcked} / ${f.writes}`,
      `${ms(f.readP50Ms)} / ${ms(f.readP99Ms)}`,
      `${ms(f.writeP50Ms)} / ${ms(f.writeP99Ms)}`,
      String(f.answersPerSecond),
    ]),
  );
}

/** The lines under the partition table: hits in the cut, rejoining, stale reads. */
export function partitionLines(p: PartitionRecord): string[] {
  const cutRegion = p.probes.find((f) => f.region === p.region && f.phase === "cut");
  const others = p.phases.filter((f) => f.region !== p.region);
  const during = (phase: string) =>
    others
      .filter((f) => f.phase === phase)
      .map(
        (f) =>
          `region ${f.region}: ${f.answersPerSecond} answers/s, write p50 ${ms(f.writeP50Ms)} ms`,
      )
      .join("; ");
  return [
    `- **stale reads** in the partition run (target 0): ${p.staleReads}.`,
    `- **the cut region** (${p.region}, ${p.rtts[p.region - 1]} ms), probe reads sent during the cut: ${cutRegion?.reads ?? 0}, of which ${cutRegion?.readsAnswered ?? 0} answered 200 or 404 (${cutRegion?.hits ?? 0} hits), ${cutRegion?.status503 ?? 0} answered 503, ${cutRegion?.status5xx ?? 0} another 5xx, ${cutRegion?.noAnswer ?? 0} unanswered; read p50 / p99 ${ms(cutRegion?.readP50Ms ?? null)} / ${ms(cutRegion?.readP99Ms ?? null)} ms. Its last hit (clients or probes) sent during the cut: ${p.lastHitInCutMs === null ? "none" : `${p.lastHitInCutMs} ms after the cut began`}; its first after the heal: ${p.firstHitAfterHealMs === null ? "none" : `${p.firstHitAfterHealMs} ms after it`}.`,
    `- **the other regions** before the cut: ${during("before")}. During it: ${during("cut")}. After it: ${during("after")}.`,
  ];
}

/**
 * Issue 27's targets these figures speak to: no stale read anywhere; at a 40 ms round trip,
 * write p50 within 3 round trips through the far node, within 2 through a near one, and
 * read p99 on the far node within 60 ms.
 */
export function targetLines(records: RegionRecord[], partitions: PartitionRecord[]): string[] {
  const met = (ok: boolean) => (ok ? "met" : "MISSED");
  const stale =
    records.reduce((n, r) => n + r.staleReads, 0) +
    partitions.reduce((n, p) => n + p.staleReads, 0);
  const lines = [`- **stale reads** (target 0): ${stale} in all runs (${met(stale === 0)}).`];
  // With --against, this checkout's runs.
  const ours = records.filter((x) => x.code !== "before");
  const far = ours.filter((x) => x.setup === "regions" && x.rttMs === 40);
  for (const r of far) {
    const trips = (r.writeP50Ms ?? Number.NaN) / r.rttMs;
    lines.push(
      `- **the 40 ms region** (${pct(r.writeRatio)} writes): write p50 ${ms(r.writeP50Ms)} ms = ${trips.toFixed(1)} round trips (target ≤ 3: ${met(trips <= 3)}); read p99 ${ms(r.readP99Ms)} ms (target ≤ 60 ms: ${met(r.readP99Ms <= 60)}).`,
    );
  }
  for (const r of ours.filter((x) => x.setup === "regions" && x.rttMs < 40)) {
    const trips = (r.writeP50Ms ?? Number.NaN) / 40;
    lines.push(
      `- **a near region** (${r.region}, ${r.rttMs} ms; ${pct(r.writeRatio)} writes): write p50 ${ms(r.writeP50Ms)} ms = ${trips.toFixed(1)} round trips of 40 ms (target with a far node at 40 ms: ≤ 2; here the farthest is at ${Math.max(...records.map((x) => x.rttMs))} ms).`,
    );
  }
  return lines;
}

/**
 * With --against: per ratio and region, the other checkout's runs (before) against this
 * one's (after), each the median over the rounds, and after / before.
 */
export function againstTable(records: RegionRecord[]): string {
  const rows: string[][] = [];
  const runs = records.filter((r) => r.code !== undefined);
  const keys = [...new Set(runs.map((r) => `${r.writeRatio} ${r.region}`))];
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  for (const key of keys) {
    const of = (code: string) =>
      runs.filter((r) => `${r.writeRatio} ${r.region}` === key && r.code === code);
    const [before, after] = [of("before"), of("after")];
    if (before.length === 0 || after.length === 0) continue;
    const { writeRatio, region, rttMs } = after[0]!;
    const pair = (f: (r: RegionRecord) => number, show: (x: number) => string) => {
      const [b, a] = [median(before.map(f)), median(after.map(f))];
      return `${show(b)} → ${show(a)} (${(a / b).toFixed(2)}×)`;
    };
    rows.push([
      pct(writeRatio),
      `${region} (${rttMs} ms)`,
      String(after.length),
      pair(
        (r) => r.writeP50Ms ?? Number.NaN,
        (x) => `${ms(x)} ms${rttMs ? ` = ${(x / rttMs).toFixed(1)} RTT` : ""}`,
      ),
      pair(
        (r) => r.writeP99Ms ?? Number.NaN,
        (x) => `${ms(x)} ms`,
      ),
      pair(
        (r) => r.readP50Ms,
        (x) => `${ms(x)} ms`,
      ),
      pair(
        (r) => r.readP99Ms,
        (x) => `${ms(x)} ms`,
      ),
      pair((r) => r.hitRate, pct),
      pair(
        (r) =>
          r.node.writes ? r.node.writes.trips / Math.max(1, r.node.writes.requests) : Number.NaN,
        (x) => x.toFixed(2),
      ),
      pair(
        (r) => r.rps,
        (x) => x.toFixed(0),
      ),
    ]);
  }
  return table(
    [
      "write ratio",
      "region (RTT)",
      "rounds",
      "write p50 before → after",
      "write p99",
      "read p50",
      "read p99",
      "hit rate",
      "Redis round trips per write",
      "req/s",
    ],
    rows,
  );
}

/** A node's Redis round trips and commands per write it served (– without writes or counts). */
function perWrite(w: NodeCounters["writes"]): string {
  if (!w || w.requests === 0) return "–";
  return `${(w.trips / w.requests).toFixed(2)} / ${(w.commands / w.requests).toFixed(2)}`;
}
