/**
 * Runs a request sequence against one data API, or several nodes of one, with concurrent
 * clients over keep-alive HTTP, tells the oracle of every write and judges every read.
 * Writes to one row (and to a user's orders while the user is deleted) are serialized in
 * sequence order, so the oracle always knows which version a row should show. Over several
 * nodes, request i of the sequence goes to node i mod n (see `Client`).
 */
import { Agent, request } from "node:http";
import type { Op, ReadOp, WriteOp } from "./generate.ts";
import type { Finding, Row, StaleOracle, WriteToken } from "./oracle.ts";

export interface RunOutcome {
  requests: number;
  reads: number;
  writes: number;
  hits: number;
  staleReads: number;
  /** Up to 20 stale reads, for the report. */
  staleSamples: { path: string; findings: Finding[] }[];
  /** Every stale read's path, counted (what went stale, for reports that group them). */
  stalePaths: Map<string, number>;
  /** Every read's path that was not a hit, counted. */
  missPaths: Map<string, number>;
  /** Responses a correct server would not send (5xx, a write refused). */
  errors: number;
  elapsedMs: number;
  /** Every request's latency, the hits' alone and the writes' alone, in ms. */
  latencies: number[];
  hitLatencies: number[];
  writeLatencies: number[];
  /** Writes made around the data API, and each one's time from commit to applied, ms. */
  aroundWrites: number;
  captureLags: number[];
  /** Every request in the order answered, when asked for (`emptyOutcome(true)`). */
  trace?: Traced[];
}

/** One request of a traced run: when it was sent and answered, and how. */
export interface Traced {
  kind: "read" | "write";
  startedAt: number;
  endedAt: number;
  /** HTTP status; 0 when no answer came (the connection failed or timed out). */
  status: number;
  hit: boolean;
  stale: boolean;
}

interface Reply {
  status: number;
  cacheStatus: string;
  body: string;
}

/**
 * Keep-alive HTTP to one node or several. `send(..., at)` goes to node `at` mod n: the
 * runner passes each request's place in the sequence, so over n nodes the requests are
 * dealt round robin, as a load balancer without affinity deals them. Every node then sees
 * every key, and each must see the others' writes: the strict case for stale reads, and
 * the hard one for hit rate (a hash of the path would keep each key on one node).
 */
export class Client {
  #agent: Agent;
  readonly bases: readonly string[];
  /**
   * `timeoutMs`: a request that has no answer in that time fails (a region cut off must
   * not hold the driver's clients for ever); none by default.
   */
  constructor(
    bases: string | readonly string[],
    connections: number,
    readonly timeoutMs?: number,
  ) {
    this.bases = typeof bases === "string" ? [bases] : bases;
    // maxSockets is per node: each node may get every client's connection.
    this.#agent = new Agent({ keepAlive: true, maxSockets: connections });
  }

