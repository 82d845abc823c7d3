/**
 * The cross-node invalidation probe: one write at a time, each through the next node in
 * turn, and from the moment it is acknowledged, reads of the written row on every other
 * node until each shows the new version. A write is acknowledged only once every node
 * holding a lease applied it, so the first read after the ack should already be new: the
 * time from ack to all-new is about one read's round trip, and any older version read
 * after the ack is a stale read. With one node, the writer itself is read: the baseline.
 */
import type { Client } from "../workload/run.ts";

/** A node that still shows the old version this long after the ack is given up on. */
const POLL_LIMIT_MS = 5000;
/** Writes first sent and judged but not timed: JIT and connections warm up. */
const WARMUP_WRITES = 20;

export interface ProbeOutcome {
  writes: number;
  /** Per acknowledged write: ms from its ack until every other node answered the new version. */
  ackToAllNew: number[];
  /** Per acknowledged write: ms from sending it to its ack. */
  writeLatencies: number[];
  /** Reads, after an ack, that answered an older version (or no row): must be none. */
  staleReads: number;
  staleSamples: { path: string; node: number; expected: number; got: number | string }[];
  /** Reads of the row on each node before each write, and how many were hits. */
  primes: number;
  primedHits: number;
  /** First reads after each ack, and how many were hits (the entry patched or refetched). */
  firstPolls: number;
  firstPollHits: number;
  /** Writes not acknowledged, and reads that failed (5xx). */
  errors: number;
}

/** Probes `writes` times, cycling through `ids` (rows of `users` no one else writes). */
export async function probeInvalidation(
  client: Client,
  ids: readonly string[],
  writes: number,
): Promise<ProbeOutcome> {
  const out: ProbeOutcome = {
    writes: 0,
    ackToAllNew: [],
    writeLatencies: [],
    staleReads: 0,
    staleSamples: [],
    primes: 0,
    primedHits: 0,
    firstPolls: 0,
    firstPollHits: 0,
    errors: 0,
  };
  const nodes = client.bases.length;
  const versions = new Map<string, number>();
  /** Rows whose write went unanswered: their version is unknown, so they are left alone. */
  const unknown = new Set<string>();
  const read = async (path: string, node: number) => {
    const reply = await client.send("GET", path, undefined, node);
    if (reply.status >= 500) out.errors++;
    const version =
      reply.status === 200 ? Number((JSON.parse(reply.body) as { version: unknown }).version) : -1;
    return { version, status: reply.status, hit: reply.cacheStatus.startsWith("edgecache; hit") };
  };
  const judge = (
    path: string,
    node: number,
    expected: number,
    got: { version: number; status: number },
  ) => {
    if (got.version >= expected) return true;
    out.staleReads++;
    if (out.staleSamples.length < 20) {
      out.staleSamples.push({
        path,
        node,
        expected,
        got: got.status === 200 ? got.version : `status ${got.status}`,
      });
    }
    return false;
  };

  // Every row cached on every node (the first read on each may miss).
  for (const id of ids) {
    for (let node = 0; node < nodes; node++)
      await read(`/v1/users/${encodeURIComponent(id)}`, node);
  }
  for (let i = -WARMUP_WRITES; i < writes; i++) {
    const timed = i >= 0;
    const id = ids[(i + WARMUP_WRITES) % ids.length]!;
    if (unknown.has(id)) continue;
    const path = `/v1/users/${encodeURIComponent(id)}`;
    const writer = (i + WARMUP_WRITES) % nodes;
    const readers =
      nodes === 1 ? [0] : Array.from({ length: nodes }, (_, n) => n).filter((n) => n !== writer);
    const current = versions.get(id) ?? 1;
    // The row cached on every node before the write, so the reads after it show whether
    // the write reached their caches, not a cold load. These reads are judged too.
    for (let node = 0; node < nodes; node++) {
      const got = await read(path, node);
      if (timed) out.primes++;
      if (timed && got.hit) out.primedHits++;
      judge(path, node, current, got);
    }

    const next = current + 1;
    const sent = performance.now();
    let ok = false;
    try {
      const reply = await client.send("PATCH", path, { version: next }, writer);
      ok = reply.status === 200;
    } catch {
      // No answer: whether the write happened is unknown.
    }
    const ackAt = performance.now();
    if (timed) out.writes++;
    if (!ok) {
      out.errors++;
      unknown.add(id);
      continue;
    }
    if (timed) out.writeLatencies.push(ackAt - sent);
    versions.set(id, next);

    const seen = await Promise.all(
      readers.map(async (node) => {
        for (let first = true; ; first = false) {
          const got = await read(path, node);
          if (first && timed) {
            out.firstPolls++;
            if (got.hit) out.firstPollHits++;
          }
          const elapsed = performance.now() - ackAt;
          if (judge(path, node, next, got) || elapsed > POLL_LIMIT_MS) return elapsed;
        }
      }),
    );
    if (timed) out.ackToAllNew.push(Math.max(...seen));
  }
  return out;
}
