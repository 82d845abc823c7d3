import { existsSync, renameSync, rmSync } from "node:fs";
import type Database from "better-sqlite3";

/**
 * A cache file that is not a database, or a damaged one. It holds only cached responses, so
 * the cure is a new file; the old one is kept aside for whoever wants to look at it.
 */

/** Whether a driver error says the file is damaged (not a database, or corrupt). */
export function isDamage(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return (
    typeof code === "string" && (code === "SQLITE_NOTADB" || code.startsWith("SQLITE_CORRUPT"))
  );
}

/** A driver error as one line: its message and code. */
export function describeError(error: unknown): string {
  const { message, code } = (error ?? {}) as { message?: string; code?: unknown };
  const text = message ?? String(error);
  return typeof code === "string" && !text.includes(code) ? `${text} (${code})` : text;
}

/**
 * Checks the file's structure (`PRAGMA quick_check`): about 150 ms per 100 MB, so only where
 * damage is likely, after a crash. Throws a SQLITE_CORRUPT error saying what is wrong.
 */
export function checkIntegrity(db: Database.Database): void {
  const result = db.pragma("quick_check(1)", { simple: true });
  if (result !== "ok") {
    throw Object.assign(new Error(`integrity check: ${String(result)}`), {
      code: "SQLITE_CORRUPT",
    });
  }
}

/**
 * Renames `path` (and its WAL) to `<path>.damaged-<time>`; the shared-memory index is
 * rebuilt from those, so it goes. Returns the new name.
 */
export function moveAside(path: string, at: Date): string {
  const aside = `${path}.damaged-${at.toISOString().replace(/[:.]/g, "-")}`;
  if (existsSync(path)) renameSync(path, aside);
  // The WAL belongs to the damaged file: left in place, it could be replayed into the new one.
  if (existsSync(`${path}-wal`)) renameSync(`${path}-wal`, `${aside}-wal`);
  rmSync(`${path}-shm`, { force: true });
  return aside;
}
