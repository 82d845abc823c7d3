/**
 * The differential run: a seeded client against the cached app (in this process) and the
 * uncached one (another process), both on one SQLite file. Every read goes to both and is
 * compared; each write goes to one of them (a share `other` to the other process, around
 * the cache); every acknowledged write is read back at the end, through the cached app and
 * in the file. `runBaseline` sends the same operations to an uncached app alone, for the
 * statements the app sends without a cache.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import type { DrizzleCacheStats } from "../../../src/drizzle/index.ts";
import { createConduit } from "../app.ts";
import { openDatabase } from "../migrate.ts";
import { Random } from "../random.ts";
import { seedDatabase } from "../seed.ts";
import { abbreviated, around, firstDifference, sameReply } from "./compare.ts";
import { MissCensus } from "./misses.ts";
import { type ClientMix, nextOperation, type Operation, type Reply } from "./ops.ts";
import { type Failure, readBackInFile, readBackThroughApp } from "./readback.ts";
import { appTarget, type OtherProcess, startOtherProcess, type Target } from "./targets.ts";
import { World } from "./world.ts";

/** A read differing within this long after a write by the other process may be capture's lag, ms. */
const LAG_WINDOW_MS = 1000;
/** How long such a read is asked again before it counts as differing, ms. */
const WAIT_MS = 500;
const POLL_MS = 20;
const SAMPLES = 5;
const BIN = resolve(import.meta.dirname, "../../../bin/edgecache.js");

export interface DifferentialOptions {
  ops: number;
  /** The share of operations that are writes. */
  writes: number;
  /** Which reads the client makes (uniform by default; see ops.ts). */
  client?: ClientMix;
  /** The share of writes sent to the other process. */
  other: number;
  seed: number;
  /** Install change capture in the file first (`npx edgecache capture install --db`). */
  capture: boolean;
  log?: (line: string) => void;
}

export interface DifferingRead {
  op: number;
  kind: string;
  route: string;
  user: number | undefined;
  /** Where the bodies first differ. */
  difference: string;
  cached: string;
  uncached: string;
  /** The last write before it, and who made it. */
  lastWrite: string;
  /** Whether it was asked again for WAIT_MS (a write by the other process was recent). */
  waited: boolean;
}

export interface DifferentialReport {
  options: Omit<DifferentialOptions, "log">;
  reads: number;
  /** Reads that differed and did not agree in time (or at once, with no write around the cache). */
  differing: number;
  /** Reads that differed after a write by the other process, then agreed within WAIT_MS. */
  transient: number;
  differingByKind: Record<string, number>;
  samples: DifferingRead[];
  writes: { cached: number; other: number; failed: Failure[] };
  /** Acknowledged writes missing from the file on a fresh connection at the end. */
  lost: Failure[];
  /** Acknowledged writes the cached app did not show at the end. */
  unseen: Failure[];
  readBack: { api: number; file: number };
  serverErrors: number;
  hits: number;
  misses: number;
  hitRate: number | undefined;
  /** `getStats().groupPatches`: results kept after writes by a statement for their changed rows. */
  groupPatches?: {
    patched: number;
    told?: number;
    outside?: number;
    counted?: number;
    slid?: number;
    followed?: number;
    statements: number;
    shared: number;
    dropped: number;
    answered: number;
  };
  /**
   * Why the cache's lookups missed (see misses.ts), largest class first: the class, its
   * misses, and of an invalidated class those whose fresh result equalled the removed one.
   */
  missClasses: [string, number, number][];
  /**
   * Per select (its SQL, as `shapes[i].sql`): its lookups that were not the first of their
   * SQL and parameters, the hits among them, and its misses by class.
   */
  bySql: Record<string, { repeats: number; repeatHits: number; misses: Record<string, number> }>;
  /** Selects the app sent without asking the cache first (not through Drizzle's cache). */
  readsWithoutLookup: number;
  statements: {
    /** The app's own SQL, on the cached app's client. */
    app: number;
    /** edgecache's statements seen on the app's client (its tables, the catalog). */
    edgecacheOnAppClient: number;
    /** `getStats().capture.statements`, when edgecache reports it: on its own connection. */
    edgecacheOwn: number | undefined;
    /** The app's statements for the writes the other process made. */
    otherWrites: number;
  };
  /**
   * `getStats().shapes` at the end: each query shape the app registered, how exactly it is
   * followed and why not finer, its lookups (hits, misses) and results stored.
   */
  shapes: DrizzleCacheStats["shapes"];
  /** `getStats().writes` at the end: "capture" when capture was followed. */
  writesMode: string;
  captureTables: string[];
  seconds: number;
}

