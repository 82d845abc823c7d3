/**
 * What a write costs the node in CPU, by kind (update, insert, delete, a user's delete with
 * its orders cascaded), with and without rehydration, against baselines measured in the
 * same run: the same statements through better-sqlite3 alone, and a read (a hit, a miss)
 * through the same node.
 *
 *   npm run bench:writes                       # the workload's database, 4,000 requests
 *   npm run bench:writes -- --quick            # 1,500 requests
 *   npm run bench:writes -- --cpu-prof .scratch/prof --strategies edgecache-rehydrate
 *   npm run bench:writes -- --against ../before   # a node of that checkout in step: before/after
 *   npm run bench:writes -- --scan --lists 0,1000,10000   # the large-cache curve (issue 44)
 *   npm run bench:writes -- --touched 0,100,1000   # lists every user insert reaches
 *   npm run bench:writes -- --redis redis://127.0.0.1:6379   # each node on the Redis log and tier
 *   npm run bench:writes -- --cache-file   # each node with a cache file (the SQLite tier)
 *   npm run bench:writes -- --scan --redis redis://127.0.0.1:6379 --cache-file --ratios 0.01,0.1
 *                                          # and issue 44's measure: CPU per request at 10%
 *                                          # writes less at 1%, over the shares' difference
 *   npm run bench:writes -- ... --ratios 0.01,0.1 --split   # and that measure in its parts: a
 *                                          # write's own CPU, and a read's at each share
 *
 * --against takes a checkout (e.g. `git worktree add ../before <commit>` with node_modules
 * linked) whose bench/servers/workload-server.ts answers /_bench/cpu: commit b70f964 or later
 * (with --cache-file, one whose workload-server.ts takes --cache-file: a9ae4e2 or later).
 *
 * One node (the data API over SQLite, bench/servers/workload-server.ts) is warmed with
 * every read of the workload's sequence (bench/workload/, 20,000 requests at the write
 * ratio), then with the sequence itself up to its `--warm-writes`-th write (400: V8 compiles
 * the write path there, not in the measured writes; the database, the versions and the bare
 * SQL's copy follow those writes too), then the next `--requests` of that sequence are sent
 * one at a time. Around each
 * write, and around every tenth read, the driver asks the node for its own CPU time
 * (`process.cpuUsage`) once its background work (rehydration) is done: the difference is
 * that request's CPU, rehydration included, less the cost of asking (pairs of asks with
 * nothing between them, measured in the same run). Writes `<out>.json` and `<out>.md`
 * (default bench/results/writes).
 *
 * The large cache: `--scan` caches, after the warm-up, what a client's start-up scan of the
 * users leaves (the first 2,000 users as two 1,000-row pages, never read again), and
 * `--lists 0,1000,10000` repeats the run once per figure with that many more lists of users
 * without an equality filter cached (`id[gte]=<id>&limit=5`, also never read again; a
 * write of a user sorts into five of them at most): the cost per write against the cached
 * entries of the table that it does not touch. `--touched 0,100,1000` does the same with
 * lists every user insert reaches (`sort=-createdAt&limit=<1..n>`: the new user enters
 * each window at its head), for the cost of each entry a write does touch. With `--redis`, each
 * node is one of a deployment on Redis (its change log and a shared tier, under a fresh
 * prefix dropped after), as `edgecache serve --redis` wires it: a write's CPU then
 * includes the log's calls and the shared tier's deletes. With `--cache-file`, each node
 * has a cache file (the SQLite tier) between its memory and Redis, as `edgecache serve` does.
 *
 * Issue 44's measure (`--ratios 0.01,0.1`): one node per ratio, each on the sequence at that
 * ratio (same seed), warmed alike (its reads, then the same requests for both at `--ratio`,
 * the per-write runs' share, up to their `--ratio-warm-writes`-th write, 5,000: see
 * RATIO_WARM_WRITES, then its reads again), then `--ratio-requests` requests of each sent in
 * step, one to each node in turn, with the node's CPU taken once before and once after
 * (drained): CPU per request at each ratio, and a write's CPU, rehydration and the misses it
 * causes included, as the difference of the two over the difference of their write shares
 * (the issue's `(at 10% - at 1%) / 0.09`, with the shares the sequences really have). The
 * report gives the part of each node's CPU spent on threads other than its main one (Linux):
 * where V8 still compiles, it shows there. With --against, that checkout's two nodes run in
 * the same step (four nodes, each request to each in turn): before and after under the same
 * load, where separate runs differ by a fifth.
 */

import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { MAX_LIMIT } from "../src/core/data/query-params.ts";
import { DEFAULT_LEASE_MS } from "../src/log/redis/index.ts";
import { shares, sharesMarkdown, WRITE_PATH } from "./lib/cpu-profile.ts";
import { type GcTally, makeTmpDir, ROOT, runBench, startServer, stopAll } from "./lib/processes.ts";
import { BenchRedis } from "./lib/redis.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { commandLine, fail, positiveInt, readFlags } from "./lib/settings.ts";
import { generateSequence, type Op, type WriteOp } from "./workload/generate.ts";
import { Client, readAll } from "./workload/run.ts";
import type { Strategy } from "./workload/strategies.ts";
import { prepareDatabase, quantile, round } from "./workload/workload.ts";

const STRATEGIES = ["edgecache", "edgecache-rehydrate"] as const satisfies readonly Strategy[];
type Measured = (typeof STRATEGIES)[number];
const KINDS = [
  "update users",
  "update orders",
  "insert users",
  "insert orders",
  "delete orders",
  "delete users (cascade)",
] as const;
type Kind = (typeof KINDS)[number];
/** Pairs of CPU asks with nothing between them: the cost of asking, subtracted. */
const EMPTY_PAIRS = 200;
/** Requests at once while warming (reads only; the measured requests go one at a time). */
const WARM_CONNECTIONS = 4;
/** One read in this many is measured (each measurement costs two more requests). */
const READ_SAMPLE = 10;
/**
 * Writes both nodes of the ratio measure are warmed with (`--ratio-warm-writes`). After 400,
 * V8 still compiled the write path during the measured requests, on its own threads: at
 * stop 67, 187 optimizing compiles (1.97 s of CPU) at 10% writes against 39 (0.35 s) at 1%,
 * which the measure charged to the extra writes (about 1.5 ms each). After 5,000, the node
 * at 10% still spent 0.15-0.69 s more on threads other than its main one than the node at
 * 1% (four runs): fewer, not none. 5,000 was the most tried.
 */
const RATIO_WARM_WRITES = 5000;

