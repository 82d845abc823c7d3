import { defineCommand } from "citty";
import type { CacheStats } from "../../core/stats.ts";
import { bytes, percent, table } from "./format.ts";

/** A stats hit rate (see `hitRate`) as a percentage; "-" before the first read. */
const rate = (value: number | null | undefined) => (value == null ? "-" : percent(value, 1));

import { JSON_ARG, NODE_ARGS, nodeClient } from "./node-client.ts";

const args = { ...JSON_ARG, ...NODE_ARGS } as const;

/** `edgecache stats`: a running node's counters, as a table or JSON. */
export const stats = defineCommand({
  meta: { name: "stats", description: "Show a running node's hits, misses, tiers and latency" },
  args,
  async run({ args: a }) {
    const s = await nodeClient(a).admin<CacheStats>("GET", "/stats");
    console.log(a.json ? JSON.stringify(s, null, 2) : statsText(s));
  },
});

export function statsText(s: CacheStats): string {
  const reads = s.hits + s.staleHits + s.misses + s.bypasses;
  const l = s.sourceLatencyMs;
  const ms = (v: number) => `${v.toFixed(1)} ms`;
  const summary = table(
    ["", ""],
    [
      [
        "reads",
        `${reads}: ${s.hits} hits, ${s.staleHits} stale, ${s.misses} misses, ${s.bypasses} bypasses; hit rate ${rate(s.hitRate)}`,
      ],
      [
        "source",
        `${s.loads} loads, ${s.loadErrors} failed, ${s.fenced} fenced; latency p50 ${ms(l.p50)}, p95 ${ms(l.p95)}, p99 ${ms(l.p99)}`,
      ],
      [
        "writes",
        `${s.writes}: ${s.invalidations} keys invalidated, ${s.patches} patched, ${s.rehydrations} rehydrated`,
      ],
      ["keys", `${s.indexedKeys} indexed, ${s.notFound.entries} cached 404s`],
      [
        "log",
        `${s.log.name} at ${s.log.seq}, lease ${s.log.lease ? "held" : "LOST"}, ${s.log.failures} failures, ${s.resets} resets, ${s.refused} refused`,
      ],
    ],
  )
    .split("\n")
    .slice(1) // no heading for the summary
    .join("\n");
  const tiers = table(
    ["TIER", "HITS", "MISSES", "HIT RATE", "ERRORS", "ENTRIES", "SIZE", "EVICTIONS"],
    s.tiers.map((t) => [
      t.name,
      t.hits,
      t.misses,
      rate(t.hitRate),
      t.errors,
      t.entries ?? "-",
      bytes(t.bytes),
      t.evictions ?? "-",
    ]),
  );
  return `${summary}\n\n${tiers}`;
}
