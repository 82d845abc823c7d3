/**
 * bench:drizzle-exact's runs: the workload benchmark's data and request sequences
 * (bench/workload/generate.ts) made as Drizzle queries in this process, on one driver,
 * under one caching mode, with every other write made around the ORM (straight SQL on
 * another connection), each read judged by the workload's stale-read oracle.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { asc, desc, eq, inArray, like } from "drizzle-orm";
import {
  type DrizzleCacheStats,
  drizzleCache,
  type EdgecacheDrizzleCache,
  withTransactions,
} from "../../src/drizzle/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";
import type { InitialData, Op, ReadOp, WriteOp } from "../workload/generate.ts";
import {
  type Finding,
  type ReadSpec,
  type Row,
  StaleOracle,
  type WriteToken,
} from "../workload/oracle.ts";
import { Locks } from "../workload/run.ts";
import { pctLabel, prepareDatabase, round, sequences } from "../workload/workload.ts";
import {
  type AnyDb,
  type BenchDatabase,
  type Driver,
  libsqlDatabase,
  postgresJsDatabase,
  type StatementCounter,
} from "./databases.ts";
import { TableKeyedCache } from "./table-keyed-cache.ts";

/**
 * `capture`: edgecache/drizzle following change capture (`withTransactions(db)`);
 * `tables`: edgecache/drizzle at table level (`withTransactions(db, { capture: false })`);
 * `table-keyed`: the Upstash-style model (TableKeyedCache).
 */
export const MODES = ["capture", "tables", "table-keyed"] as const;
export type Mode = (typeof MODES)[number];

export interface ExactOptions {
  users: number;
  orders: number;
  requests: number;
  writeRatios: number[];
  connections: number;
  seed: number;
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
   * request: all of them on libSQL; on postgres.js only the catalog's (it drains its change
   * table on a connection of its own).
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
  elapsedMs: number;
  /** edgecache's own figures: how selects were registered, capture's lag (ms). */
  registrations?: DrizzleCacheStats["registrations"];
  captureLagP99?: number;
  staleSamples: { spec: ReadSpec; findings: Finding[] }[];
}

export async function runDrizzleExact(options: ExactOptions): Promise<ExactRecord[]> {
  const log = options.log ?? (() => {});
  const records: ExactRecord[] = [];
  // The generated SQLite database: libSQL runs copy it, postgres-js runs seed the same rows.
  const { template, data } = prepareDatabase(options, log);
  let n = 0;
  for (const driver of options.drivers) {
    for (const [writeRatio, ops] of sequences(data, options)) {
      for (const mode of options.modes) {
        const name = `${mode}_${++n}`;
        const db =
          driver === "libsql"
            ? await libsqlDatabase(template, name)
            : await postgresJsDatabase(options.pg, name, options, options.pgCollateC);
        try {
          const record = await runOne(db, mode, writeRatio, ops, data, options);
          records.push(record);
          log(
            `${driver}, ${pctLabel(writeRatio)} writes, ${mode}: hit rate ${(record.hitRate * 100).toFixed(1)}%, stale ${record.staleReads}, kept/write ${(record.entriesKeptPerWrite * 100).toFixed(2)}%, ${record.dbQueriesPerRequest.toFixed(3)} queries/request`,
          );
        } finally {
          await db.close();
        }
      }
    }
  }
  return records;
}

/** A caching mode's Drizzle database over `db`, and what the run reads of it. */
interface Contestant {
  app: AnyDb;
  entries(): number;
  removed(): number;
  /** Resolves once the writes committed so far reach the cache (capture), at once otherwise. */
  catchUp(): Promise<void>;
  stats(): DrizzleCacheStats | undefined;
  close(): Promise<void>;
}