function commitOf(dir: string): string {
  const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: dir, encoding: "utf8" });
  if (head.status !== 0) fail(`--against: expected a git checkout, got ${dir}`);
  return head.stdout.trim();
}

const { options, out } = readFlags(() => {
  const { values } = parseArgs({
    options: {
      users: { type: "string", default: "10000" },
      orders: { type: "string", default: "50000" },
      requests: { type: "string" },
      warm: { type: "string", default: "20000" },
      ratio: { type: "string", default: "0.2" },
      seed: { type: "string", default: "7" },
      strategies: { type: "string", default: STRATEGIES.join(",") },
      "cpu-prof": { type: "string" },
      against: { type: "string" },
      quick: { type: "boolean", default: false },
      scan: { type: "boolean", default: false },
      lists: { type: "string", default: "0" },
      touched: { type: "string", default: "0" },
      redis: { type: "string" },
      "cache-file": { type: "boolean", default: false },
      "warm-writes": { type: "string", default: "400" },
      "ratio-warm-writes": { type: "string", default: String(RATIO_WARM_WRITES) },
      ratios: { type: "string" },
      "ratio-requests": { type: "string", default: "10000" },
      split: { type: "boolean", default: false },
      out: { type: "string", default: "bench/results/writes" },
    },
  });
  const ratio = Number(values.ratio);
  if (!(ratio > 0 && ratio <= 1)) fail(`--ratio: expected a share in (0, 1], got ${values.ratio}`);
  const strategies = values.strategies.split(",").map((s) => {
    if (!STRATEGIES.includes(s as Measured)) {
      fail(`--strategies: expected some of ${STRATEGIES.join(", ")}, got ${s}`);
    }
    return s as Measured;
  });
  const ratios = values.ratios?.split(",").map(Number);
  if (
    ratios &&
    (ratios.length !== 2 || !ratios.every((r) => r > 0 && r < 1) || ratios[0]! >= ratios[1]!)
  ) {
    fail(`--ratios: expected two write shares, lower first, like 0.01,0.1, got ${values.ratios}`);
  }
  return {
    options: {
      users: positiveInt("users", values.users),
      orders: positiveInt("orders", values.orders),
      requests: positiveInt("requests", values.requests ?? (values.quick ? "1500" : "4000")),
      warm: positiveInt("warm", values.warm),
      ratio,
      seed: positiveInt("seed", values.seed),
      strategies,
      cpuProf: values["cpu-prof"],
      scan: values.scan,
      redis: values.redis,
      cacheFile: values["cache-file"],
      warmWrites: count("warm-writes", values["warm-writes"]),
      ratioWarmWrites: positiveInt("ratio-warm-writes", values["ratio-warm-writes"]),
      ratios: ratios as [number, number] | undefined,
      ratioRequests: positiveInt("ratio-requests", values["ratio-requests"]),
      split: values.split,
      lists: counts("lists", values.lists),
      touched: counts("touched", values.touched, MAX_LIMIT),
      against: values.against && resolve(values.against),
      againstCommit: values.against && commitOf(values.against),
    },
    out: values.out,
  };
});

/** A flag's count (0 or more). */
function count(flag: string, text: string): number {
  if (!/^\d+$/.test(text)) fail(`--${flag}: expected a count, got ${text}`);
  return Number(text);
}

/** A flag's comma-separated counts (each at most `max`). */
function counts(flag: string, text: string, max = Number.POSITIVE_INFINITY): number[] {
  return text.split(",").map((n) => {
    if (!/^\d+$/.test(n) || Number(n) > max) {
      fail(
        `--${flag}: expected counts like 0,100,1000${max < Infinity ? ` (each at most ${max})` : ""}, got ${n}`,
      );
    }
    return Number(n);
  });
}

interface Summary {
  n: number;
  /** CPU per request, us. */
  p50: number;
  p90: number;
  mean: number;
}

type ByKind = Record<Kind | "all", Summary>;

/** One node's figures under one strategy. */
interface NodeRun {
  /** Which code: "this" (the checkout that runs the driver) or "against" (--against). */
  code: string;
  writes: ByKind;
  reads: { hit: Summary; miss: Summary };
  /** The cost of one ask (subtracted from every figure), us. */
  askUs: number;
  rehydrations: number;
  patches: number;
  invalidations: number;
}

interface StrategyRun {
  strategy: Measured;
  /** Lists without an equality filter cached beside the workload's (--lists). */
  lists: number;
  /** Lists every user insert reaches, cached beside the workload's (--touched). */
  touched: number;
  nodes: NodeRun[];
  /** The same writes' statements through better-sqlite3 alone, measured in step with them. */
  bareSql: ByKind;
  /** With --cpu-prof: this checkout's node's profile of the measured part, summed up. */
  profile?: string;
  /** The same profile's samples taken during the writes alone (arrival to drained). */
  writesProfile?: string;
}

const summarize = (xs: number[]): Summary => ({
  n: xs.length,
  p50: round(quantile(xs, 0.5), 0),
  p90: round(quantile(xs, 0.9), 0),
  mean: round(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length), 0),
});

function byKind(samples: Map<Kind, number[]>): ByKind {
  const kinds = Object.fromEntries(KINDS.map((k) => [k, summarize(samples.get(k)!)]));
  return { ...(kinds as Record<Kind, Summary>), all: summarize([...samples.values()].flat()) };
}

const newSamples = () => new Map<Kind, number[]>(KINDS.map((k) => [k, []]));

function kindOf(op: WriteOp): Kind {
  if (op.method === "PATCH") return `update ${op.table}`;
  if (op.method === "POST") return `insert ${op.table}`;
  return op.table === "users" ? "delete users (cascade)" : "delete orders";
}

/** The body a write sends: an update carries the row's next version, as the workload's do. */
function bodyOf(op: WriteOp, versions: Map<string, number>): Record<string, unknown> | undefined {
  if (op.method !== "PATCH") return op.body;
  const key = `${op.table}:${op.id}`;
  const version = (versions.get(key) ?? 1) + 1;
  versions.set(key, version);
  return { ...op.body, version };
}

/** A node under measurement: the data API of one checkout, on its own copy of the database. */
class Node {
  readonly hits: number[] = [];
  readonly misses: number[] = [];
  readonly writes = newSamples();
  askUs = 0;
  #stats: { rehydrations: number; patches: number; invalidations: number } | undefined;

  constructor(
    readonly code: string,
    readonly client: Client,
  ) {}

