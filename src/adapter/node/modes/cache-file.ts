import { EdgecacheError } from "../../../core/errors.ts";
import type { Warner } from "../../../core/report.ts";
import { type SqliteStoreOptions, sqliteStore } from "../../../stores/sqlite.ts";
import { describeError } from "../../../stores/sqlite-damage.ts";
import { type FileLock, lockFile } from "../file-lock.ts";

/**
 * What became of a node's cache file, for its log, `/_edgecache/health` and `/stats`:
 * `on`, `off` (it could not be used: the node runs without it and `code` says why), or
 * `none` (none was asked for: `--no-cache-file`).
 */
export interface CacheFileStatus {
  state: "on" | "off" | "none";
  path?: string;
  /** Why it is off: the system's or SQLite's code (EROFS, ENOSPC, SQLITE_FULL, ...). */
  code?: string;
}

/** A node's cache file as opened: the store on it and its lock, or neither. */
export interface CacheFile {
  /** The file, while this node uses it (where its stamp goes). */
  path: string | undefined;
  store: ReturnType<typeof sqliteStore> | undefined;
  status: CacheFileStatus;
  /** Releases the lock (after the store closed). */
  release(): void;
}

/**
 * Takes the lock on `path` and opens the cache file under it, then runs `open` with it; if
 * `open` fails, the file is closed and its lock released.
 *
 * The cache never refuses to start because of its own file: one it cannot lock, create or
 * open (a read-only or full filesystem, a directory in its place, no such directory), or one
 * that fails later in the start (see dropCacheFile), leaves the node without the file tier,
 * with one warning saying so. Only a file another edgecache
 * holds is refused (E_IN_USE): the two would empty each other's entries.
 */
export async function withCacheFile<T>(
  path: string | undefined,
  options: Omit<SqliteStoreOptions, "path" | "repair" | "exclusive"> & { logger: Warner },
  open: (file: CacheFile) => Promise<T>,
): Promise<T> {
  const file = openCacheFile(path, options);
  try {
    return await open(file);
  } catch (err) {
    await file.store?.close().catch(() => {});
    file.release();
    throw err;
  }
}

function openCacheFile(
  path: string | undefined,
  options: Omit<SqliteStoreOptions, "path" | "repair" | "exclusive"> & { logger: Warner },
): CacheFile {
  if (path === undefined)
    return { path, store: undefined, status: { state: "none" }, release() {} };
  let lock: FileLock | undefined;
  const { logger } = options;
  try {
    // Before anything is opened: a second process must not touch the first one's files.
    lock = lockFile(path);
    // The path lock keeps out a second process on this name; the store's own lock, held on
    // the file itself, keeps out one on any other name of it (a hard link, a bind mount).
    const { logger: _, ...disk } = options;
    // A damaged file's warning stays the store's own (console): this logger is the node's.
    const store = sqliteStore({ ...disk, path, repair: true, exclusive: true });
    const held = lock;
    return { path, store, status: { state: "on", path }, release: () => held.release() };
  } catch (err) {
    lock?.release();
    if (err instanceof EdgecacheError && (err.code === "E_IN_USE" || err.code === "E_BAD_OPTION"))
      throw err;
    return offFile(path, err, logger);
  }
}

/**
 * The cache file failed after it was opened, while the node was starting (its stamp could
 * not be consumed, emptying it found the disk full): the node starts without it, as with a
 * file it could not open. The file is closed and its lock released; `file` now says `off`.
 */
export async function dropCacheFile(file: CacheFile, err: unknown, logger: Warner): Promise<void> {
  const { path } = file;
  await file.store?.close().catch(() => {});
  file.release();
  if (path !== undefined) Object.assign(file, offFile(path, err, logger));
}

/** No file tier, with the one warning that says why (and `code` for health and stats). */
function offFile(path: string, err: unknown, logger: Warner): CacheFile {
  const code = errorCode(err);
  logger.warn(
    `[edgecache] [cache] cannot use the cache file ${path} (${reason(err)}): serving with the memory tier only; free or fix the file's filesystem and restart to have it again`,
  );
  return { path: undefined, store: undefined, status: { state: "off", path, code }, release() {} };
}

/** Why, in a few words: the system's message without the file it names (a temporary one). */
function reason(err: unknown): string {
  const cause = rootCause(err);
  return describeError(cause).replace(/, \w+ '[^']*'/, "");
}

/** The error underneath ours: the system's or the driver's, which carries the code. */
function rootCause(err: unknown): unknown {
  return err instanceof EdgecacheError && err.cause !== undefined ? err.cause : err;
}

/** A stable code for why a file is off: the system's or SQLite's, else the error's own. */
function errorCode(err: unknown): string {
  const code = (rootCause(err) as { code?: unknown } | null)?.code;
  if (typeof code === "string") return code;
  return err instanceof EdgecacheError ? err.code : "E_STORE_UNAVAILABLE";
}
