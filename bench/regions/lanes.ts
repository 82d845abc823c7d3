/**
 * The request sequence run as regions would send it: each node (a region) has clients of
 * its own, and takes request i of the sequence when i mod n is its number. A slow region
 * then slows only its own clients, and a region cut off holds only its own: what the
 * regions benchmark measures per region. One oracle judges every region's reads, and writes
 * to one row stay serialized across regions (in the order they are dispatched).
 */
import type { Op, ReadOp } from "../workload/generate.ts";
import type { StaleOracle } from "../workload/oracle.ts";
import { type Client, emptyOutcome, Locks, type RunOutcome, read, send } from "../workload/run.ts";

export interface LaneOptions {
  /** Concurrent clients per region. */
  connections: number;
  /** `performance.now()` after which no region sends another request (none: run all). */
  until?: number;
}

/**
 * Runs `ops` over the client's nodes, one lane of `connections` clients per node; resolves
 * with each region's outcome (traced: every request with its times), its `elapsedMs` from
 * the common start to its own last answer.
 */
export async function runLanes(
  client: Client,
  ops: Op[],
  oracle: StaleOracle,
  options: LaneOptions,
): Promise<RunOutcome[]> {
  const n = client.bases.length;
  const locks = new Locks();
  const started = performance.now();
  return Promise.all(
    Array.from({ length: n }, async (_, region) => {
      const out = emptyOutcome(true);
      let next = region;
      const worker = async () => {
        while (
          next < ops.length &&
          !(options.until !== undefined && performance.now() > options.until)
        ) {
          const at = next;
          next += n;
          await send(client, ops[at]!, at, oracle, out, locks);
        }
      };
      await Promise.all(Array.from({ length: options.connections }, worker));
      out.elapsedMs = performance.now() - started;
      return out;
    }),
  );
}

/**
 * Warms each region with the reads of its own lane (each distinct path once, `connections`
 * at a time per region); nothing is judged.
 */
export async function warmLanes(client: Client, ops: Op[], connections: number): Promise<void> {
  const n = client.bases.length;
  await Promise.all(
    Array.from({ length: n }, async (_, region) => {
      const paths = new Set<string>();
      for (let i = region; i < ops.length; i += n) {
        const op = ops[i]!;
        if (op.kind === "read") paths.add(op.path);
      }
      const queue = [...paths];
      const worker = async () => {
        for (let path = queue.pop(); path !== undefined; path = queue.pop()) {
          await client.send("GET", path, undefined, region).catch(() => undefined);
        }
      };
      await Promise.all(Array.from({ length: connections }, worker));
    }),
  );
}

/**
 * Reads sent to every region every `everyMs` until `until`, each without waiting for the
 * ones before (open loop): what a region answers while its clients may be held up (a cut
 * link), judged by the oracle like every read. Each region takes the reads of its lane in
 * turn. Resolves with each region's outcome (traced) once every read has its answer.
 */
export async function probeLanes(
  client: Client,
  ops: Op[],
  oracle: StaleOracle,
  options: { everyMs: number; until: number },
): Promise<RunOutcome[]> {
  const n = client.bases.length;
  const outs = Array.from({ length: n }, () => emptyOutcome(true));
  const lanes = outs.map((_, region) =>
    ops.filter((op, i): op is ReadOp => i % n === region && op.kind === "read"),
  );
  const sent: Promise<void>[] = [];
  const started = performance.now();
  for (let tick = 0; performance.now() < options.until; tick++) {
    lanes.forEach((lane, region) => {
      const op = lane[tick % lane.length];
      // `at` = region: the client sends to node `at` mod n.
      if (op) sent.push(read(client, op, region, oracle, outs[region]!));
    });
    const next = started + (tick + 1) * options.everyMs;
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
  }
  await Promise.all(sent);
  return outs;
}
