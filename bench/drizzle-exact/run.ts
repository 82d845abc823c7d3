/**
 * bench:drizzle-exact's runs: the workload benchmark's data and request sequences
 * (bench/workload/generate.ts) made as Drizzle queries, in this process or (D1) in a Worker
 * inside workerd, on one driver, under one caching mode, with every other write made around the ORM (straight SQL on
 * another connection), each read judged by the workload's stale-read oracle.
 */
import type { DrizzleCacheStats } from "../../src/drizzle/index.ts";
import type { InitialData, Op, ReadOp, WriteOp } from "../workload/generate.ts";
import { type Finding, type ReadSpec, StaleOracle, type WriteToken } from "../workload/oracle.ts";
import { Locks } from "../workload/run.ts";
import { pctLabel, prepareDatabase, round, sequences } from "../workload/workload.ts";
import type { Mode } from "./app.ts";
import { type Contestant, openInProcess } from "./contestant.ts";
import { openOnD1 } from "./d1.ts";
import { type Driver, libsqlDatabase, postgresJsDatabase } from "./databases.ts";
import { type Orm, openOrm } from "./orms.ts";

export { MODES, type Mode } from "./app.ts";
export { ORMS, type Orm } from "./orms.ts";

/**
 * The drivers each ORM runs on here: Drizzle on libSQL, postgres.js and D1; Kysely and
 * Prisma on a SQLite file through better-sqlite3, on PostgreSQL through node-postgres, and
 * on D1 (kysely-d1's dialect, @prisma/adapter-d1).
 */
export const ORM_DRIVERS: Record<Orm, readonly Driver[]> = {
  drizzle: ["libsql", "postgres-js", "d1"],
  kysely: ["better-sqlite3", "pg", "d1"],
  prisma: ["better-sqlite3", "pg", "d1"],
};

/** The modes each ORM is measured in: the Upstash-style model is Drizzle's. */
function modesOf(orm: Orm, modes: readonly Mode[]): Mode[] {
  return orm === "drizzle" ? [...modes] : modes.filter((m) => m !== "table-keyed");
}

export interface ExactOptions {
  users: number;
  orders: number;
  requests: number;
  writeRatios: number[];
  connections: number;
  seed: number;
  /** The ORMs whose applications run (Drizzle alone by default). */
  orms?: readonly Orm[];
  drivers: readonly Driver[];
  modes: readonly Mode[];
  /** PostgreSQL URL (the database the postgres-js runs make their schemas in). */
  pg: string;
  /** PostgreSQL reads order text `collate "C"`, as docs/guides/drizzle.md advises. */
  pgCollateC: boolean;
  /** One write in this many is made around the ORM (2: half). */
  aroundEvery: number;
  log?: (line: string) => void;
}

export interface ExactRecord {
  orm: Orm;
  driver: Driver;
  mode: Mode;
  writeRatio: number;
  requests: number;
  reads: number;
  writes: number;
  /** Writes made around the ORM. */
  aroundWrites: number;
  /** Reads that ran no statement on the database. */
  hitRate: number;
  staleReads: number;
  /** The application's statements during the sequence (selects on a miss, writes, those around the ORM), per request. */
  dbQueriesPerRequest: number;
  /**
   * Capture's statements on the application's client (its change table, the catalog), per
   * request: all of them on libSQL; on postgres.js and D1 only the catalog's (postgres.js
   * drains its change table on a connection of its own, D1's Durable Object through a
   * binding of its own).
   */
  captureQueriesPerRequest: number;
  /** Share of the cached entries a write leaves in place: 1 - removed / entries present at each write. */
  entriesKeptPerWrite: number;
  /** Entries cached, averaged over the writes' starts. */
  entriesMean: number;
  /** Entries removed per write. */
  removedPerWrite: number;
  /** Writes that failed (the oracle judges those rows no more). */
  errors: number;
  /** Reads that sent a statement, by the kind of read (`readKind`). */
  missesByKind: Record<string, number>;
  /** edgecache: results not stored since a write may have made them stale (the write fence). */
  fenced?: number;
  /** edgecache: cached results patched in place after a captured write (`getStats().patched`). */
  patched?: number;
  elapsedMs: number;
  /**
   * edgecache's own figures: how selects were registered, capture's lag (ms; on D1 the
   * Durable Object's, from the trigger's record to the log's).
   */
  registrations?: DrizzleCacheStats["registrations"];
  captureLagP50?: number;
  captureLagP99?: number;
  staleSamples: { spec: ReadSpec; findings: Finding[] }[];
}

