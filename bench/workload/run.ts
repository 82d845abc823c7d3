/**
 * Runs a request sequence against one data API with concurrent clients over keep-alive
 * HTTP, tells the oracle of every write and judges every read. Writes to one row (and to a
 * user's orders while the user is deleted) are serialized in sequence order, so the
 * oracle always knows which version a row should show.
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
  /** Responses a correct server would not send (5xx, a write refused). */
  errors: number;
  elapsedMs: number;
  /** Every request's latency, and the hits' alone, in ms. */
  latencies: number[];
  hitLatencies: number[];
}

interface Reply {
  status: number;
  cacheStatus: string;
  body: string;
}

export class Client {
  #agent: Agent;
  constructor(
    readonly base: string,
    connections: number,
  ) {
    this.#agent = new Agent({ keepAlive: true, maxSockets: connections });
  }

  send(method: string, path: string, body?: unknown): Promise<Reply> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        this.base + path,
        {
          method,
          agent: this.#agent,
          headers: payload ? { "content-type": "application/json" } : {},
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
      req.end(payload);
    });
  }

  async json<T>(path: string): Promise<T> {
    const reply = await this.send("GET", path);
    if (reply.status !== 200) throw new Error(`[bench] GET ${path}: ${reply.status} ${reply.body}`);
    return JSON.parse(reply.body) as T;
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** Reads each path once, `connections` at a time (warming; nothing is judged). */
export async function readAll(client: Client, paths: string[], connections: number) {
  let next = 0;
  const worker = async () => {
    while (next < paths.length) await client.send("GET", paths[next++]!);
  };
  await Promise.all(Array.from({ length: connections }, worker));
}

export async function runSequence(
  client: Client,
  ops: Op[],
  oracle: StaleOracle,
  connections: number,
): Promise<RunOutcome> {
  const out: RunOutcome = {
    requests: 0,
    reads: 0,
    writes: 0,
    hits: 0,
    staleReads: 0,
    staleSamples: [],
    errors: 0,
    elapsedMs: 0,
    latencies: [],
    hitLatencies: [],
  };
  const locks = new Locks();
  let next = 0;
  const worker = async () => {
    while (next < ops.length) {
      const op = ops[next++]!;
      if (op.kind === "read") await read(client, op, oracle, out);
      else {
        // Taken in sequence order before awaiting, so writes to a row keep their order.
        const release = locks.take(op.locks);
        try {
          await release.ready;
          await write(client, op, oracle, out);
        } finally {
          release.done();
        }
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, worker));
  out.elapsedMs = performance.now() - started;
  return out;
}

async function read(client: Client, op: ReadOp, oracle: StaleOracle, out: RunOutcome) {
  const started = performance.now();
  const reply = await client.send("GET", op.path);
  const ended = performance.now();
  const latency = ended - started;
  out.requests++;
  out.reads++;
  out.latencies.push(latency);
  if (reply.cacheStatus.startsWith("edgecache; hit")) {
    out.hits++;
    out.hitLatencies.push(latency);
  }
  if (reply.status >= 500) out.errors++;
  const body = reply.status === 200 ? JSON.parse(reply.body) : undefined;
  const findings = oracle.judge(op.spec, started, ended, reply.status, body);
  if (findings.length > 0) {
    out.staleReads++;
    if (out.staleSamples.length < 20) out.staleSamples.push({ path: op.path, findings });
  }
}

async function write(client: Client, op: WriteOp, oracle: StaleOracle, out: RunOutcome) {
  const body =
    op.method === "PATCH" ? { ...op.body, version: oracle.nextVersion(op.table, op.id) } : op.body;
  const started = performance.now();
  const tokens: WriteToken[] = [oracle.issued(op.table, op.id, started)];
  for (const id of op.cascade ?? []) tokens.push(oracle.issued("orders", id, started));
  let reply: Reply | undefined;
  try {
    reply = await client.send(op.method, op.path, body);
  } catch {
    // No answer: whether the write happened is unknown.
  }
  const ended = performance.now();
  out.requests++;
  out.writes++;
  out.latencies.push(ended - started);
  const ok = reply && reply.status < 300;
  if (!ok) out.errors++;
  for (const token of tokens) {
    if (!ok) oracle.failed(token, ended);
    else if (op.method === "DELETE") oracle.acked(token, ended, undefined);
    else oracle.acked(token, ended, JSON.parse(reply!.body) as Row);
  }
}

/** Per-key chains of writes: a write waits for the earlier ones that share a key with it. */
class Locks {
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
