import { EdgecacheError } from "../core/errors.ts";

/**
 * PostgreSQL's SQLSTATEs for storage that refuses writes: disk_full, and
 * read_only_sql_transaction (a standby, or default_transaction_read_only).
 */
const POSTGRES_STORAGE = new Set(["53100", "25006"]);

/**
 * The driver's code when `err` failed for the database's storage, not the request: a full
 * disk, an I/O error, a read-only or unopenable file (SQLITE_FULL, SQLITE_IOERR*,
 * SQLITE_READONLY*, SQLITE_CANTOPEN, PostgreSQL 53100 and 25006); else undefined. Every
 * write fails alike until an operator acts, so health says so and a client is not told to
 * retry in a second. A constraint violation is the client's, never this.
 */
export function storageFault(err: unknown): string | undefined {
  const cause = err instanceof EdgecacheError ? err.cause : err;
  const code = (cause as { code?: unknown } | null | undefined)?.code;
  if (typeof code !== "string") return undefined;
  return code === "SQLITE_FULL" ||
    code === "SQLITE_CANTOPEN" ||
    code.startsWith("SQLITE_IOERR") ||
    code.startsWith("SQLITE_READONLY") ||
    POSTGRES_STORAGE.has(code)
    ? code
    : undefined;
}

/** A source that remembers why its last write failed, for health (see storageFault). */
export interface WriteFaults {
  /** The storage code of the last write if it failed for storage; cleared by a write that passes. */
  writeFault(): string | undefined;
}

export function hasWriteFaults(source: object): source is WriteFaults {
  return typeof (source as Partial<WriteFaults>).writeFault === "function";
}
