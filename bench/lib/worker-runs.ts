/**
 * What the Workers benchmarks share: the workload's database as D1 takes it, the warm-up and
 * oracle of a run, and the machine line of a report.
 */
import { cpus, loadavg } from "node:os";
import Database from "better-sqlite3";
import { literal as sqlText } from "../../src/database/schema.ts";
import type { InitialData, Op } from "../workload/generate.ts";
import { StaleOracle } from "../workload/oracle.ts";
import { type Client, type RunOutcome, readAll } from "../workload/run.ts";
import { describeCode, gitState, writeResults } from "./results.ts";

/** What every Workers run reports, whatever else it measures. */
export interface WorkersRun {
  mode: "strict" | "lease" | "follower";
  writeRatio: number;
  requests: number;
  reads: number;
  writes: number;
  errors: number;
  staleReads: number;
  hitRate: number;
}

/** The WorkersRun figures of one run's outcome. */
export function runFigures(
  mode: WorkersRun["mode"],
  writeRatio: number,
  o: RunOutcome,
): WorkersRun {
  return {
    mode,
    writeRatio,
    requests: o.requests,
    reads: o.reads,
    writes: o.writes,
    errors: o.errors,
    staleReads: o.staleReads,
    hitRate: Math.round((o.hits / Math.max(1, o.reads)) * 10_000) / 10_000,
  };
}

/** Reads each path of the sequence once (warming, not judged), then a fresh oracle. */
export async function warmed(
  client: Client,
  ops: readonly Op[],
  data: InitialData,
  connections: number,
): Promise<StaleOracle> {
  const reads = [...new Set(ops.filter((o) => o.kind === "read").map((o) => o.path))];
  await readAll(client, reads, connections);
  return new StaleOracle({
    users: data.users.map((u) => u.id),
    orders: data.orders.map((o) => o.id),
  });
}

/** CPUs, load at the end and Node: what a report says of the machine. */
/** Where and when a run was made, for its Markdown page. */
export interface RunHead {
  code: string;
  date: string;
  machine: string;
}

/**
 * Writes a run's `<out>.json` (its figures beside the command, date, git state and machine)
 * and `<out>.md` (`page` of the same head); returns the path written, without extension.
 */
export function saveRun(
  out: string,
  command: string,
  figures: object,
  page: (head: RunHead) => string,
): string {
  const git = gitState();
  const machine = machineLine();
  const date = new Date().toISOString();
  return writeResults(
    out,
    { command, date, git, machine, ...figures },
    page({ code: describeCode(git), date, machine }),
  );
}

/**
 * Saves a run (see saveRun), prints its table and where it went, and sets exitCode when a
 * record counted a stale read.
 */
export function finishRun(
  out: string,
  command: string,
  figures: { records: readonly { staleReads: number }[]; staleSamples: unknown[] } & object,
  page: (head: RunHead) => string,
  table: string,
  started: number,
): void {
  const path = saveRun(out, command, figures, page);
  const seconds = Math.round((Date.now() - started) / 1000);
  console.log(`\n${table}\n\nwrote ${path}.json and .md in ${seconds} s`);
  if (figures.records.some((r) => r.staleReads > 0)) {
    console.error("[bench] the Worker served stale reads; see the samples in the JSON");
    process.exitCode = 1;
  }
}

/**
 * The workload's rows in the D1 of the Worker `name` before its first request: its seed
 * step then finds users and leaves them.
 */
export async function seedWorkerD1(
  mf: { getD1Database(binding: string, worker: string): Promise<unknown> },
  name: string,
  seed: { sql: string; params: unknown[] }[],
): Promise<void> {
  const d1 = (await mf.getD1Database("DB", name)) as {
    prepare(sql: string): { bind(...values: unknown[]): unknown };
    batch(statements: unknown[]): Promise<unknown>;
  };
  await d1.batch(seed.map((s) => d1.prepare(s.sql).bind(...s.params)));
}

export function machineLine(): string {
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
  return `${cpus().length} CPUs (${cpus()[0]?.model ?? "?"}), load ${load} at the end, Node ${process.version}`;
}

/** The template database as SQL statements D1 runs (`wrangler d1 execute --file`). */
export function sqlDump(path: string): string {
  const db = new Database(path, { readonly: true });
  try {
    const lines = ["PRAGMA defer_foreign_keys = true;"];
    const schema = db
      .prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'")
      .all() as { sql: string }[];
    // Tables before indexes, as sqlite_schema lists them.
    for (const { sql } of schema) lines.push(`${sql};`);
    for (const table of ["users", "orders"]) {
      const rows = db.prepare(`SELECT * FROM ${table}`).all() as Record<string, unknown>[];
      for (const row of rows) {
        const names = Object.keys(row);
        const values = Object.values(row).map(literal);
        lines.push(`INSERT INTO ${table} (${names.join(", ")}) VALUES (${values.join(", ")});`);
      }
    }
    return `${lines.join("\n")}\n`;
  } finally {
    db.close();
  }
}

function literal(value: unknown): string {
  if (value === null) return "NULL";
  return typeof value === "number" ? String(value) : sqlText(String(value));
}

/** D1 binds at most 100 parameters per statement. */
const D1_MAX_PARAMS = 100;

/**
 * The template database as statements for a D1 binding's `batch`: the schema, then
 * multi-row INSERTs within D1's parameter limit (a few hundred statements, not one a row).
 */
export function d1Statements(path: string): { sql: string; params: unknown[] }[] {
  const db = new Database(path, { readonly: true });
  try {
    const schema = db
      .prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'")
      .all() as { sql: string }[];
    const out = schema.map(({ sql }) => ({ sql, params: [] as unknown[] }));
    for (const table of ["users", "orders"]) {
      const rows = db.prepare(`SELECT * FROM ${table}`).all() as Record<string, unknown>[];
      const names = Object.keys(rows[0] ?? {});
      const perStatement = Math.max(1, Math.floor(D1_MAX_PARAMS / Math.max(1, names.length)));
      const tuple = `(${names.map(() => "?").join(", ")})`;
      for (let i = 0; i < rows.length; i += perStatement) {
        const chunk = rows.slice(i, i + perStatement);
        out.push({
          sql: `INSERT INTO ${table} (${names.join(", ")}) VALUES ${chunk.map(() => tuple).join(", ")}`,
          params: chunk.flatMap((row) => Object.values(row)),
        });
      }
    }
    return out;
  } finally {
    db.close();
  }
}
