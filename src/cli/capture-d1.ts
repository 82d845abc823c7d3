import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { CaptureStatus } from "../core/capture-feed.ts";
import { EdgecacheError } from "../core/errors.ts";
import {
  CAPTURE_BACKLOG_SQL,
  CAPTURE_TRIGGERS_SQL,
  capturableTables,
  capturedTablesBatched,
  captureInstallSql,
  captureStatusOf,
  captureUninstallSql,
  D1_TABLES_SQL,
} from "../sources/index.ts";

/**
 * `edgecache capture ... --d1 <database>`: change capture in a D1 database, through
 * wrangler (`wrangler d1 execute <database> --local|--remote --json`), which the Worker's
 * project has: the tables and their columns are read from the database itself, and the
 * triggers (database/sqlite/capture-sql.ts, the same as SQLite's) are run as a file, or written as a
 * migration for `wrangler d1 migrations apply`. The change log's Durable Object drains the
 * table (src/adapter/cloudflare/capture-drain.ts).
 */

const C = "capture";

export interface D1Target {
  /** The database's name or binding, as wrangler takes it. */
  database: string;
  remote: boolean;
  /** wrangler's `--config`, `--persist-to` (local state), and `--env`. */
  config?: string;
  persistTo?: string;
  env?: string;
}

/** How the status names the database. */
export function shownD1(target: D1Target): string {
  return `D1 ${target.database} (${target.remote ? "remote" : "local"})`;
}

/** wrangler's entry, from the project in the working directory, else beside edgecache. */
function wranglerBin(): string {
  for (const from of [join(process.cwd(), "package.json"), import.meta.url]) {
    try {
      return createRequire(from).resolve("wrangler/bin/wrangler.js");
    } catch {
      // Not there: try the next place.
    }
  }
  throw new EdgecacheError(
    "E_BAD_OPTION",
    C,
    "wrangler not found: --d1 runs `wrangler d1 execute`; install it in this project (npm install -D wrangler)",
  );
}

/**
 * How often a local statement is tried while the database is locked. `wrangler dev` holds
 * the same SQLite file open, and its change log's drain writes it (deleting the rows it has
 * drained); wrangler sets no busy timeout, so a statement that meets that write fails at once
 * with SQLITE_BUSY. Running it again is safe: a `--command` is one transaction, which the
 * error rolled back, and the install's and uninstall's files are idempotent statements (IF
 * EXISTS, IF NOT EXISTS, OR IGNORE), so running one again after a part of it is the same.
 */
const LOCKED_TRIES = 8;
const LOCKED_WAIT_MS = 250;
const LOCKED = /SQLITE_BUSY|database is locked/;

/**
 * Runs `wrangler d1 execute` with `what` (`--command` or `--file`): each statement's rows.
 * A local database that is locked is tried again (see LOCKED_TRIES), saying so on stderr.
 */
async function execute(target: D1Target, what: string[]): Promise<Record<string, unknown>[][]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await executeOnce(target, what);
    } catch (error) {
      const locked = !target.remote && LOCKED.test((error as Error).message);
      if (!locked || attempt === LOCKED_TRIES) throw error;
      console.error(
        `edgecache: D1 ${target.database} (local) is locked (by wrangler dev's drain?); trying again (${attempt}/${LOCKED_TRIES - 1})`,
      );
      await new Promise((resolve) => setTimeout(resolve, LOCKED_WAIT_MS * attempt));
    }
  }
}

function executeOnce(target: D1Target, what: string[]): Promise<Record<string, unknown>[][]> {
  const args = [
    wranglerBin(),
    "d1",
    "execute",
    target.database,
    target.remote ? "--remote" : "--local",
    "--json",
    ...(target.config ? ["--config", target.config] : []),
    ...(target.persistTo && !target.remote ? ["--persist-to", target.persistTo] : []),
    ...(target.env ? ["--env", target.env] : []),
    ...what,
  ];
  const env = { ...process.env, WRANGLER_SEND_METRICS: "false" };
  return new Promise((done, fail) => {
    execFile(
      process.execPath,
      args,
      { env, maxBuffer: 256 * 1024 * 1024 },
      (err, stdout, stderr) => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(stdout);
        } catch {
          parsed = undefined;
        }
        const error = (parsed as { error?: { text?: string } } | undefined)?.error;
        if (err || error || !Array.isArray(parsed)) {
          // A read that meets the lock fails in wrangler's answer as an "internal error";
          // workerd names the cause on stderr.
          const why = LOCKED.test(stderr)
            ? "database is locked (SQLITE_BUSY)"
            : (error?.text ?? (stderr.trim().split("\n").at(-1) || err?.message || stdout));
          fail(
            new EdgecacheError(
              "E_SOURCE_UNAVAILABLE",
              C,
              `wrangler d1 execute ${target.database}: ${why}`,
            ),
          );
          return;
        }
        done(parsed.map((r: { results?: Record<string, unknown>[] }) => r.results ?? []));
      },
    );
  });
}