  /** The node's CPU time once its background work is done, us. */
  async cpu(): Promise<number> {
    return (await this.client.json<{ us: number }>("/_bench/cpu?drain")).us;
  }

  /**
   * The same, and its main thread's alone where the node can tell (Linux), us. Asked only
   * around the measured requests: reading it costs the node more than `cpu()`.
   */
  threads(): Promise<{ us: number; mainUs?: number; gc?: GcTally }> {
    return this.client.json<{ us: number; mainUs?: number; gc?: GcTally }>(
      "/_bench/cpu?drain&threads",
    );
  }

  async counters() {
    const { cache } = await this.client.json<{ cache: NonNullable<Node["stats"]> }>(
      "/_bench/stats",
    );
    return cache;
  }

  get stats() {
    return this.#stats;
  }

  async begin(): Promise<void> {
    this.#stats = await this.counters();
  }

  /** Sends one request and records its CPU (if `measured`). */
  async send(op: Op, body: unknown, measured: boolean): Promise<{ cacheStatus: string }> {
    const before = measured ? await this.cpu() : 0;
    const reply = await this.client.send(op.kind === "write" ? op.method : "GET", op.path, body);
    if (op.kind === "write" && reply.status >= 300) {
      fail(`${this.code}: ${op.method} ${op.path}: ${reply.status} ${reply.body}`);
    }
    if (!measured) return reply;
    const us = Math.max(0, (await this.cpu()) - before - this.askUs);
    if (op.kind === "write") this.writes.get(kindOf(op))!.push(us);
    else (reply.cacheStatus.startsWith("edgecache; hit") ? this.hits : this.misses).push(us);
    return reply;
  }

  async result(): Promise<NodeRun> {
    const after = await this.counters();
    const before = this.#stats!;
    return {
      code: this.code,
      writes: byKind(this.writes),
      reads: { hit: summarize(this.hits), miss: summarize(this.misses) },
      askUs: round(this.askUs, 0),
      rehydrations: after.rehydrations - before.rehydrations,
      patches: after.patches - before.patches,
      invalidations: after.invalidations - before.invalidations,
    };
  }
}

/** The nodes' Redis prefixes of this run, dropped when it is done. */
type Prefixes = string[];

/**
 * Starts a node of the checkout at `root` on its own copy of the database, with its own
 * Redis prefix (--redis) and its own cache file (--cache-file).
 */
async function startNode(
  name: string,
  code: string,
  root: string,
  template: string,
  strategy: Measured,
  prefixes: Prefixes,
): Promise<Node> {
  const dir = makeTmpDir();
  const db = join(dir, `${name}.db`);
  copyFileSync(template, db);
  const prefix = redis?.freshPrefix();
  if (prefix) prefixes.push(prefix);
  const server = await startServer({
    name: `writes-${name}`,
    cwd: root,
    argv: [
      "--import",
      "tsx",
      join(root, "bench", "servers", "workload-server.ts"),
      ...["--db", db, "--strategy", strategy],
      ...(prefix ? ["--redis", redis!.url, "--prefix", prefix] : []),
      ...(options.cacheFile ? ["--cache-file", join(dir, `${name}.cache.db`)] : []),
    ],
  });
  return new Node(code, new Client(server.url, WARM_CONNECTIONS));
}

/**
 * A sequence cut where measuring starts: `prefix` up to and with its `warmWrites`-th write
 * (sent unmeasured, so V8 has compiled the write path before the measured writes), then the
 * next `requests` ops.
 */
function afterWarmWrites(
  sequence: Op[],
  requests: number,
  warmWrites = options.warmWrites,
): { prefix: Op[]; ops: Op[] } {
  let writes = 0;
  let at = 0;
  while (writes < warmWrites && at < sequence.length) {
    if (sequence[at++]!.kind === "write") writes++;
  }
  const ops = sequence.slice(at, at + requests);
  if (ops.length < requests) fail(`--requests: the sequence ends before ${at + requests} requests`);
  return { prefix: sequence.slice(0, at), ops };
}

/** How long a sequence at `ratio` must be for the warm writes and then `requests` more. */
function sequenceLength(ratio: number, requests: number): number {
  return Math.ceil((options.warmWrites / ratio) * 1.5) + requests + 1000;
}

/**
 * Warms nodes, each with its sequence: every read once, then the sequence's prefix
 * (unmeasured; `each` sees each of its ops, so the bare SQL follows its writes), with
 * `again` every read once more (the ratio measure: see there), then the cold paths once
 * (after the prefix, so they are in the cache when measuring starts, as the run caches
 * them). Then the cost of asking each node for its CPU, and its counters from here on.
 */
async function warmNodes(
  nodes: readonly Node[],
  sequences: readonly { reads: Op[]; prefix: Op[] }[],
  coldPaths: readonly string[],
  versions: Map<string, number>[],
  { each, again = false }: { each?: (op: Op, body: unknown) => void; again?: boolean } = {},
): Promise<void> {
  const readEvery = () =>
    Promise.all(
      nodes.map(async (node, i) => {
        const reads = new Set(
          sequences[i]!.reads.filter((o) => o.kind === "read").map((o) => o.path),
        );
        await readAll(node.client, [...reads], WARM_CONNECTIONS);
      }),
    );
  await readEvery();
  // Each sequence's bodies once (each takes its row's next version), in order: nodes on one
  // sequence get the same ones, and `each` sees every op.
  const bodies = new Map<object, unknown[]>();
  for (const [i, sequence] of sequences.entries()) {
    if (bodies.has(sequence)) continue;
    bodies.set(
      sequence,
      sequence.prefix.map((op) => {
        const body = op.kind === "write" ? bodyOf(op, versions[i]!) : undefined;
        each?.(op, body);
        return body;
      }),
    );
  }
  // Unmeasured, so each node at its own pace: writes one at a time in order, the reads
  // between two writes WARM_CONNECTIONS at a time.
  await Promise.all(
    nodes.map(async (node, i) => {
      const { prefix } = sequences[i]!;
      const made = bodies.get(sequences[i]!)!;
      let reads: string[] = [];
      for (const [at, op] of prefix.entries()) {
        if (op.kind === "read") {
          reads.push(op.path);
          continue;
        }
        await readAll(node.client, reads, WARM_CONNECTIONS);
        reads = [];
        await node.send(op, made[at], false);
      }
      await readAll(node.client, reads, WARM_CONNECTIONS);
    }),
  );
  // Every read once more: what the prefix's writes took out (pages they could not patch,
  // or patched unread until they went) is cached again when measuring starts, as before it.
  if (again) await readEvery();
  await Promise.all(
    nodes.map(async (node) => {
      for (const path of coldPaths) await node.client.send("GET", path);
    }),
  );
  for (const node of nodes) {
    node.askUs = await costOfAsking(node);
    await node.begin();
  }
}