export async function runDrizzleExact(options: ExactOptions): Promise<ExactRecord[]> {
  const log = options.log ?? (() => {});
  const records: ExactRecord[] = [];
  // The generated SQLite database: libSQL runs copy it, postgres-js runs seed the same rows.
  const { template, data } = prepareDatabase(options, log);
  let n = 0;
  for (const orm of options.orms ?? ["drizzle"]) {
    for (const driver of options.drivers.filter((d) => ORM_DRIVERS[orm].includes(d))) {
      for (const [writeRatio, ops] of sequences(data, options)) {
        for (const mode of modesOf(orm, options.modes)) {
          const c = await open(orm, driver, mode, `${mode}_${++n}`, template, options);
          try {
            const record = await runOne(c, driver, mode, writeRatio, ops, data, options);
            records.push({ orm, ...record });
            log(
              `${orm} on ${driver}, ${pctLabel(writeRatio)} writes, ${mode}: hit rate ${(record.hitRate * 100).toFixed(1)}%, stale ${record.staleReads}, kept/write ${(record.entriesKeptPerWrite * 100).toFixed(2)}%, ${record.dbQueriesPerRequest.toFixed(3)} queries/request`,
            );
          } finally {
            await c.close();
          }
        }
      }
    }
  }
  return records;
}

/** `orm`'s application in `mode` over a fresh copy of the data on `driver`, named `name`. */
async function open(
  orm: Orm,
  driver: Driver,
  mode: Mode,
  name: string,
  template: string,
  options: ExactOptions,
): Promise<Contestant> {
  if (driver === "d1") return openOnD1(template, mode, orm);
  const db =
    driver === "libsql" || driver === "better-sqlite3"
      ? await libsqlDatabase(template, name)
      : await postgresJsDatabase(options.pg, name, options, options.pgCollateC);
  if (orm === "drizzle") return openInProcess(db, mode);
  if (mode === "table-keyed") throw new Error(`[bench] ${orm}: no Upstash-style mode`);
  return openOrm(orm, db, mode, options.pgCollateC);
}