/** What the catalog says, in one call to wrangler (each call takes seconds). */
interface Catalog {
  tables: string[];
  triggers: { name: string; table: string }[];
}

async function catalog(target: D1Target): Promise<Catalog> {
  const [tables = [], triggers = []] = await execute(target, [
    "--command",
    [D1_TABLES_SQL, CAPTURE_TRIGGERS_SQL].join(";\n"),
  ]);
  return {
    tables: capturableTables(tables as { name: string }[]),
    triggers: triggers as Catalog["triggers"],
  };
}

/** Statements run as one file (wrangler splits it; trigger bodies stay whole). */
async function runFile(target: D1Target, statements: readonly string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "edgecache-d1-"));
  try {
    const file = join(dir, "capture.sql");
    writeFileSync(file, `${statements.join(";\n")};\n`);
    await execute(target, ["--file", file]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function d1Status(target: D1Target): Promise<CaptureStatus> {
  // One call when installed (the backlog query fails without the change table), else two.
  let results: Record<string, unknown>[][];
  try {
    results = await execute(target, [
      "--command",
      [D1_TABLES_SQL, CAPTURE_TRIGGERS_SQL, CAPTURE_BACKLOG_SQL].join(";\n"),
    ]);
  } catch (error) {
    if (!/no such table/i.test((error as Error).message)) throw error;
    const { tables, triggers } = await catalog(target);
    return captureStatusOf(triggers, undefined, tables);
  }
  const [tables = [], triggers = [], backlog = []] = results;
  return captureStatusOf(
    triggers as Catalog["triggers"],
    backlog[0] as { backlog: number; id: string | null } | undefined,
    capturableTables(tables as { name: string }[]),
  );
}

/** The install's statements, from the database's tables, their columns and keys. */
async function installSql(target: D1Target): Promise<string[]> {
  const { tables, triggers } = await catalog(target);
  const captured = await capturedTablesBatched(tables, (statements) =>
    execute(target, ["--command", statements.join(";\n")]),
  );
  const drop = triggers.map((t) => t.name);
  return captureInstallSql(captured, { drop, install: crypto.randomUUID() });
}

async function uninstallSql(target: D1Target): Promise<string[]> {
  return captureUninstallSql((await catalog(target)).triggers.map((t) => t.name));
}

export async function d1Install(target: D1Target): Promise<CaptureStatus> {
  await runFile(target, await installSql(target));
  return d1Status(target);
}

export async function d1Uninstall(target: D1Target): Promise<CaptureStatus> {
  await runFile(target, await uninstallSql(target));
  return d1Status(target);
}

/**
 * Writes the install's (or uninstall's) statements as the next migration in `dir`
 * (`0003_edgecache_capture.sql` after `0002_...`), for `wrangler d1 migrations apply`.
 * The tables and columns are the database's now: apply your own migrations first.
 */
export async function d1Migration(
  target: D1Target,
  dir: string,
  action: "install" | "uninstall",
): Promise<string> {
  const statements = action === "install" ? await installSql(target) : await uninstallSql(target);
  mkdirSync(dir, { recursive: true });
  const numbers = readdirSync(dir)
    .map((f) => /^(\d+)_.*\.sql$/.exec(f)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number);
  const next = String(Math.max(0, ...numbers) + 1).padStart(4, "0");
  const file = resolve(
    dir,
    `${next}_edgecache_capture${action === "uninstall" ? "_uninstall" : ""}.sql`,
  );
  const header = `-- edgecache change capture (${action}), written by \`edgecache capture ${action} --d1 ${target.database} --migration\`.\n-- Tables created after this migration have no trigger: run the command again after adding a table, a column or a unique index.\n`;
  writeFileSync(file, `${header}${statements.join(";\n")};\n`);
  return file;
}