/** The cost of asking a node for its CPU: the median of pairs with nothing between them. */
async function costOfAsking(node: Node): Promise<number> {
  const asks: number[] = [];
  for (let i = 0; i < EMPTY_PAIRS; i++) {
    const before = await node.cpu();
    asks.push((await node.cpu()) - before);
  }
  return quantile(asks, 0.5);
}

/**
 * Runs the ops through a node of each checkout in step (each request to one node, then to
 * the next), so a load the machine carries at some moment weighs on all alike, and the
 * writes' statements through better-sqlite3 alone between them.
 */
async function measureStrategy(
  template: string,
  strategy: Measured,
  warm: Op[],
  cut: { prefix: Op[]; ops: Op[] },
  cold: { paths: string[]; lists: number; touched: number },
): Promise<StrategyRun> {
  const codes = [
    { code: "this", root: ROOT },
    ...(options.against ? [{ code: "against", root: options.against }] : []),
  ];
  const nodes: Node[] = [];
  const prefixes: Prefixes = [];
  try {
    for (const { code, root } of codes) {
      nodes.push(await startNode(`${strategy}-${code}`, code, root, template, strategy, prefixes));
    }
    for (const prefix of prefixes) await redis!.logOlderThan(prefix, DEFAULT_LEASE_MS);
    const bare = new BareSql(template);
    // One sequence and version map for all: every node gets the same bodies.
    const versions = new Map<string, number>();
    const sequence = { reads: warm, prefix: cut.prefix };
    await warmNodes(
      nodes,
      nodes.map(() => sequence),
      cold.paths,
      nodes.map(() => versions),
      {
        each: (op, body) => {
          if (op.kind === "write") {
            bare.run(op, body as Record<string, unknown> | undefined, false);
          }
        },
      },
    );
    const profile = options.cpuProf && resolve(ROOT, options.cpuProf, `${strategy}.cpuprofile`);
    if (profile) {
      mkdirSync(dirname(profile), { recursive: true });
      await nodes[0]!.client.send("POST", "/_bench/profile");
    }
    let readNo = 0;
    for (const op of cut.ops) {
      const measured = op.kind === "write" || readNo++ % READ_SAMPLE === 0;
      const body = op.kind === "write" ? bodyOf(op, versions) : undefined;
      for (const node of nodes) await node.send(op, body, measured);
      if (op.kind === "write") bare.run(op, body);
    }
    if (profile) {
      await nodes[0]!.client.send("POST", `/_bench/profile?stop=${encodeURIComponent(profile)}`);
    }
    bare.close();
    return {
      strategy,
      lists: cold.lists,
      touched: cold.touched,
      nodes: await Promise.all(nodes.map((n) => n.result())),
      bareSql: byKind(bare.samples),
      ...(profile && profiles(profile)),
    };
  } finally {
    for (const node of nodes) node.client.close();
    await stopAll();
    for (const prefix of prefixes) await redis!.drop(prefix);
  }
}

/** A read's path with its values out: `/v1/users/:id`, `/v1/orders?status=…&offset=…`. */
function shapeOf(path: string): string {
  return path.replace(/^(\/v1\/\w+)\/[^?]+/, "$1/:id").replace(/=[^&]*/g, "=…");
}

/** Issue 44's measure at one write share: one node's CPU over the measured requests. */
interface RatioRun {
  ratio: number;
  requests: number;
  /** Writes among the measured requests (the share the sequence really has). */
  writes: number;
  /** Reads answered from the cache. */
  hits: number;
  /** Reads not answered from the cache, by the read's shape (its path with the values out). */
  missesByShape: Record<string, number>;
  /** The node's CPU over the measured requests, drained after, us. */
  cpuUs: number;
  /**
   * Of that, its threads' other than the main one (V8's optimizing compiler and garbage
   * collector helpers, libuv's pool), where the node can tell (Linux), us: a node whose V8
   * is still compiling the write path spends it here.
   */
  otherThreadsUs?: number;
  /**
   * The garbage collections over the measured requests, where the node tells them: a full
   * collection is tens of ms of the main thread and more on the collector's helpers, so one
   * run's measure moves with whether one fell in it.
   */
  gc?: GcTally;
  perRequestUs: number;
  rehydrations: number;
  patches: number;
  invalidations: number;
  /**
   * With --split: the node's CPU asked for around each write as well, which parts the
   * figure above into the writes' own CPU and the reads' (the asks' cost taken out of both).
   */
  split?: { writeUs: number; readUs: number; askUs: number };
}

interface RatioMeasure {
  strategy: Measured;
  /** "this" checkout's nodes, or "against": those of --against, measured in step with them. */
  code: "this" | "against";
  lists: number;
  touched: number;
  runs: [RatioRun, RatioRun];
  /** (CPU per request at the higher share - at the lower) / (the shares' difference), us. */
  writeUs: number;
  /** The same over the nominal difference (the issue's `/ 0.09`), us. */
  writeUsNominal: number;
}

/**
 * Issue 44's measure: a node per write share, each on the sequence at its share (same seed),
 * warmed alike, then the same number of requests of each in step; the node's CPU once
 * before and once after. A write's CPU is what the higher share costs per request more than
 * the lower, over the difference of the shares: its own work, the misses it leaves, the
 * rehydration it starts.
 */