async function runOne(
  c: Contestant,
  driver: Driver,
  mode: Mode,
  writeRatio: number,
  ops: Op[],
  data: InitialData,
  options: ExactOptions,
): Promise<Omit<ExactRecord, "orm">> {
  // Warmed with every read of the sequence once, as bench:workload warms its caches.
  const reads = new Map<string, ReadOp>();
  for (const op of ops) if (op.kind === "read") reads.set(op.path, op);
  await pool([...reads.values()], options.connections, async (op) => {
    await c.read(op.spec);
  });
  await c.catchUp();

  const oracle = new StaleOracle({
    users: data.users.map((u) => u.id),
    orders: data.orders.map((o) => o.id),
  });
  const out = {
    reads: 0,
    writes: 0,
    around: 0,
    hits: 0,
    stale: 0,
    errors: 0,
    entriesAtWrites: 0,
    misses: {} as Record<string, number>,
    samples: [] as ExactRecord["staleSamples"],
  };
  const locks = new Locks();
  const before = await c.counts();
  let writesSeen = 0;
  const started = performance.now();
  await pool(ops, options.connections, async (op) => {
    if (op.kind === "read") {
      const begun = performance.now();
      const { value, statements: sent } = await c.read(op.spec);
      const ended = performance.now();
      out.reads++;
      if (sent === 0) out.hits++;
      else out.misses[readKind(op.spec)] = (out.misses[readKind(op.spec)] ?? 0) + 1;
      const findings = oracle.judge(op.spec, begun, ended, value.status, value.body);
      if (findings.length > 0) {
        out.stale++;
        if (out.samples.length < 5) out.samples.push({ spec: op.spec, findings });
      }
      return;
    }
    const around = writesSeen++ % options.aroundEvery === 0;
    const release = locks.take(op.locks);
    try {
      await release.ready;
      out.writes++;
      if (around) out.around++;
      out.entriesAtWrites += await c.entries();
      if (!(await write(c, op, oracle, around))) out.errors++;
    } finally {
      release.done();
    }
  });
  const elapsedMs = performance.now() - started;
  const after = await c.counts();
  const removed = after.removed - before.removed;
  const requests = out.reads + out.writes;
  const stats = after.stats;
  const fenced = stats ? stats.fenced - (before.stats?.fenced ?? 0) : undefined;
  const patched = stats ? stats.patched - (before.stats?.patched ?? 0) : undefined;
  return {
    driver,
    mode,
    writeRatio,
    requests,
    reads: out.reads,
    writes: out.writes,
    aroundWrites: out.around,
    hitRate: round(out.hits / Math.max(1, out.reads), 4),
    staleReads: out.stale,
    dbQueriesPerRequest: round((after.statements - before.statements) / Math.max(1, requests), 4),
    captureQueriesPerRequest: round((after.capture - before.capture) / Math.max(1, requests), 4),
    entriesKeptPerWrite: round(1 - removed / Math.max(1, out.entriesAtWrites), 5),
    entriesMean: Math.round(out.entriesAtWrites / Math.max(1, out.writes)),
    removedPerWrite: round(removed / Math.max(1, out.writes), 2),
    errors: out.errors,
    missesByKind: out.misses,
    ...(fenced !== undefined && { fenced }),
    ...(patched !== undefined && { patched }),
    elapsedMs: Math.round(elapsedMs),
    ...(stats && { registrations: stats.registrations }),
    ...(stats?.capture?.lagP50 !== undefined && {
      captureLagP50: round(stats.capture.lagP50, 2),
    }),
    ...(stats?.capture?.lagP99 !== undefined && {
      captureLagP99: round(stats.capture.lagP99, 2),
    }),
    staleSamples: out.samples,
  };
}

/** The workload's name of a read's kind (bench/workload/generate.ts). */
export function readKind(spec: ReadSpec): string {
  if (spec.kind === "item") return spec.view ? "view item" : `${spec.table.slice(0, -1)} item`;
  if (spec.view) return "join view list";
  if (!spec.filter) return "sorted page";
  if (spec.filter.op === "prefix") return "prefix list";
  return spec.table === "orders" ? "filtered sorted page" : "filtered list";
}

/** Runs `work` over `items`, `connections` at a time, in order of dispatch. */
async function pool<T>(items: T[], connections: number, work: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: connections }, worker));
}

/**
 * One write, through Drizzle or around it, told to the oracle: acknowledged once it has
 * returned (capture: once capture has applied it), with the row a fresh query reads then.
 * Returns false when it failed.
 */
async function write(
  c: Contestant,
  op: WriteOp,
  oracle: StaleOracle,
  around: boolean,
): Promise<boolean> {
  const values =
    op.method === "PATCH" ? { ...op.body, version: oracle.nextVersion(op.table, op.id) } : op.body;
  const at = performance.now();
  const tokens: WriteToken[] = [oracle.issued(op.table, op.id, at)];
  for (const id of op.cascade ?? []) tokens.push(oracle.issued("orders", id, at));
  try {
    await c.write(op, values, around);
  } catch (err) {
    const ended = performance.now();
    for (const t of tokens) oracle.failed(t, ended);
    console.warn(`[bench] ${op.method} ${op.table} ${op.id} failed:`, (err as Error).message);
    return false;
  }
  const ended = performance.now();
  const row = op.method === "DELETE" ? undefined : await c.fresh(op.table, op.id);
  // Only a delete has more than one token (the orders it cascades to).
  for (const t of tokens) oracle.acked(t, ended, row);
  return true;
}