  send(method: string, path: string, body?: unknown, at = 0): Promise<Reply> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        this.bases[at % this.bases.length]! + path,
        {
          method,
          agent: this.#agent,
          headers: payload ? { "content-type": "application/json" } : {},
          timeout: this.timeoutMs,
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            text += chunk;
          });
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              cacheStatus: String(res.headers["cache-status"] ?? ""),
              body: text,
            }),
          );
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.on("timeout", () => req.destroy(new Error(`no answer in ${this.timeoutMs} ms`)));
      req.end(payload);
    });
  }

  async json<T>(path: string, at = 0): Promise<T> {
    const reply = await this.send("GET", path, undefined, at);
    if (reply.status !== 200) throw new Error(`[bench] GET ${path}: ${reply.status} ${reply.body}`);
    return JSON.parse(reply.body) as T;
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** Reads each path once, `connections` at a time (warming; nothing is judged). */
export async function readAll(client: Client, paths: string[], connections: number) {
  await sendAll(
    client,
    paths.map((path, at) => ({ path, at })),
    connections,
  );
}

/**
 * Warming for a sequence: each of its reads once on each node that serves it there
 * (request i goes to node i mod n), so every node starts as it would after serving its
 * share for a while, as one node starts having read everything once; nothing is judged.
 */
export async function warm(client: Client, ops: readonly Op[], connections: number) {
  const n = client.bases.length;
  const reads = new Map<string, { path: string; at: number }>();
  ops.forEach((op, i) => {
    if (op.kind === "read") reads.set(`${i % n} ${op.path}`, { path: op.path, at: i % n });
  });
  await sendAll(client, [...reads.values()], connections);
}

async function sendAll(
  client: Client,
  reads: readonly { path: string; at: number }[],
  connections: number,
) {
  let next = 0;
  const worker = async () => {
    while (next < reads.length) {
      const { path, at } = reads[next++]!;
      await client.send("GET", path, undefined, at);
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
}

/**
 * Writes made around the data API, straight into the database (change capture's case):
 * `write` commits one through a connection of the driver's own and answers the row as
 * the data API would; `applied` resolves once capture has applied it, when the oracle
 * takes it as acknowledged. `every`: one write in that many goes around.
 */
export interface AroundWrites {
  every: number;
  write(op: WriteOp, body: unknown): Promise<{ row: Row | undefined; applied: Promise<void> }>;
}

export async function runSequence(
  client: Client,
  ops: Op[],
  oracle: StaleOracle,
  connections: number,
  around?: AroundWrites,
): Promise<RunOutcome> {
  const out = emptyOutcome();
  const locks = new Locks();
  const aside = asides(around);
  let next = 0;
  const worker = async () => {
    while (next < ops.length) {
      const at = next++;
      const op = ops[at]!;
      await send(client, op, at, oracle, out, locks, aside(op));
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, worker));
  out.elapsedMs = performance.now() - started;
  return out;
}

/** Which writes of a sequence go around the nodes: every `around.every`-th, from the first. */
function asides(around: AroundWrites | undefined): (op: Op) => AroundWrites | undefined {
  let writes = 0;
  return (op) =>
    op.kind === "write" && around && writes++ % around.every === 0 ? around : undefined;
}

/**
 * runSequence as an open loop: request `at` is sent at `at / rate` s from the start, whether
 * or not the earlier ones were answered (a fixed offered load, not the most the setup can
 * serve). Writes to one row still wait for each other (see send).
 */
export async function runSequenceAt(
  client: Client,
  ops: Op[],
  oracle: StaleOracle,
  rate: number,
  around?: AroundWrites,
): Promise<RunOutcome> {
  const out = emptyOutcome();
  const locks = new Locks();
  const sent: Promise<void>[] = [];
  const aside = asides(around);
  const started = performance.now();
  for (let at = 0; at < ops.length; at++) {
    const wait = started + (at * 1000) / rate - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const op = ops[at]!;
    sent.push(send(client, op, at, oracle, out, locks, aside(op)));
  }
  await Promise.all(sent);
  out.elapsedMs = performance.now() - started;
  return out;
}

/**
 * Sends request `at` of the sequence (to node `at` mod n) and judges or records it; a write
 * first waits for the earlier writes it shares a row with (its locks are taken before
 * anything awaits, so writes to a row keep the order in which they were dispatched).
 */
export async function send(
  client: Client,
  op: Op,
  at: number,
  oracle: StaleOracle,
  out: RunOutcome,
  locks: Locks,
  around?: AroundWrites,
): Promise<void> {
  if (op.kind === "read") return read(client, op, at, oracle, out);
  const release = locks.take(op.locks);
  try {
    await release.ready;
    await write(client, op, at, oracle, out, around);
  } finally {
    release.done();
  }
}

/** A run's outcome before its first request; `trace`: keep every request (`Traced`). */
export function emptyOutcome(trace = false): RunOutcome {
  return {
    requests: 0,
    reads: 0,
    writes: 0,
    hits: 0,
    staleReads: 0,
    staleSamples: [],
    stalePaths: new Map(),
    missPaths: new Map(),
    errors: 0,
    elapsedMs: 0,
    latencies: [],
    hitLatencies: [],
    writeLatencies: [],
    aroundWrites: 0,
    captureLags: [],
    ...(trace && { trace: [] }),
  };
}

/** Sends one read of the sequence (to node `at` mod n) and judges it; counts it in `out`. */
export async function read(
  client: Client,
  op: ReadOp,
  at: number,
  oracle: StaleOracle,
  out: RunOutcome,
) {
  const started = performance.now();
  // No answer (a timeout, a reset): an error, with nothing to judge.
  const reply = await client
    .send("GET", op.path, undefined, at)
    .catch((): Reply => ({ status: 0, cacheStatus: "", body: "" }));
  const ended = performance.now();
  const latency = ended - started;
  out.requests++;
  out.reads++;
  out.latencies.push(latency);
  const hit = reply.cacheStatus.startsWith("edgecache; hit");
  if (hit) {
    out.hits++;
    out.hitLatencies.push(latency);
  } else out.missPaths.set(op.path, (out.missPaths.get(op.path) ?? 0) + 1);
  if (reply.status >= 500 || reply.status === 0) out.errors++;
  const body = reply.status === 200 ? JSON.parse(reply.body) : undefined;
  const findings = oracle.judge(op.spec, started, ended, reply.status, body);
  out.trace?.push({
    kind: "read",
    startedAt: started,
    endedAt: ended,
    status: reply.status,
    hit,
    stale: findings.length > 0,
  });
  if (findings.length > 0) {
    out.staleReads++;
    out.stalePaths.set(op.path, (out.stalePaths.get(op.path) ?? 0) + 1);
    if (out.staleSamples.length < 20) out.staleSamples.push({ path: op.path, findings });
  }
}

/** Sends one write of the sequence (to node `at` mod n) and tells the oracle; counts it. */
async function write(
  client: Client,
  op: WriteOp,
  at: number,
  oracle: StaleOracle,
  out: RunOutcome,
  around?: AroundWrites,
) {
  const body =
    op.method === "PATCH" ? { ...op.body, version: oracle.nextVersion(op.table, op.id) } : op.body;
  const started = performance.now();
  const tokens: WriteToken[] = [oracle.issued(op.table, op.id, started)];
  for (const id of op.cascade ?? []) tokens.push(oracle.issued("orders", id, started));
  let reply: Reply | undefined;
  let ended: number;
  if (around) {
    // Committed here, acknowledged (for the oracle) once capture has applied it.
    try {
      const { row, applied } = await around.write(op, body);
      const committed = performance.now();
      await applied;
      ended = performance.now();
      out.aroundWrites++;
      out.captureLags.push(ended - committed);
      reply = { status: 200, cacheStatus: "", body: JSON.stringify(row ?? null) };
    } catch {
      ended = performance.now();
    }
  } else {
    try {
      reply = await client.send(op.method, op.path, body, at);
    } catch {
      // No answer: whether the write happened is unknown.
    }
    ended = performance.now();
  }
  out.requests++;
  out.writes++;
  out.latencies.push(ended - started);
  out.writeLatencies.push(ended - started);
  const ok = reply && reply.status < 300;
  if (!ok) out.errors++;
  out.trace?.push({
    kind: "write",
    startedAt: started,
    endedAt: ended,
    status: reply?.status ?? 0,
    hit: false,
    stale: false,
  });
  for (const token of tokens) {
    if (!ok) oracle.failed(token, ended);
    else if (op.method === "DELETE") oracle.acked(token, ended, undefined);
    else oracle.acked(token, ended, JSON.parse(reply!.body) as Row);
  }
}

/** Per-key chains of writes: a write waits for the earlier ones that share a key with it. */
export class Locks {
  #tails = new Map<string, Promise<void>>();

  take(keys: string[]): { ready: Promise<unknown>; done: () => void } {
    let done!: () => void;
    const mine = new Promise<void>((resolve) => {
      done = resolve;
    });
    const before = keys.map((k) => this.#tails.get(k));
    for (const k of keys) this.#tails.set(k, mine);
    return {
      ready: Promise.all(before),
      done: () => {
        for (const k of keys) if (this.#tails.get(k) === mine) this.#tails.delete(k);
        done();
      },
    };
  }
}
