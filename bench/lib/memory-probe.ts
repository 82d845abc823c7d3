/**
 * Loaded into a server under test (`node --expose-gc --import <this file> ...`): on SIGUSR2
 * it writes the process's memory to the file named by EDGECACHE_MEMORY_PROBE, as found and
 * again after a full garbage collection, so a driver can tell what the heap retains from
 * garbage not yet collected and from memory the runtime keeps after freeing it. With
 * EDGECACHE_HEAP_SNAPSHOT set to a folder it also writes a heap snapshot there (slow: only
 * for a look at the retainers, not for a timed run).
 */
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { getHeapSpaceStatistics, writeHeapSnapshot } from "node:v8";

export interface MemoryFigures {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

export interface MemoryProbe {
  /** As found: live objects and garbage not yet collected. */
  before: MemoryFigures;
  /** After a full collection: what is retained, and what the runtime kept of the rest. */
  afterGc: MemoryFigures;
  /** V8's heap spaces after the collection (MB used of MB reserved). */
  spaces: Record<string, { usedMB: number; sizeMB: number }>;
  snapshot?: string;
}

const file = process.env.EDGECACHE_MEMORY_PROBE;
const snapshots = process.env.EDGECACHE_HEAP_SNAPSHOT;
const gc = (globalThis as { gc?: (options?: unknown) => void }).gc;

function figures(): MemoryFigures {
  const { rss, heapTotal, heapUsed, external, arrayBuffers } = process.memoryUsage();
  return { rss, heapTotal, heapUsed, external, arrayBuffers };
}

if (file) {
  if (!gc) throw new Error("[bench] memory-probe.ts needs node --expose-gc");
  process.on("SIGUSR2", async () => {
    const before = figures();
    // Twice, with a turn between: finalizers the first collection queues (the registry
    // undici keeps per Request, ArrayBuffer backing stores) run, and the second frees what
    // they held.
    gc();
    await new Promise((r) => setTimeout(r, 10));
    gc();
    const probe: MemoryProbe = { before, afterGc: figures(), spaces: {} };
    for (const s of getHeapSpaceStatistics()) {
      probe.spaces[s.space_name] = {
        usedMB: Math.round(s.space_used_size / 1048576),
        sizeMB: Math.round(s.space_size / 1048576),
      };
    }
    if (snapshots)
      probe.snapshot = writeHeapSnapshot(join(snapshots, `${Date.now()}.heapsnapshot`));
    // Written whole, then renamed: the driver never reads half a file.
    writeFileSync(`${file}.tmp`, JSON.stringify(probe));
    renameSync(`${file}.tmp`, file);
  });
}
