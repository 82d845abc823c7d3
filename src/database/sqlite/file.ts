import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { EdgecacheError, type ErrorCode } from "../../core/errors.ts";
import { DEFAULT_BUSY_TIMEOUT_MS } from "./dialect.ts";

/** How a SQLite file is opened, and what a failed open is told as. */
export interface SqliteFileRole {
  /** The component that names itself in the message: `sqlite`, `config`, `tenants`. */
  component: string;
  /** What the file is to the user: "database", "the state database". */
  what: string;
  /** What to do about it, appended after a colon ("pass --db a SQLite file"). */
  hint?: string;
  /** Default E_BAD_OPTION: the file was named by a flag or an option. */
  code?: ErrorCode;
  readonly?: boolean;
  /** How long the open waits for another connection's lock; default DEFAULT_BUSY_TIMEOUT_MS. */
  busyTimeout?: number;
}

/**
 * Opens a SQLite file a user named (in WAL mode unless read-only), or throws an
 * EdgecacheError of one line saying which file, why in plain words (a directory, not a
 * database, no such directory) and what to do: a driver error with its stack is no answer
 * to a wrong flag.
 */
export function openSqliteFile(path: string, role: SqliteFileRole): Database.Database {
  const readonly = role.readonly === true;
  const timeout = role.busyTimeout ?? DEFAULT_BUSY_TIMEOUT_MS;
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly, fileMustExist: readonly, timeout });
    // WAL lets readers proceed while a write is in progress; it also reads the header, so a
    // file that is not a database fails here rather than at the first query.
    if (!readonly) enterWal(db, timeout);
    else db.pragma("schema_version");
    return db;
  } catch (cause) {
    db?.close();
    const hint = role.hint ? `: ${role.hint}` : "";
    throw new EdgecacheError(
      role.code ?? "E_BAD_OPTION",
      role.component,
      `cannot open ${role.what} ${path} (${whyNot(path, cause)})${hint}`,
      { cause },
    );
  }
}

/**
 * Puts `db` in WAL mode, waiting up to `timeoutMs` for the lock that takes. Switching a file
 * that is in rollback-journal mode needs its exclusive lock, and SQLite answers SQLITE_BUSY
 * at once, without the busy handler, where waiting could deadlock: this connection holds a
 * shared lock and another connection wants more than one too (two processes opening one
 * file together, or an app's write in progress). Only trying again from the start, with the
 * shared lock let go, gets past that, so the switch is tried again, apart, until then. Each
 * try's own wait (SQLite's busy handler) is held to the time left. It blocks the thread, as
 * a synchronous open does: once, when the file is opened.
 */
export function enterWal(db: Database.Database, timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs;
  const busyTimeout = db.pragma("busy_timeout", { simple: true }) as number;
  try {
    for (let pause = 2; ; pause = Math.min(pause * 2, 100)) {
      db.pragma(`busy_timeout = ${Math.max(0, Math.min(busyTimeout, deadline - Date.now()))}`);
      try {
        db.pragma("journal_mode = WAL");
        return;
      } catch (err) {
        if (!isBusy(err) || Date.now() >= deadline) throw err;
        // Apart by a random share of the pause, so that two openers do not meet again.
        sleep(Math.min(pause * (0.5 + Math.random()), deadline - Date.now()));
      }
    }
  } finally {
    if (db.open) db.pragma(`busy_timeout = ${busyTimeout}`);
  }
}

/** SQLITE_BUSY and its extended codes (SQLITE_BUSY_RECOVERY, SQLITE_BUSY_SNAPSHOT). */
function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("SQLITE_BUSY");
}

/** Blocks the thread for `ms`: the open is synchronous, as better-sqlite3 is. */
function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.max(0, ms));
}

/** Why a SQLite file did not open, in words a user acts on. */
export function whyNot(path: string, cause: unknown): string {
  const code = (cause as { code?: unknown } | null)?.code;
  if (code === "SQLITE_NOTADB") return "not a SQLite database";
  if (existsSync(path) && statSync(path).isDirectory()) return "a directory";
  if (!existsSync(dirname(path))) return `no directory ${dirname(path)}`;
  const message = cause instanceof Error ? cause.message : String(cause);
  return typeof code === "string" ? `${message}, ${code}` : message;
}

/** The first 16 bytes of every SQLite database file (an empty file is an empty database). */
const HEADER = "SQLite format 3\u0000";

/**
 * What keeps `path` from being an existing SQLite database a user named, in one phrase
 * (`no SQLite file at ...`, `... is a directory`, `... is not a SQLite database`), or
 * undefined when it is one: checked before anything is written about it or opened.
 */
export function sqliteFileProblem(path: string): string | undefined {
  if (!existsSync(path)) return `no SQLite file at ${path}`;
  if (statSync(path).isDirectory()) return `${path} is a directory, not a SQLite file`;
  const head = Buffer.alloc(HEADER.length);
  const fd = openSync(path, "r");
  let read: number;
  try {
    read = readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  if (read === 0) return undefined;
  return head.toString("latin1", 0, read) === HEADER
    ? undefined
    : `${path} is not a SQLite database`;
}
