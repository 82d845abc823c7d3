/** The workload benchmark's Markdown table and SVG chart. */
import { STRATEGIES, STRATEGY_LABELS, type Strategy } from "./strategies.ts";

export interface WorkloadRecord {
  strategy: Strategy;
  writeRatio: number;
  requests: number;
  reads: number;
  writes: number;
  /** Hits / reads (writes are never cached). */
  hitRate: number;
  staleReads: number;
  dbQueriesPerRequest: number;
  /**
   * Database queries each write brings beyond the same strategy's read-only run: the write
   * itself plus the misses and rehydrations it causes. Null without writes.
   */
  dbQueriesPerWrite: number | null;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  /** Latency of the hits within the loaded run, and of hits sent one at a time. */
  hitP50Ms: number | null;
  hitP50UnloadedMs: number | null;
  rps: number;
  errors: number;
  /** Keys invalidated, refetched in the background, and patched in place by writes. */
  invalidations: number;
  rehydrations: number;
  patches: number;
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const ms = (x: number | null) => (x === null ? "–" : x.toFixed(2));

export function markdownTable(records: WorkloadRecord[]): string {
  const lines = [
    "| write ratio | strategy | hit rate | stale reads | DB queries / request | DB queries / write | p50 ms | p95 ms | p99 ms | hit p50 ms (loaded / alone) | req/s |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of records) {
    lines.push(
      `| ${pct(r.writeRatio)} | ${STRATEGY_LABELS[r.strategy]} | ${pct(r.hitRate)} | ${r.staleReads} | ${r.dbQueriesPerRequest.toFixed(3)} | ${r.dbQueriesPerWrite === null ? "–" : r.dbQueriesPerWrite.toFixed(1)} | ${ms(r.p50Ms)} | ${ms(r.p95Ms)} | ${ms(r.p99Ms)} | ${ms(r.hitP50Ms)} / ${ms(r.hitP50UnloadedMs)} | ${Math.round(r.rps).toLocaleString("en-US")} |`,
    );
  }
  return lines.join("\n");
}

const COLORS: Record<Strategy, string> = {
  "no-cache": "#888888",
  "ttl-60s": "#d95f02",
  table: "#7570b3",
  edgecache: "#1b9e77",
  "edgecache-rehydrate": "#e7298a",
};

/** Rehydration's line is dashed: it often lies right on top of plain edgecache's. */
const dash = (s: Strategy) => (s === "edgecache-rehydrate" ? ' stroke-dasharray="6 4"' : "");

/**
 * Two panels against the write ratio: hit rate, and stale reads as a share of reads; one
 * line per strategy. The ratios are spaced evenly (they are the configurations run).
 */
export function chartSvg(records: WorkloadRecord[]): string {
  const ratios = [...new Set(records.map((r) => r.writeRatio))].sort((a, b) => a - b);
  const strategies = STRATEGIES.filter((s) => records.some((r) => r.strategy === s));
  const panel = { w: 360, h: 220, top: 40, left: 60 };
  const gap = 90;
  const width = panel.left + panel.w * 2 + gap + 30;
  const height = panel.top + panel.h + 60 + strategies.length * 18;
  const maxStale = Math.max(0.01, ...records.map((r) => r.staleReads / Math.max(1, r.reads)));
  const staleTop = niceCeil(maxStale);
  const x = (i: number) =>
    ratios.length === 1 ? panel.w / 2 : (i / (ratios.length - 1)) * panel.w;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  const panels = [
    { title: "Hit rate (hits / reads)", value: (r: WorkloadRecord) => r.hitRate, top: 1 },
    {
      title: "Stale reads (% of reads)",
      value: (r: WorkloadRecord) => r.staleReads / Math.max(1, r.reads),
      top: staleTop,
    },
  ];
  panels.forEach((p, pi) => {
    const ox = panel.left + pi * (panel.w + gap);
    const oy = panel.top;
    const y = (v: number) => oy + panel.h - (v / p.top) * panel.h;
    out.push(
      `<text x="${ox + panel.w / 2}" y="${oy - 16}" text-anchor="middle" font-size="14" font-weight="bold">${p.title}</text>`,
    );
    for (let t = 0; t <= 4; t++) {
      const v = (p.top * t) / 4;
      out.push(
        `<line x1="${ox}" x2="${ox + panel.w}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`,
      );
      out.push(`<text x="${ox - 6}" y="${y(v) + 4}" text-anchor="end">${trimPct(v)}</text>`);
    }
    ratios.forEach((ratio, i) => {
      out.push(
        `<text x="${ox + x(i)}" y="${oy + panel.h + 18}" text-anchor="middle">${trimPct(ratio)}</text>`,
      );
    });
    out.push(
      `<text x="${ox + panel.w / 2}" y="${oy + panel.h + 36}" text-anchor="middle">write ratio</text>`,
    );
    out.push(
      `<rect x="${ox}" y="${oy}" width="${panel.w}" height="${panel.h}" fill="none" stroke="#999"/>`,
    );
    for (const s of strategies) {
      const points = ratios
        .map((ratio, i) => {
          const r = records.find((rec) => rec.strategy === s && rec.writeRatio === ratio);
          return r ? `${(ox + x(i)).toFixed(1)},${y(p.value(r)).toFixed(1)}` : undefined;
        })
        .filter((pt) => pt !== undefined);
      out.push(
        `<polyline points="${points.join(" ")}" fill="none" stroke="${COLORS[s]}" stroke-width="2"${dash(s)}/>`,
      );
      for (const pt of points) {
        const [cx, cy] = pt.split(",");
        out.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${COLORS[s]}"/>`);
      }
    }
  });
  strategies.forEach((s, i) => {
    const ly = panel.top + panel.h + 56 + i * 18;
    out.push(
      `<line x1="${panel.left}" x2="${panel.left + 24}" y1="${ly - 4}" y2="${ly - 4}" stroke="${COLORS[s]}" stroke-width="3"${dash(s)}/>`,
    );
    out.push(`<text x="${panel.left + 32}" y="${ly}">${STRATEGY_LABELS[s]}</text>`);
  });
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}

function trimPct(v: number): string {
  return `${Number((v * 100).toFixed(1))}%`;
}

/** 1, 2 or 5 times a power of ten, at least `v`: round axis tops. */
function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
