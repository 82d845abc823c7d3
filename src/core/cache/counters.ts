/** What the cache counts, reported by `stats()`. */
export function newCounters() {
  return {
    hits: 0,
    staleHits: 0,
    misses: 0,
    bypasses: 0,
    loads: 0,
    loadErrors: 0,
    fenced: 0,
    refused: 0,
    replayed: 0,
    awaited: 0,
    writes: 0,
    invalidations: 0,
    rehydrations: 0,
    patches: 0,
    patchesShared: 0,
    resets: 0,
  };
}

export type Counters = ReturnType<typeof newCounters>;