async function measureRatios(
  template: string,
  data: Parameters<typeof generateSequence>[0],
  strategy: Measured,
  cold: { paths: string[]; lists: number; touched: number },
): Promise<RatioMeasure[]> {
  const ratios = options.ratios!;
  const sequences = ratios.map((ratio) => {
    // Both shares' nodes are warmed on the same requests (at --ratio) up to the same write:
    // V8 has then compiled what it compiles after as many writes at either share, and a
    // share's measure is not the compiles its extra writes bring on (afterWarmWrites).
    const sequence = generateSequence(data, {
      requests: options.ratioRequests,
      writeRatio: ratio,
      seed: options.seed,
      warm: { writes: options.ratioWarmWrites, writeRatio: options.ratio },
    });
    return {
      reads: sequence,
      ...afterWarmWrites(sequence, options.ratioRequests, options.ratioWarmWrites),
    };
  });
  // A node per checkout and share: this one's, then --against's, all sent each request in
  // step, so the machine's load at any moment weighs on before and after alike.
  const codes = [
    { code: "this" as const, root: ROOT },
    ...(options.against ? [{ code: "against" as const, root: options.against }] : []),
  ];
  const measured = codes.flatMap(({ code, root }) =>
    ratios.map((ratio, r) => ({ code, root, ratio, sequence: sequences[r]! })),
  );
  const nodes: Node[] = [];
  const prefixes: Prefixes = [];
  try {
    for (const { code, root, ratio } of measured) {
      const name = `${strategy}-${code}-at-${ratio}`;
      nodes.push(await startNode(name, `${ratio}`, root, template, strategy, prefixes));
    }
    for (const prefix of prefixes) await redis!.logOlderThan(prefix, DEFAULT_LEASE_MS);
    const versions = measured.map(() => new Map<string, number>());
    const ofNode = measured.map((m) => m.sequence);
    // Every read again after the warm writes: measuring starts from a full cache, so a
    // miss in the measured requests is one the measured writes caused.
    await warmNodes(nodes, ofNode, cold.paths, versions, { again: true });
    // With --cpu-prof, each node's profile of the measured requests (the windows of its
    // writes beside it), to compare what the higher share spends more.
    const profileOf = (i: number) => {
      const { code, ratio } = measured[i]!;
      const name = `${strategy}${code === "this" ? "" : `-${code}`}-at-${ratio}.cpuprofile`;
      return options.cpuProf && resolve(ROOT, options.cpuProf, name);
    };
    if (options.cpuProf) {
      mkdirSync(resolve(ROOT, options.cpuProf), { recursive: true });
      for (const node of nodes) await node.client.send("POST", "/_bench/profile");
    }
    const before = await Promise.all(nodes.map((n) => n.threads()));
    const hits = nodes.map(() => 0);
    // With --split, each node's CPU from before each write to after it (asks included).
    const inWrites = nodes.map(() => 0);
    const misses = nodes.map((): Record<string, number> => ({}));
    for (let at = 0; at < options.ratioRequests; at++) {
      for (const [i, node] of nodes.entries()) {
        const op = ofNode[i]!.ops[at]!;
        const body = op.kind === "write" ? bodyOf(op, versions[i]!) : undefined;
        const asked = options.split && op.kind === "write" ? await node.cpu() : undefined;
        const reply = await node.send(op, body, false);
        if (asked !== undefined) inWrites[i]! += (await node.cpu()) - asked;
        if (reply.cacheStatus.startsWith("edgecache; hit")) hits[i]!++;
        else if (op.kind === "read") {
          const shape = shapeOf(op.path);
          misses[i]![shape] = (misses[i]![shape] ?? 0) + 1;
        }
      }
    }
    const after = await Promise.all(nodes.map((n) => n.threads()));
    // What an ask costs each node (pairs with nothing between them), for --split.
    const askUs = options.split ? await Promise.all(nodes.map((n) => costOfAsking(n))) : [];
    for (const [i, node] of nodes.entries()) {
      const profile = profileOf(i);
      if (profile) {
        await node.client.send("POST", `/_bench/profile?stop=${encodeURIComponent(profile)}`);
      }
    }
    const runs = await Promise.all(
      nodes.map(async (node, i): Promise<RatioRun> => {
        const ops = ofNode[i]!.ops;
        const writes = ops.filter((o) => o.kind === "write").length;
        // Each write has an ask before and after it: about one ask's cost falls inside its
        // window, one outside. Both come out of the node's CPU, which is then as without them.
        const asks = options.split ? 2 * writes * askUs[i]! : 0;
        const cpuUs = after[i]!.us - before[i]!.us - asks;
        const { mainUs: mainAfter, gc: gcAfter } = after[i]!;
        const { mainUs: mainBefore, gc: gcBefore } = before[i]!;
        const counters = await node.result();
        const inOwn = options.split ? inWrites[i]! - writes * askUs[i]! : 0;
        const split = options.split
          ? {
              writeUs: inOwn / Math.max(1, writes),
              readUs: (cpuUs - inOwn) / Math.max(1, ops.length - writes),
              askUs: askUs[i]!,
            }
          : undefined;
        return {
          ...(split && { split }),
          ratio: measured[i]!.ratio,
          requests: ops.length,
          writes,
          hits: hits[i]!,
          missesByShape: misses[i]!,
          cpuUs,
          ...(mainAfter !== undefined &&
            mainBefore !== undefined && {
              otherThreadsUs: after[i]!.us - before[i]!.us - (mainAfter - mainBefore),
            }),
          ...(gcAfter && gcBefore && { gc: gcSince(gcBefore, gcAfter) }),
          perRequestUs: cpuUs / ops.length,
          rehydrations: counters.rehydrations,
          patches: counters.patches,
          invalidations: counters.invalidations,
        };
      }),
    );
    return codes.map(({ code }, c) => {
      const [lo, hi] = runs.slice(c * ratios.length, (c + 1) * ratios.length) as [
        RatioRun,
        RatioRun,
      ];
      const extra = hi.perRequestUs - lo.perRequestUs;
      return {
        strategy,
        code,
        lists: cold.lists,
        touched: cold.touched,
        runs: [lo, hi],
        writeUs: extra / (hi.writes / hi.requests - lo.writes / lo.requests),
        writeUsNominal: extra / (hi.ratio - lo.ratio),
      };
    });
  } finally {
    for (const node of nodes) node.client.close();
    await stopAll();
    for (const prefix of prefixes) await redis!.drop(prefix);
  }
}

/** The node's profile summed up: all of it, and its writes alone (the windows it wrote). */
function profiles(file: string): Pick<StrategyRun, "profile" | "writesProfile"> {
  const profile = JSON.parse(readFileSync(file, "utf8"));
  const windows = JSON.parse(readFileSync(file.replace(/\.cpuprofile$/, ".writes.json"), "utf8"));
  return {
    profile: sharesMarkdown(shares(profile), 25, WRITE_PATH),
    writesProfile: sharesMarkdown(shares(profile, windows), 40, WRITE_PATH),
  };
}

/**
 * The baseline: each write's statements through better-sqlite3 alone, in this process, on
 * a fresh copy of the database: the old row read and the statement in one IMMEDIATE
 * transaction, as the source does (for a user's delete, its orders read first).
 */
class BareSql {
  readonly samples = newSamples();
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();

  constructor(template: string) {
    const path = join(makeTmpDir(), `bare-${Math.random().toString(36).slice(2)}.db`);
    copyFileSync(template, path);
    this.#db = new Database(path);
    this.#db.pragma("journal_mode = WAL");
    this.#db.pragma("foreign_keys = ON");
  }