interface RunState {
  random: Random;
  world: World;
  lastOtherWrite: number;
  lastWrite: string;
}

function tempFile(): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), "conduit-diff-"));
  return { dir, file: join(dir, "conduit.db") };
}

async function seededFile(file: string, seed: number): Promise<World> {
  const client = await openDatabase(`file:${file}`);
  try {
    return new World(await seedDatabase(client, seed));
  } finally {
    client.close();
  }
}

export async function installCapture(file: string): Promise<void> {
  await promisify(execFile)(process.execPath, [BIN, "capture", "install", "--db", file]);
}

export async function runDifferential(options: DifferentialOptions): Promise<DifferentialReport> {
  const started = performance.now();
  const { dir, file } = tempFile();
  try {
    const world = await seededFile(file, options.seed);
    if (options.capture) await installCapture(file);
    const other = await startOtherProcess(file);
    try {
      const report = await runCached(options, world, file, other);
      await other.stop();
      const inFile = await readBackFile(world, file);
      return {
        ...report,
        lost: inFile.failures,
        readBack: { ...report.readBack, file: inFile.checked },
        seconds: (performance.now() - started) / 1000,
      };
    } finally {
      await other.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The run through the cached app, up to its read-back; the app is closed after it. */
async function runCached(
  options: DifferentialOptions,
  world: World,
  file: string,
  other: OtherProcess,
): Promise<Omit<DifferentialReport, "lost" | "seconds">> {
  const conduit = await createConduit({ url: `file:${file}`, cached: true });
  try {
    const census = new MissCensus(conduit.cache!);
    const cached = appTarget(conduit.app as never);
    const report = await drive(options, world, cached, other, options.log ?? (() => {}));
    const api = await readBackThroughApp(world, cached);
    const stats = conduit.cache!.getStats();
    const own = (stats.capture as { statements?: number } | undefined)?.statements;
    return {
      ...report,
      unseen: api.failures,
      readBack: { api: api.checked, file: 0 },
      hits: stats.hits,
      misses: stats.misses,
      hitRate: stats.hits + stats.misses > 0 ? stats.hits / (stats.hits + stats.misses) : undefined,
      groupPatches: stats.groupPatches,
      missClasses: census.sorted(),
      bySql: Object.fromEntries(census.bySql),
      readsWithoutLookup: (conduit.statements.reads ?? 0) - stats.misses,
      statements: {
        ...report.statements,
        app: conduit.statements.app,
        edgecacheOnAppClient: conduit.statements.edgecache,
        edgecacheOwn: own,
      },
      shapes: stats.shapes,
      writesMode: stats.writes,
      captureTables: stats.capture?.tables ?? [],
    };
  } finally {
    await conduit.close();
  }
}

async function readBackFile(world: World, file: string) {
  const client = await openDatabase(`file:${file}`);
  try {
    return await readBackInFile(world, client);
  } finally {
    client.close();
  }
}

type Driven = Omit<
  DifferentialReport,
  | "unseen"
  | "lost"
  | "readBack"
  | "hits"
  | "misses"
  | "hitRate"
  | "groupPatches"
  | "missClasses"
  | "bySql"
  | "readsWithoutLookup"
  | "shapes"
  | "writesMode"
  | "captureTables"
  | "seconds"
>;

async function drive(
  options: DifferentialOptions,
  world: World,
  cached: Target,
  other: Target,
  log: (line: string) => void,
): Promise<Driven> {
  const state: RunState = {
    random: new Random(options.seed),
    world,
    lastOtherWrite: -Infinity,
    lastWrite: "none",
  };
  const out: Driven = {
    options: {
      ops: options.ops,
      writes: options.writes,
      ...(options.client && { client: options.client }),
      other: options.other,
      seed: options.seed,
      capture: options.capture,
    },
    reads: 0,
    differing: 0,
    transient: 0,
    differingByKind: {},
    samples: [],
    writes: { cached: 0, other: 0, failed: [] },
    serverErrors: 0,
    statements: { app: 0, edgecacheOnAppClient: 0, edgecacheOwn: undefined, otherWrites: 0 },
  };
  for (let i = 0; i < options.ops; i++) {
    const op = nextOperation(world, state.random, options.writes, options.client);
    const toOther = state.random.chance(options.other);
    if (op.write) {
      await write(op, toOther ? other : cached, toOther, state, out);
    } else {
      await read(i, op, cached, other, state, out);
    }
    if ((i + 1) % 500 === 0) {
      log(
        `${i + 1}/${options.ops}: ${out.reads} reads, ${out.differing} differing, ${out.transient} transient`,
      );
    }
  }
  return out;
}

async function write(
  op: Operation,
  target: Target,
  toOther: boolean,
  state: RunState,
  out: Driven,
) {
  const reply = await target.send(op.request);
  if (reply.status >= 500) out.serverErrors++;
  if (toOther) {
    out.writes.other++;
    out.statements.otherWrites += reply.statements;
    state.lastOtherWrite = performance.now();
  } else {
    out.writes.cached++;
  }
  state.lastWrite = `${op.kind} ${op.request.method} ${op.request.path} through the ${toOther ? "other process" : "cached app"}`;
  if (reply.status !== op.write!.expect) {
    out.writes.failed.push({
      what: state.lastWrite,
      got: `${reply.status} ${abbreviated(reply.body, 200)}`,
    });
    return;
  }
  op.write!.apply(reply, state.world);
}

async function read(
  i: number,
  op: Operation,
  cached: Target,
  reference: Target,
  state: RunState,
  out: Driven,
) {
  out.reads++;
  const both = () => Promise.all([cached.send(op.request), reference.send(op.request)]);
  let [a, b] = await both();
  if (a.status >= 500 || b.status >= 500) out.serverErrors++;
  if (sameReply(a, b)) return;
  const waited = performance.now() - state.lastOtherWrite < LAG_WINDOW_MS;
  if (waited) {
    const until = performance.now() + WAIT_MS;
    while (performance.now() < until) {
      await new Promise((done) => setTimeout(done, POLL_MS));
      [a, b] = await both();
      if (sameReply(a, b)) {
        out.transient++;
        return;
      }
    }
  }
  out.differing++;
  out.differingByKind[op.kind] = (out.differingByKind[op.kind] ?? 0) + 1;
  if (out.samples.length < SAMPLES) out.samples.push(sample(i, op, a, b, state, waited));
}

function sample(
  i: number,
  op: Operation,
  a: Reply,
  b: Reply,
  state: RunState,
  waited: boolean,
): DifferingRead {
  const difference =
    a.status === b.status
      ? (firstDifference(a.body, b.body) ?? "")
      : `status ${a.status} vs ${b.status}`;
  return {
    op: i,
    kind: op.kind,
    route: `${op.request.method} ${op.request.path}`,
    user: op.request.user,
    difference,
    cached: `${a.status} ${abbreviated(around(a.body, difference))}`,
    uncached: `${b.status} ${abbreviated(around(b.body, difference))}`,
    lastWrite: state.lastWrite,
    waited,
  };
}

/** The same operations against an uncached app alone: what the app sends without a cache. */
export async function runBaseline(
  options: Pick<DifferentialOptions, "ops" | "writes" | "seed" | "client">,
): Promise<{ statements: number; floor: number; failedWrites: number; seconds: number }> {
  const started = performance.now();
  const { dir, file } = tempFile();
  try {
    const world = await seededFile(file, options.seed);
    const conduit = await createConduit({ url: `file:${file}`, cached: false });
    const target = appTarget(conduit.app as never);
    const random = new Random(options.seed);
    let failedWrites = 0;
    for (let i = 0; i < options.ops; i++) {
      const op = nextOperation(world, random, options.writes, options.client);
      random.chance(0.5); // where the write would go: drawn as in runDifferential
      const reply = await target.send(op.request);
      if (!op.write) continue;
      if (reply.status === op.write.expect) op.write.apply(reply, world);
      else failedWrites++;
    }
    await conduit.close();
    return {
      statements: conduit.statements.app + conduit.statements.edgecache,
      floor: conduit.statements.floor ?? 0,
      failedWrites,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
