/** The caching strategies the workload benchmark compares, in the order it reports them. */
export const STRATEGIES = [
  "no-cache",
  "ttl-60s",
  "table",
  "edgecache",
  "edgecache-rehydrate",
] as const;

export type Strategy = (typeof STRATEGIES)[number];

export const STRATEGY_LABELS: Record<Strategy, string> = {
  "no-cache": "no cache",
  "ttl-60s": "TTL only (60 s)",
  table: "table-level invalidation",
  edgecache: "edgecache (row + predicate)",
  "edgecache-rehydrate": "edgecache + rehydration",
};
