/**
 * What a bench:drizzle-exact run drives: one caching mode's Drizzle application over one
 * database, either in this process (libSQL, postgres.js: `openInProcess`) or inside a
 * Worker in workerd (D1: d1.ts), behind the same few calls.
 */
import type { DrizzleCacheStats } from "../../src/drizzle/index.ts";
import type { WriteOp } from "../workload/generate.ts";
import type { ReadSpec, Row, Table } from "../workload/oracle.ts";
import { type App, type Mode, openApp } from "./app.ts";
import type { BenchDatabase } from "./databases.ts";
import {
  aroundStatement,
  freshRow,
  type ReadResult,
  readQuery,
  writeThroughDrizzle,
} from "./queries.ts";
import { Statements } from "./statements.ts";

/** Running totals since the contestant opened. */
export interface Counts {
  /** The application's statements: selects on a miss, writes, those around the ORM. */
  statements: number;
  /** Capture's own statements on the application's client. */
  capture: number;
  /** Cached entries removed by writes. */
  removed: number;
  /** edgecache's own figures (none for the Upstash-style cache). */
  stats?: DrizzleCacheStats;
}

export interface Contestant {
  /** One read as the application makes it, and the statements it sent. */
  read(spec: ReadSpec): Promise<{ value: ReadResult; statements: number }>;
  /**
   * One write through Drizzle or around it (straight SQL on another connection). Resolves
   * once acknowledged: a write around the ORM, under capture, once capture has applied it.
   */
  write(op: WriteOp, values: Row | undefined, around: boolean): Promise<void>;
  /** The row as an uncached query reads it now (not counted). */
  fresh(table: Table, id: string): Promise<Row | undefined>;
  /** Entries cached now. */
  entries(): Promise<number>;
  counts(): Promise<Counts>;
  /** Resolves once the writes committed so far reach the cache (capture), at once otherwise. */
  catchUp(): Promise<void>;
  close(): Promise<void>;
}

/** A caching mode's Drizzle database over `db`, in this process; closing it closes `db`. */
export async function openInProcess(db: BenchDatabase, mode: Mode): Promise<Contestant> {
  const statements = new Statements();
  let app: App;
  try {
    app = await openApp(db, mode, statements);
  } catch (err) {
    await db.close();
    throw err;
  }
  return {
    read: (spec) => statements.within(() => readQuery(app.db, db, spec)),
    async write(op, values, around) {
      if (!around) return writeThroughDrizzle(app.db, db, op, values);
      const { sql, params } = aroundStatement(op, values);
      await db.around(sql, params, statements);
      await app.catchUp();
    },
    fresh: (table, id) => freshRow(db.fresh, db, table, id),
    entries: async () => app.entries(),
    counts: async () => {
      const stats = app.stats();
      return {
        statements: statements.total,
        capture: statements.capture,
        removed: app.removed(),
        ...(stats && { stats }),
      };
    },
    catchUp: () => app.catchUp(),
    async close() {
      try {
        await app.close();
      } finally {
        await db.close();
      }
    },
  };
}