  /** Runs a write's statements; `measured`: records their CPU (else only keeps in step). */
  run(op: WriteOp, body: Record<string, unknown> | undefined, measured = true): void {
    const started = process.cpuUsage();
    this.#db
      .transaction(() => {
        if (op.method === "POST") {
          const names = Object.keys(body!);
          this.#prepared(
            `INSERT INTO ${op.table} (${names.map((n) => `"${n}"`).join(", ")}) VALUES (${names.map(() => "?").join(", ")}) RETURNING *`,
          ).get(...names.map((n) => body![n]));
          return;
        }
        this.#prepared(`SELECT * FROM ${op.table} WHERE id = ?`).get(op.id);
        if (op.method === "PATCH") {
          const names = Object.keys(body!);
          this.#prepared(
            `UPDATE ${op.table} SET ${names.map((n) => `"${n}" = ?`).join(", ")} WHERE id = ? RETURNING *`,
          ).get(...names.map((n) => body![n]), op.id);
          return;
        }
        if (op.table === "users")
          this.#prepared("SELECT * FROM orders WHERE userId = ?").all(op.id);
        this.#prepared(`DELETE FROM ${op.table} WHERE id = ? RETURNING *`).get(op.id);
      })
      .immediate();
    if (!measured) return;
    const used = process.cpuUsage(started);
    this.samples.get(kindOf(op))!.push(used.user + used.system);
  }

  close(): void {
    this.#db.close();
  }

  #prepared(sql: string): Database.Statement {
    let s = this.#statements.get(sql);
    if (!s) {
      s = this.#db.prepare(sql);
      this.#statements.set(sql, s);
    }
    return s;
  }
}

/**
 * `n` lists of users without an equality filter, each a window of five from a user's id on
 * (`id[gte]`), cycling through the ids with a longer window each round past the last.
 */
function coldLists(users: readonly { id: string }[], n: number): string[] {
  const ids = users.map((u) => u.id).sort();
  return Array.from(
    { length: n },
    (_, i) =>
      `/v1/users?id[gte]=${encodeURIComponent(ids[i % ids.length]!)}&limit=${5 + Math.floor(i / ids.length)}`,
  );
}

/** `n` lists every user insert reaches: the newest users, windows of 1 to n. */
function touchedLists(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `/v1/users?sort=-createdAt&limit=${i + 1}`);
}

/** Every write's CPU against the lists cached beside the workload's, per strategy and node. */
function curve(runs: StrategyRun[]): string[] {
  const us = (n: number) => Math.round(n).toLocaleString("en-US");
  const lines = [
    "| strategy | more lists | touched lists | node | every write p50 (us) | mean | user writes p50 | mean | a user's insert p50 | invalidations | patches |",
    "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const run of runs) {
    for (const node of run.nodes) {
      const users = KINDS.filter((k) => k.includes("users")).flatMap((k) =>
        Array(node.writes[k].n).fill(node.writes[k].mean),
      ) as number[];
      const userMean = users.reduce((a, b) => a + b, 0) / Math.max(1, users.length);
      lines.push(
        `| ${run.strategy} | ${run.lists.toLocaleString("en-US")} | ${run.touched.toLocaleString("en-US")} | ${node.code === "this" ? "this" : "before"} | ${us(node.writes.all.p50)} | ${us(node.writes.all.mean)} | ${us(node.writes["update users"].p50)} | ${us(userMean)} | ${us(node.writes["insert users"].p50)} | ${node.invalidations} | ${node.patches} |`,
      );
    }
  }
  return lines;
}

/** The collections from `from` to `to`. */
function gcSince(from: GcTally, to: GcTally): GcTally {
  const less = (a: GcTally["minor"], b: GcTally["minor"]) => ({ n: a.n - b.n, ms: a.ms - b.ms });
  return { minor: less(to.minor, from.minor), major: less(to.major, from.major) };
}

function gcText({ minor, major }: GcTally): string {
  const ms = (n: number) => Math.round(n).toLocaleString("en-US");
  return `${minor.n} scavenges (${ms(minor.ms)} ms) and ${major.n} pauses of full collections, their incremental steps and weak callbacks (${ms(major.ms)} ms)`;
}