async function open(db: BenchDatabase, mode: Mode, counter: StatementCounter): Promise<Contestant> {
  if (mode === "table-keyed") {
    const cache = new TableKeyedCache();
    return {
      app: db.app(cache, counter),
      entries: () => cache.entries(),
      removed: () => cache.removed,
      catchUp: async () => {},
      stats: () => undefined,
      close: async () => {},
    };
  }
  if (mode === "capture") await db.installCapture();
  const cache: EdgecacheDrizzleCache = drizzleCache({ tiers: [memoryStore()], strategy: "all" });
  const app = withTransactions(db.app(cache, counter), { capture: mode === "capture" });
  if (mode === "capture") {
    // An installation is followed once the application queries one of its tables.
    await app.select().from(db.users).where(eq(db.users.id, ""));
    await app.select().from(db.orders).where(eq(db.orders.id, ""));
    const until = Date.now() + 15_000;
    while ((cache.getStats().capture?.tables.length ?? 0) < 2) {
      if (Date.now() > until) throw new Error(`[bench] ${db.driver}: capture not followed`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return {
    app,
    entries: () => cache.getStats().keys,
    removed: () => cache.engine.stats().invalidations,
    catchUp: async () => {
      if (mode === "capture" && !(await cache.catchUp())) {
        throw new Error("[bench] capture could not catch up");
      }
    },
    stats: () => cache.getStats(),
    close: () => cache.close(),
  };
}

/** Capture's own statements: its change table and the catalog it reads. */
const CAPTURE_SQL = /edgecache|sqlite_master|pragma_table_info|data_version|pg_trigger/i;

/**
 * Counts statements in all (the application's and capture's apart) and, through
 * AsyncLocalStorage, the application's per request.
 */
class Statements implements StatementCounter {
  total = 0;
  capture = 0;
  #request = new AsyncLocalStorage<{ n: number }>();

  count(sql: string): void {
    if (CAPTURE_SQL.test(sql)) {
      this.capture++;
      return;
    }
    this.total++;
    const mine = this.#request.getStore();
    if (mine) mine.n++;
  }

  /** Runs one request; resolves with its result and the statements it sent. */
  async within<T>(run: () => Promise<T>): Promise<{ value: T; statements: number }> {
    const mine = { n: 0 };
    const value = await this.#request.run(mine, run);
    return { value, statements: mine.n };
  }
}

async function runOne(
  db: BenchDatabase,
  mode: Mode,
  writeRatio: number,
  ops: Op[],
  data: InitialData,
  options: ExactOptions,
): Promise<ExactRecord> {
  const statements = new Statements();
  const c = await open(db, mode, statements);
  try {
    // Warmed with every read of the sequence once, as bench:workload warms its caches.
    const reads = new Map<string, ReadOp>();
    for (const op of ops) if (op.kind === "read") reads.set(op.path, op);
    await pool([...reads.values()], options.connections, async (op) => {
      await read(c.app, db, op.spec);
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
    const totalBefore = statements.total;
    const captureBefore = statements.capture;
    const removedBefore = c.removed();
    const statsBefore = c.stats();
    let writesSeen = 0;
    const started = performance.now();
    await pool(ops, options.connections, async (op) => {
      if (op.kind === "read") {
        const begun = performance.now();
        const { value, statements: sent } = await statements.within(() => read(c.app, db, op.spec));
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
        out.entriesAtWrites += c.entries();
        if (!(await write(c, db, op, oracle, around, statements))) out.errors++;
      } finally {
        release.done();
      }
    });
    const elapsedMs = performance.now() - started;
    const removed = c.removed() - removedBefore;
    const requests = out.reads + out.writes;
    const stats = c.stats();
    const fenced = stats ? stats.fenced - (statsBefore?.fenced ?? 0) : undefined;
    return {
      driver: db.driver,
      mode,
      writeRatio,
      requests,
      reads: out.reads,
      writes: out.writes,
      aroundWrites: out.around,
      hitRate: round(out.hits / Math.max(1, out.reads), 4),
      staleReads: out.stale,
      dbQueriesPerRequest: round((statements.total - totalBefore) / Math.max(1, requests), 4),
      captureQueriesPerRequest: round(
        (statements.capture - captureBefore) / Math.max(1, requests),
        4,
      ),
      entriesKeptPerWrite: round(1 - removed / Math.max(1, out.entriesAtWrites), 5),
      entriesMean: Math.round(out.entriesAtWrites / Math.max(1, out.writes)),
      removedPerWrite: round(removed / Math.max(1, out.writes), 2),
      errors: out.errors,
      missesByKind: out.misses,
      ...(fenced !== undefined && { fenced }),
      elapsedMs: Math.round(elapsedMs),
      ...(stats && { registrations: stats.registrations }),
      ...(stats?.capture?.lagP99 !== undefined && {
        captureLagP99: round(stats.capture.lagP99, 2),
      }),
      staleSamples: out.samples,
    };
  } finally {
    await c.close();
  }
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

/** One read of the sequence as a Drizzle application makes it; `body` as the data API answers. */
async function read(
  app: AnyDb,
  db: BenchDatabase,
  spec: ReadSpec,
): Promise<{ status: number; body: unknown }> {
  const { users, orders } = db;
  const table = spec.view || spec.table === "users" ? users : orders;
  if (spec.kind === "item") {
    const [row] = await app.select().from(table).where(eq(table.id, spec.id));
    if (!row) return { status: 404, body: undefined };
    // The join view as two statements: the user, then their orders.
    if (spec.view) row.orders = await app.select().from(orders).where(eq(orders.userId, spec.id));
    return { status: 200, body: row };
  }
  const f = spec.filter;
  const where =
    f && (f.op === "eq" ? eq(table[f.column], f.value) : like(table[f.column], `${f.value}%`));
  const order = spec.sort.map((s) => {
    const key = db.orderKey(table[s.column]);
    return s.desc ? desc(key) : asc(key);
  });
  const rows: Row[] = await app
    .select()
    .from(table)
    .where(where)
    .orderBy(...order)
    .limit(spec.limit)
    .offset(spec.offset);
  if (spec.view && rows.length > 0) {
    const ids = rows.map((r) => r.id as string);
    const theirs: Row[] = await app.select().from(orders).where(inArray(orders.userId, ids));
    for (const r of rows) r.orders = theirs.filter((o) => o.userId === r.id);
  }
  return { status: 200, body: { data: rows } };
}

/**
 * One write, through Drizzle or around it, told to the oracle: acknowledged once it has
 * returned (capture: once capture has applied it), with the row a fresh query reads then.
 * Returns false when it failed.
 */
async function write(
  c: Contestant,
  db: BenchDatabase,
  op: WriteOp,
  oracle: StaleOracle,
  around: boolean,
  counter: StatementCounter,
): Promise<boolean> {
  const table = op.table === "users" ? db.users : db.orders;
  const values =
    op.method === "PATCH" ? { ...op.body, version: oracle.nextVersion(op.table, op.id) } : op.body;
  const at = performance.now();
  const tokens: WriteToken[] = [oracle.issued(op.table, op.id, at)];
  for (const id of op.cascade ?? []) tokens.push(oracle.issued("orders", id, at));
  try {
    if (around) {
      const q = (name: string) => `"${name}"`;
      const columns = Object.keys(values ?? {});
      const params = columns.map((k) => values![k]);
      if (op.method === "PATCH") {
        const set = columns.map((k) => `${q(k)} = ?`).join(", ");
        await db.around(
          `UPDATE ${q(op.table)} SET ${set} WHERE "id" = ?`,
          [...params, op.id],
          counter,
        );
      } else if (op.method === "POST") {
        const marks = columns.map(() => "?").join(", ");
        await db.around(
          `INSERT INTO ${q(op.table)} (${columns.map(q).join(", ")}) VALUES (${marks})`,
          params,
          counter,
        );
      } else await db.around(`DELETE FROM ${q(op.table)} WHERE "id" = ?`, [op.id], counter);
      await c.catchUp();
    } else if (op.method === "PATCH") {
      await c.app.update(table).set(values).where(eq(table.id, op.id));
    } else if (op.method === "POST") await c.app.insert(table).values(values);
    else await c.app.delete(table).where(eq(table.id, op.id));
  } catch (err) {
    const ended = performance.now();
    for (const t of tokens) oracle.failed(t, ended);
    console.warn(`[bench] ${op.method} ${op.table} ${op.id} failed:`, (err as Error).message);
    return false;
  }
  const ended = performance.now();
  const [row] =
    op.method === "DELETE" ? [] : await db.fresh.select().from(table).where(eq(table.id, op.id));
  // Only a delete has more than one token (the orders it cascades to).
  for (const t of tokens) oracle.acked(t, ended, row);
  return true;
}