/** Issue 44's measure beside the per-write figure of the same strategy and lists. */
function ratioTable(measures: RatioMeasure[], runs: StrategyRun[]): string[] {
  const us = (n: number) => Math.round(n).toLocaleString("en-US");
  const pct = (n: number) => `${(n * 100).toFixed(1)}%`;
  const [lo, hi] = options.ratios!.map((r) => `${r * 100}%`);
  const lines = [
    `| strategy | more lists | touched | CPU per request at ${lo} (us) | writes | hit rate | at ${hi} (us) | writes | hit rate | **a write** (us) | in requests at ${lo} | over the nominal ${round((options.ratios![1] - options.ratios![0]) * 100, 1)} points | a write measured one by one, mean (p50) |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const m of measures) {
    const [a, b] = m.runs;
    const one = runs
      .find((r) => r.strategy === m.strategy && r.lists === m.lists && r.touched === m.touched)
      ?.nodes.find((n) => n.code === m.code)?.writes.all;
    const reads = (r: RatioRun) => Math.max(1, r.requests - r.writes);
    lines.push(
      `| ${m.strategy}${m.code === "this" ? "" : ", --against"} | ${m.lists.toLocaleString("en-US")} | ${m.touched.toLocaleString("en-US")} | ${us(a.perRequestUs)} | ${pct(a.writes / a.requests)} | ${pct(a.hits / reads(a))} | ${us(b.perRequestUs)} | ${pct(b.writes / b.requests)} | ${pct(b.hits / reads(b))} | **${us(m.writeUs)}** | ${(m.writeUs / a.perRequestUs).toFixed(1)} | ${us(m.writeUsNominal)} | ${one ? `${us(one.mean)} (${us(one.p50)})` : "–"} |`,
    );
  }
  lines.push("");
  if (measures.some((m) => m.runs[1].split)) lines.push(...splitTable(measures), "");
  for (const m of measures) {
    for (const r of m.runs) {
      lines.push(
        `${m.strategy}${m.code === "this" ? "" : ", --against"}, ${m.lists.toLocaleString("en-US")} more lists, ${m.touched.toLocaleString("en-US")} touched, at ${r.ratio * 100}%: ${r.requests.toLocaleString("en-US")} requests, node CPU ${us(r.cpuUs / 1000)} ms${r.otherThreadsUs === undefined ? "" : ` (${us(r.otherThreadsUs / 1000)} ms of it on threads other than the main one)`}${r.gc ? `; on its main thread ${gcText(r.gc)}` : ""}; ${r.invalidations} invalidations, ${r.patches} patches, ${r.rehydrations} rehydrations; misses by read: ${
          Object.entries(r.missesByShape)
            .sort((x, y) => y[1] - x[1])
            .map(([shape, n]) => `${n} \`${shape}\``)
            .join(", ") || "none"
        }.`,
        "",
      );
    }
  }
  return lines;
}

/**
 * With --split, the measure in its parts. With W_l, W_h a write's own CPU at the lower
 * share l and the higher h, and R_l, R_h a read's, a request at share w costs
 * w·W + (1 - w)·R, so the measure is W_h - R_l + (1 - h)·(R_h - R_l) / (h - l)
 * + l·(W_h - W_l) / (h - l): a write's own CPU, less the read it stands in for, plus what
 * the reads cost more at the higher share, spread over its extra writes, plus what the
 * lower share's writes cost less (a write among many reads finds the write path colder).
 */
function splitTable(measures: RatioMeasure[]): string[] {
  const us = (n: number) => Math.round(n).toLocaleString("en-US");
  const [lo, hi] = options.ratios!.map((r) => `${r * 100}%`);
  const lines = [
    `With --split, each write's CPU asked for before and after it as well (the asks' cost, ${measures.map((m) => us(m.runs[1].split?.askUs ?? 0)).join(" and ")} us, taken out): the measure in its parts.`,
    "",
    `| strategy | a write's own CPU at ${lo} (us) | at ${hi} (us) | a read at ${lo} (us) | a read at ${hi} (us) | the reads' extra, spread over the extra writes (us) | the writes' difference, weighted (us) | W - R + those (us) | **a write**, as above (us) |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const m of measures) {
    const [a, b] = m.runs;
    if (!a.split || !b.split) continue;
    const share = (r: RatioRun) => r.writes / r.requests;
    const apart = share(b) - share(a);
    const extra = ((1 - share(b)) * (b.split.readUs - a.split.readUs)) / apart;
    // What the writes at the lower share cost more (or less) than at the higher, weighed
    // by how many there are: 0 where a write costs the same at both.
    const writesApart = (share(a) * (b.split.writeUs - a.split.writeUs)) / apart;
    const sum = b.split.writeUs - a.split.readUs + extra + writesApart;
    lines.push(
      `| ${m.strategy}${m.code === "this" ? "" : ", --against"} | ${us(a.split.writeUs)} | ${us(b.split.writeUs)} | ${us(a.split.readUs)} | ${us(b.split.readUs)} | ${us(extra)} | ${us(writesApart)} | ${us(sum)} | **${us(m.writeUs)}** |`,
    );
  }
  return lines;
}

function markdown(
  runs: StrategyRun[],
  measures: RatioMeasure[],
  cut: { prefix: Op[] },
  seconds: number,
) {
  const us = (n: number) => Math.round(n).toLocaleString("en-US");
  const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}` : "–");
  const lines: string[] = [];
  for (const run of runs) {
    const [self, against] = run.nodes as [NodeRun, NodeRun | undefined];
    lines.push(
      `### ${run.strategy === "edgecache" ? "Without rehydration (edgecache)" : "With rehydration (edgecache-rehydrate)"}${options.lists.length > 1 || run.lists > 0 ? `, ${run.lists.toLocaleString("en-US")} more lists` : ""}${options.touched.length > 1 || run.touched > 0 ? `, ${run.touched.toLocaleString("en-US")} touched` : ""}`,
      "",
      against
        ? "| write | n | before p50 (us) | before mean | after p50 (us) | after p90 | after mean | after ÷ before, p50 | mean | bare SQL p50 | after ÷ bare SQL, p50 |"
        : "| write | n | node CPU p50 (us) | p90 | mean | bare SQL p50 | ÷ bare SQL, p50 | ÷ a hit, p50 |",
      against
        ? "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        : "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const kind of [...KINDS, "all"] as const) {
      const w = self.writes[kind];
      const b = run.bareSql[kind];
      const name = kind === "all" ? "**every write**" : kind;
      if (against) {
        const a = against.writes[kind];
        lines.push(
          `| ${name} | ${w.n} | ${us(a.p50)} | ${us(a.mean)} | ${us(w.p50)} | ${us(w.p90)} | ${us(w.mean)} | ${ratio(w.p50, a.p50)} | ${ratio(w.mean, a.mean)} | ${us(b.p50)} | ${ratio(w.p50, b.p50)} |`,
        );
      } else {
        lines.push(
          `| ${name} | ${w.n} | ${us(w.p50)} | ${us(w.p90)} | ${us(w.mean)} | ${us(b.p50)} | ${ratio(w.p50, b.p50)} | ${ratio(w.p50, self.reads.hit.p50)} |`,
        );
      }
    }
    lines.push("");
    if (run.profile) {
      lines.push(
        `Where this checkout's node spent its CPU over the measured requests (V8's CPU profile, sampled every 100 us; reads, writes and the CPU asks alike; the profiler slows the node, so these runs' figures above are not the ones to quote):`,
        "",
        run.profile,
        "The writes alone (the samples from each write's arrival at the node to the CPU ask after it, once its background work is done):",
        "",
        run.writesProfile ?? "",
      );
    }
    for (const node of run.nodes) {
      const name = node.code === "this" ? (against ? "After" : "The node") : "Before";
      lines.push(
        `${name}: a hit ${us(node.reads.hit.p50)} us (p50 of ${node.reads.hit.n}), a miss ${us(node.reads.miss.p50)} us (p50 of ${node.reads.miss.n}); asking for the CPU ${us(node.askUs)} us, subtracted; during the writes ${node.invalidations} invalidations, ${node.patches} patches, ${node.rehydrations} rehydrations.`,
        "",
      );
    }
  }
  const git = gitState();
  return `# Writes: the node's CPU per write, by kind

${new Date().toISOString()}, ${describeCode(git)}${options.against ? ` against the checkout at ${options.againstCommit}` : ""}. Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(" ")} at the end. ${seconds} s in all.

One node: the data API over SQLite with one memory tier${options.cacheFile ? " and a cache file (the SQLite tier, as `edgecache serve` puts one beside its database)" : ""}${options.redis ? ", on Redis (the change log and a shared tier behind memory, under a fresh prefix, as `edgecache serve --redis` wires them)" : ""} (bench/servers/workload-server.ts), over the workload's database (${options.users.toLocaleString("en-US")} users, ${options.orders.toLocaleString("en-US")} orders). It is warmed with every read of the workload's sequence (${options.warm.toLocaleString("en-US")} requests at ${options.ratio * 100}% writes), then with that sequence itself up to its ${options.warmWrites.toLocaleString("en-US")}th write (${cut.prefix.length.toLocaleString("en-US")} requests, unmeasured, so that V8 compiles the write path there and the figures are a warm node's; the database, the bare SQL's copy and the rows' versions follow those writes), then the next ${options.requests.toLocaleString("en-US")} requests of that sequence are sent one at a time. Each write's figure is the node's own CPU (\`process.cpuUsage\`, user + system) from before the request to after it and after the background work it started (rehydration: \`cache.drain()\`), less the cost of asking. ${options.against ? "**before** is a node of the other checkout (--against), sent each request in step with this one (one, then the other), each on its own copy of the database, so the load on the machine at any moment weighs on both alike. " : ""}**bare SQL** is the same statements (the old row read, the write with RETURNING, in one IMMEDIATE transaction; a user's orders read before its delete) through better-sqlite3 alone on a copy of the database, in the driver, in step with the nodes.${options.scan ? " After the warm-up the node also caches a client's start-up scan of the users: two 1,000-row pages, never read again." : ""}${options.lists.some((n) => n > 0) ? " With more lists: that many lists of users without an equality filter cached after the warm-up (`id[gte]=<id>&limit=5`), never read again; a user's write sorts into five at most." : ""}${options.touched.some((n) => n > 0) ? " With touched lists: that many lists of the newest users cached after the warm-up (`sort=-createdAt&limit=<1..n>`), never read again; every user insert enters each of them." : ""}

${measures.length > 0 ? `## Issue 44's measure: CPU per request at ${options.ratios![0] * 100}% and ${options.ratios![1] * 100}% writes\n\nA node per write share, each on the workload's sequence at that share (seed ${options.seed}), warmed alike (every read of its sequence, then the same requests for every node, at ${options.ratio * 100}% writes, up to their ${options.ratioWarmWrites.toLocaleString("en-US")}th write, then every read of its sequence again${options.scan ? ", and the scan's pages" : ""}), then ${options.ratioRequests.toLocaleString("en-US")} requests of each, sent in step (one to each node in turn, one at a time); the node's CPU (\`process.cpuUsage\`, drained) once before them and once after. **a write** is (CPU per request at the higher share - at the lower) / (the difference of the shares the two sequences really have): a write's own CPU, the misses it leaves and the rehydration it starts; **in requests at ${options.ratios![0] * 100}%** is that figure over the CPU of a request at the lower share (its reads, nearly all hits, and its few writes, about a seventh of its CPU), measured in the same run: a machine twice as slow doubles both, so this column compares runs on different machines or minutes; the next divides by the nominal difference, as the issue states it. Beside it, the same strategy's write measured one by one in the runs below.\n\n${ratioTable(measures, runs).join("\n")}\n` : ""}${runs.length > options.strategies.length ? `## Every write against the lists cached\n\n${curve(runs).join("\n")}\n\n` : ""}${lines.join("\n")}
Command:

\`\`\`sh
${commandLine("bench:writes")}
\`\`\`
`;
}

const redis = options.redis === undefined ? undefined : new BenchRedis(options.redis);

await runBench(async () => {
  await redis?.check();
  const started = Date.now();
  const log = (line: string) => console.log(line);
  const { template, data } = prepareDatabase(options, log);
  // A longer sequence starts as the shorter one: the same seed draws the same requests.
  const warm = generateSequence(data, {
    requests: Math.max(options.warm, sequenceLength(options.ratio, options.requests)),
    writeRatio: options.ratio,
    seed: options.seed,
  });
  const cut = afterWarmWrites(warm, options.requests);
  const scan = options.scan ? ["/v1/users?limit=1000", "/v1/users?limit=1000&offset=1000"] : [];
  const runs: StrategyRun[] = [];
  const measures: RatioMeasure[] = [];
  const sizes = options.lists.flatMap((lists) =>
    options.touched.map((touched) => ({ lists, touched })),
  );
  for (const { lists, touched } of sizes) {
    const paths = [...scan, ...coldLists(data.users, lists), ...touchedLists(touched)];
    for (const strategy of options.strategies) {
      const cold = { paths, lists, touched };
      const run = await measureStrategy(template, strategy, warm, cut, cold);
      runs.push(run);
      for (const node of run.nodes) {
        log(
          `${strategy}, ${lists} more lists, ${touched} touched (${node.code}): every write p50 ${node.writes.all.p50} us, mean ${node.writes.all.mean} us (n ${node.writes.all.n}), hit ${node.reads.hit.p50} us, miss ${node.reads.miss.p50} us`,
        );
        for (const kind of KINDS) {
          const w = node.writes[kind];
          log(`  ${kind}: p50 ${w.p50} us, p90 ${w.p90} us, mean ${w.mean} us (n ${w.n})`);
        }
      }
      log(`  bare SQL: every write p50 ${run.bareSql.all.p50} us`);
      if (!options.ratios) continue;
      for (const measure of await measureRatios(template, data, strategy, cold)) {
        measures.push(measure);
        const whose = measure.code === "this" ? "" : " (--against)";
        for (const r of measure.runs) {
          log(
            `  at ${r.ratio * 100}% writes${whose}: ${round(r.perRequestUs, 0)} us per request (${r.writes} writes of ${r.requests}, ${r.hits} hits)${r.split ? `; a write's own ${round(r.split.writeUs, 0)} us, a read ${round(r.split.readUs, 1)} us` : ""}`,
          );
        }
        log(
          `  a write, from the difference${whose}: ${round(measure.writeUs, 0)} us (over the nominal shares ${round(measure.writeUsNominal, 0)} us), ${(measure.writeUs / measure.runs[0].perRequestUs).toFixed(1)} requests at ${measure.runs[0].ratio * 100}%`,
        );
      }
    }
  }
  const seconds = Math.round((Date.now() - started) / 1000);
  const path = writeResults(
    out,
    {
      date: new Date().toISOString(),
      command: commandLine("bench:writes"),
      git: gitState(),
      node: process.version,
      loadavg: loadavg(),
      options: { ...options },
      runs,
      measures,
    },
    markdown(runs, measures, cut, seconds),
  );
  log(`wrote ${path}.json and .md in ${seconds} s`);
  redis?.close();
});
